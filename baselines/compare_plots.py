"""The comparison's figures (matplotlib, Agg): test cost against violation per method with the
spread over seeds, and validation learning curves against wall time and environment gradients."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def cost_vs_violation(rows: list[dict], path: Path) -> None:
    """Each method's runs (one marker per seed) and their mean, test cost against test
    violation magnitude (log scale: the learned methods sit orders of magnitude below)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, m in enumerate(dict.fromkeys(r["method"] for r in rows)):
        mine = [r for r in rows if r["method"] == m and not r["failed"]]
        if not mine:
            continue
        x = [max(r["violation_magnitude"], 1e-6) for r in mine]
        y = [r["cost"] for r in mine]
        color = f"C{i}"
        ax.scatter(x, y, color=color, alpha=0.5, s=18)
        ax.scatter([sum(x) / len(x)], [sum(y) / len(y)], color=color, s=70, marker="D",
                   edgecolor="k", label=f"{m} ({len(mine)} run{'s' * (len(mine) > 1)})")
    ax.set_xscale("log")
    ax.set(xlabel="test violation magnitude per day (log; 1e-6 = none)",
           ylabel="test cost (GBP/day)", title="methods on the test days")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curves(results: list[dict], no_control_val: dict, out: Path) -> None:
    """Validation cost and violation of every learning run against training wall time
    (``learning_curves_wall.png``), of the gradient methods against environment gradients
    (``learning_curves_gradients.png``) and of MAPPO/IPPO against environment steps
    (``learning_curves_env_steps.png``)."""
    learned = [r for r in results if r.get("history")]
    methods = list(dict.fromkeys(r["method"] for r in learned))
    by_gradient = [r for r in learned if r["history"][-1]["train/env_gradients"] > 0]
    by_steps = [r for r in learned if "train/env_steps" in r["history"][-1]]
    for x_key, x_label, name, runs in (
            ("train/wall_seconds", "training wall time (s)", "wall", learned),
            ("train/env_gradients", "environment gradients", "gradients", by_gradient),
            ("train/env_steps", "environment steps (day-steps simulated)", "env_steps", by_steps)):
        if not runs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for ax, key, label in ((axes[0], "cost", "validation cost (GBP/day)"),
                               (axes[1], "violation_magnitude", "validation violation / day")):
            for r in runs:
                h = r["history"]
                ax.plot([p[x_key] for p in h], [p[f"val/{key}"] for p in h], marker="o", ms=2,
                        color=f"C{methods.index(r['method'])}", alpha=0.8,
                        label=f"{r['method']} s{r['seed']}")
            ax.axhline(no_control_val[key], color="tab:gray", ls="--", label="no control")
            if key == "violation_magnitude":
                ax.axhline(0.1 * no_control_val[key], color="tab:red", ls=":", label="target (10 %)")
                ax.set_yscale("symlog", linthresh=max(1e-3, 0.01 * no_control_val[key]))
            ax.set(xlabel=x_label, ylabel=label)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"learning_curves_{name}.png", dpi=120)
        plt.close(fig)
