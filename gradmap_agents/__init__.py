"""GradMAP: gradient-based multi-agent proximal learning (trainer lands with its issue)."""
