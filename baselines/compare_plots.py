"""The comparison's figures (matplotlib, Agg): test cost against violation per method with the
spread over seeds, validation learning curves against wall time and environment gradients, and
box plots of the per-test-day metrics per method (:func:`box_plots`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gradmap_agents import protocol  # noqa: E402

BOX_METRICS = {
    "cost": "cost (GBP/day)",
    "voltage_violation_magnitude": "voltage violation magnitude\n(p.u. × node-steps per day)",
    "line_violation_magnitude": "line violation magnitude\n(overload × line-phase-steps per day)",
    "voltage_worst_pu": "worst voltage exceedance\n(p.u., largest of the day)",
}
"""The per-day metrics :func:`box_plots` draws by default (``gradmap_agents.evaluate.per_day``
keys) and their axis labels."""


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


def captured_curves(results: list[dict], lv, out: Path, penalised: bool = False) -> None:
    """The protocol's curves (:mod:`gradmap_agents.protocol`): every learning run's best
    feasible captured share of the cost gap against training wall time, environment gradients
    and simulated day-steps, one panel each, with the quality levels drawn, and below them the
    best captured share of the penalised objective, which is defined feasible or not and so
    still ranks runs where no feasible point beats no control (the one row with ``penalised``,
    the fixed-penalty variant) (``captured_curves.png``)."""
    learned = [r for r in results if r.get("history")]
    if not learned:
        return
    methods = list(dict.fromkeys(r["method"] for r in learned))
    kinds = (True,) if penalised else (False, True)
    fig, grid = plt.subplots(len(kinds), 3, figsize=(14, 3.8 * len(kinds)), sharey=True,
                             squeeze=False)
    for axes, pen in zip(grid, kinds, strict=True):
        for ax, axis, label in zip(axes, protocol.AXES, ("training wall time (s)",
                                   "environment gradients", "simulated day-steps"), strict=True):
            for r in learned:
                pts = protocol.best_curve(r["history"], lv, axis, pen)
                if axis == "gradients" and not any(x for x, _ in pts):
                    continue  # PPO and SB3 take no environment gradient
                ax.step([0.0, *(x for x, _ in pts)], [0.0, *(max(q or 0.0, 0.0) for _, q in pts)],
                        where="post", color=f"C{methods.index(r['method'])}", alpha=0.8,
                        label=f"{r['method']} s{r['seed']}")
            for share in lv.shares:
                ax.axhline(share, color="tab:gray", ls=":", lw=0.8)
            ax.set(xlabel=label, ylim=(0, 1))
            ax.legend(fontsize=6)
        axes[0].set_ylabel("best captured share of the penalised objective" if pen
                           else "best feasible captured share of the gap")
    fig.tight_layout()
    fig.savefig(out / "captured_curves.png", dpi=120)
    plt.close(fig)


def box_plots(per_day: dict[str, dict[str, np.ndarray]], path: Path,
              metrics: tuple[str, ...] = tuple(BOX_METRICS)):
    """One panel per metric (default :data:`BOX_METRICS`), one box per method, of the test
    days' values: ``per_day[method][metric]`` is an array of per-test-day values pooled over the
    method's seeds (``gradmap_agents.evaluate.per_day`` of each run, concatenated). Boxes span
    the quartiles, whiskers 1.5 IQR, triangles mark the means. NaN days (non-converged power
    flows) are left out and counted: under each box with its day count, and per panel in the
    title. The violation panels use a symmetric log scale (zero-violation days stay on the
    axis). Written to ``path`` as PNG; returns the (closed) figure, whose ``axes`` are the
    panels. A method without one of ``metrics`` is a ``ValueError`` naming both."""
    methods = list(per_day)
    if not methods:
        raise ValueError("box_plots: no methods to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 + 1.1 * len(methods) * len(metrics),
                                                       4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        _box_panel(ax, metric, {m: _values(per_day, m, metric) for m in methods})
    fig.suptitle("test days per method: boxes = quartiles, whiskers = 1.5 IQR, triangles = means",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _values(per_day: dict, method: str, metric: str) -> np.ndarray:
    if metric not in per_day[method]:
        raise ValueError(f"box_plots: method {method!r} has no per-day values of {metric!r} "
                         f"(has {sorted(per_day[method])})")
    return np.asarray(per_day[method][metric], dtype=float).ravel()


def _box_panel(ax, metric: str, values: dict[str, np.ndarray]) -> None:
    """One metric's boxes, NaN days left out and counted in the tick labels and the title."""
    kept = {m: v[~np.isnan(v)] for m, v in values.items()}
    n_nan = {m: int(np.isnan(v).sum()) for m, v in values.items()}
    pos = np.arange(1, len(kept) + 1)
    ax.boxplot(list(kept.values()), positions=pos, showmeans=True, widths=0.6)
    ax.set_xticks(pos, [f"{m}\n{len(kept[m])} days" + (f"\n{n_nan[m]} NaN left out" if n_nan[m]
                                                      else "") for m in kept], fontsize=7)
    title = BOX_METRICS.get(metric, metric)
    if sum(n_nan.values()):
        title += f"\n{sum(n_nan.values())} NaN days left out"
    ax.set_title(title, fontsize=9)
    if metric != "cost":
        positive = np.concatenate([v[v > 0] for v in kept.values()])
        # linear below the smallest violation, but over at most 4 decades below the largest
        low = max(positive.min(), 1e-4 * positive.max()) if positive.size else 1e-6
        ax.set_yscale("symlog", linthresh=float(low))
        ax.set_ylim(bottom=0)  # violations are >= 0
