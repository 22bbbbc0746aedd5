"""The run's PNG figures (matplotlib, Agg): agents' power over a test day, the voltage envelope
with and without control, learning curves against wall time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def agents_power(p_agent_kw: torch.Tensor, kinds: dict, dt_h: float, path: Path, title: str) -> None:
    """All agents' normalised power over one day ``(T, N)``: each agent's net power over its own
    largest absolute value that day (positive = demand, negative = generation), by kind."""
    p = p_agent_kw.cpu()
    scale = p.abs().max(0).values.clamp_min(1e-9)
    hours = torch.arange(p.shape[0]) * dt_h
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = {"battery": "tab:blue", "heatpump": "tab:red", "generator": "tab:green"}
    alpha = max(0.05, min(0.6, 20 / p.shape[1]))
    for kind, sl in kinds.items():
        if sl.stop > sl.start:
            ax.plot(hours, (p[:, sl] / scale[sl]).numpy(), color=colours.get(kind, "k"),
                    lw=0.6, alpha=alpha)
            ax.plot([], [], color=colours.get(kind, "k"), label=f"{kind} ({sl.stop - sl.start})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="hour of day", ylabel="normalised net power", title=title, ylim=(-1.05, 1.05))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def voltage_envelope(v_ctrl: torch.Tensor, v_nc: torch.Tensor, limits, dt_h: float, path: Path,
                     title: str) -> None:
    """Min and max voltage over non-source nodes and test days ``(D, T, n)`` per step, with and
    without control, against the limits."""
    hours = torch.arange(v_ctrl.shape[1]) * dt_h
    fig, ax = plt.subplots(figsize=(8, 4))
    for v, label, colour in ((v_nc, "no control", "tab:gray"), (v_ctrl, "GradMAP policies", "tab:blue")):
        lo, hi = v.min(-1).values.min(0).values, v.max(-1).values.max(0).values
        ax.fill_between(hours, lo.cpu(), hi.cpu(), color=colour, alpha=0.35, label=label)
    for y in (limits.v_min_pu, limits.v_max_pu):
        ax.axhline(y, color="tab:red", ls="--", lw=1)
    ax.set(xlabel="hour of day", ylabel="voltage (p.u.)", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curves(history: list[dict], no_control_val: dict, path: Path, title: str) -> None:
    """Validation cost and violation magnitude against training wall time."""
    t = [h["train/wall_seconds"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "cost", "validation cost (GBP/day)"),
                           (axes[1], "violation_magnitude", "validation violation magnitude / day")):
        ax.plot(t, [h[f"val/{key}"] for h in history], marker="o", ms=3, label="policies")
        ax.axhline(no_control_val[key], color="tab:gray", ls="--", label="no control")
        if key == "violation_magnitude":
            ax.axhline(0.1 * no_control_val[key], color="tab:red", ls=":", label="target (10 %)")
            ax.set_yscale("symlog", linthresh=max(1e-3, 0.01 * no_control_val[key]))
        ax.set(xlabel="training wall time (s)", ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
