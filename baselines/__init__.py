"""Baselines on the same environment API: MAPPO, IPPO, GradMA, rule-based and oracle control."""
