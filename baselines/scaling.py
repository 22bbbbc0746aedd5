"""How the methods scale with the number of agents, from several finished
comparisons of one feeder at different agent counts (``docs/results.md``, scaling).

Reads each comparison directory's ``comparison.json`` and writes one figure with four panels
against the number of agents (log scale): training wall time to the scenario's 50 % quality
level (:mod:`gradmap_agents.protocol`; methods that did not reach it with every seed within the
budget drawn as open markers at the budget); the area under the penalised objective's captured
share over the budget (``auc_wall_penalised``, mean and 95 % interval over seeds), which ranks
speed and quality together where no level is reached (the ``-v1`` scenarios); test cost; and
test voltage violation magnitude; and the same numbers as JSON (one entry per agent count and
method).
The command is ``gradmap-scaling`` (:func:`baselines.cli.scaling_main`).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEYS = ("time_to_50", "time_to_50_ci95", "auc_wall_penalised", "auc_wall_penalised_ci95",
        "final_penalised", "final_penalised_ci95", "train_seconds", "cost", "cost_ci95",
        "voltage_violation_magnitude", "line_violation_magnitude", "violation_frequency",
        "opendss_cost", "opendss_violation_magnitude")


def scaling_table(dirs: list[Path]) -> dict:
    """``{"points": [{"n_agents", "env", "budget_minutes", "methods": {m: {KEYS}}}]}`` sorted
    by agent count, from each directory's ``comparison.json``."""
    points = []
    for d in dirs:
        path = Path(d) / "comparison.json"
        if not path.is_file():
            raise ValueError(f"{path}: not found (run gradmap-compare --out {d} first)")
        t = json.loads(path.read_text())
        if "n_agents" not in t:
            raise ValueError(f"{path}: written before comparisons recorded their agent count; "
                             f"rerun the same gradmap-compare command to refresh the table")
        points.append({"n_agents": t["n_agents"], "env": t["env"], "dir": str(d),
                       "budget_minutes": t["budget_minutes"],
                       "methods": {m: {k: a.get(k) for k in KEYS} | {"learned": a["learned"]}
                                   for m, a in t["methods"].items()}})
    counts = [p["n_agents"] for p in points]
    if len(set(counts)) != len(counts):
        raise ValueError(f"two comparisons with the same agent count: {counts}")
    return {"points": sorted(points, key=lambda p: p["n_agents"])}


def _learned(points: list, method: str) -> bool:
    return any(p["methods"].get(method, {}).get("learned") for p in points)


def scaling_plot(table: dict, path: Path) -> None:
    """The four panels of the module docstring."""
    pts = table["points"]
    methods = list(dict.fromkeys(m for p in pts for m in p["methods"]))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for i, m in enumerate(methods):
        mine = [(p["n_agents"], p["methods"][m], p["budget_minutes"]) for p in pts
                if m in p["methods"]]
        x = [n for n, _, _ in mine]
        style = dict(color=f"C{i}", marker="o", label=m)
        if mine[0][1]["learned"]:
            hit = [(n, a["time_to_50"]) for n, a, _ in mine if a["time_to_50"]]
            # open markers at the budget, nudged apart so that several methods stay visible
            nudge = 1 + 0.04 * (sum(1 for mm in methods[:i] if _learned(pts, mm)) - 1)
            miss = [(n * nudge, 60 * b) for n, a, b in mine
                    if a["time_to_50"] is None and b]
            if hit:
                axes[0].plot([n for n, _ in hit], [t for _, t in hit], **style)
            if miss:
                axes[0].scatter([n for n, _ in miss], [t for _, t in miss], facecolors="none",
                                edgecolors=f"C{i}", s=60, label=f"{m}: not reached (at budget)")
            auc = [(n, a["auc_wall_penalised"], a.get("auc_wall_penalised_ci95") or 0.0)
                   for n, a, _ in mine if a.get("auc_wall_penalised") is not None]
            if auc:
                axes[1].errorbar([n for n, _, _ in auc], [v for _, v, _ in auc],
                                 yerr=[e for _, _, e in auc], capsize=3, **style)
        axes[2].plot(x, [a["cost"] for _, a, _ in mine], **style)
        axes[3].plot(x, [max(a["voltage_violation_magnitude"] or 0.0, 1e-6) for _, a, _ in mine],
                     **style)
    axes[0].set(ylabel="training wall time to the 50 % level (s)", title="time to the 50 % level")
    axes[1].set(ylabel="AUC of the penalised captured share (0-1)",
                title="speed and quality where no level is reached")
    axes[2].set(ylabel="test cost (GBP/day)", title="test cost")
    # the floor of 1e-6 goes in the title: a label that long is clipped at this height
    axes[3].set(ylabel="p.u. x node-steps / day (log)", yscale="log",
                title="test voltage violation (1e-6: none)")
    fig.suptitle(f"{pts[0]['env']} scenario, agent count varied", fontsize=10)
    for ax in axes:
        ax.set(xscale="log", xlabel="agents")
        ax.set_xticks([p["n_agents"] for p in pts], [str(p["n_agents"]) for p in pts])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
