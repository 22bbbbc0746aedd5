"""The run's PNG figures (matplotlib, Agg): agents' power over a test day, the voltage envelope
with and without control, learning curves against wall time, and every agent's device power
over its rating on one test day by device kind (the GradMAP paper's figure, ``gradmap-eval
--day K``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gridedge_env.data import gather_agents  # noqa: E402
from gridedge_env.devices import HouseholdExog, household  # noqa: E402
from gridedge_env.rollout import DayRollout, rollout  # noqa: E402

KIND_COLOURS = {"battery": "tab:blue", "heatpump": "tab:red", "generator": "tab:green"}


def agents_power(p_agent_kw: torch.Tensor, kinds: dict, dt_h: float, path: Path, title: str) -> None:
    """All agents' normalised power over one day ``(T, N)``: each agent's net power over its own
    largest absolute value that day (positive = demand, negative = generation), by kind."""
    p = p_agent_kw.cpu()
    scale = p.abs().max(0).values.clamp_min(1e-9)
    hours = torch.arange(p.shape[0]) * dt_h
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = KIND_COLOURS
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


def device_rating_kw(env) -> torch.Tensor:
    """``(N,)`` each agent's device rating, kW for one household: the battery's inverter limit,
    the heat pump's electric power limit, the generator's largest output (``p_max_kw``)."""
    scn, sl = env.scenario, env.kind_slices
    rating = torch.zeros(env.n_agents, dtype=scn.battery.p_max_kw.dtype,
                         device=scn.battery.p_max_kw.device)
    for kind, params in (("battery", scn.battery), ("heatpump", scn.heat_pump),
                         ("generator", scn.generator)):
        rating[sl[kind]] = params.p_max_kw
    return rating


def device_power_pu(env, roll: DayRollout, days: torch.Tensor) -> torch.Tensor:
    """``(B, T, N)`` each agent's device power over its rating (:func:`device_rating_kw`),
    consumption positive: battery in ``[-1, 1]`` (charging > 0), heat pump in ``[0, 1]``,
    generator in ``[-1, 0]``. ``days``: the ``(B,)`` profile-day indices ``roll`` ran.

    The rollout records each agent's net power ``p_agent_kw`` (its households' demand and PV
    plus its device, times ``households_per_agent``, ``gridedge_env.core.device_step``), not the
    device's alone; the device part is that net power per household less the household model's
    net power (:func:`gridedge_env.devices.household.power`) on the same days, which is exact
    up to rounding and needs no replay of the device dynamics (tested against the devices'
    action maps)."""
    scn = env.scenario
    days = torch.as_tensor(days, dtype=torch.long, device=env.agent_node.device).reshape(-1)
    if len(days) != roll.p_agent_kw.shape[0]:
        raise ValueError(f"days has {len(days)} entries, the rollout {roll.p_agent_kw.shape[0]} days")
    demand, pv = gather_agents(scn.profiles, scn.assignment, days)  # (B, T, N)
    p_home, _ = household.power(scn.household, HouseholdExog(demand, pv))
    p_device = roll.p_agent_kw / scn.config.households_per_agent - p_home
    return p_device / device_rating_kw(env).clamp_min(1e-12)


@torch.no_grad()
def plot_test_day(env, policy, day: int, path: Path, title: str):
    """Run the policy (a rollout policy, e.g. a ``StackedPolicy``) on profile day ``day`` and
    draw :func:`device_power_day` of it into ``path``; returns the (closed) figure."""
    days = torch.tensor([day])
    roll = rollout(env, days, policy)
    return device_power_day(device_power_pu(env, roll, days)[0], env.kind_slices, env.dt_h,
                            path, title)


def device_power_day(power_pu: torch.Tensor, kinds: dict, dt_h: float, path: Path, title: str):
    """One panel per device kind with agents (``kinds``: kind -> slice of the agent axis): every
    agent's device power over its rating ``(T, N)`` against the time of day (h, step starts),
    thin and translucent, and the kind's mean over its agents in bold; written to ``path`` as
    PNG. Returns the (closed) figure, whose ``axes`` are the panels."""
    p = power_pu.detach().cpu().double()
    hours = (torch.arange(p.shape[0]) * dt_h).numpy()
    present = {kind: sl for kind, sl in kinds.items() if sl.stop > sl.start}
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6), sharey=True,
                             squeeze=False)
    for ax, (kind, sl) in zip(axes[0], present.items(), strict=True):
        colour, block = KIND_COLOURS.get(kind, "k"), p[:, sl]
        alpha = max(0.03, min(0.5, 10 / block.shape[1]))
        ax.plot(hours, block.numpy(), color=colour, lw=0.5, alpha=alpha)
        ax.plot(hours, block.mean(1).numpy(), color="k", lw=2, label="mean of the kind")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=f"{kind} ({block.shape[1]} agents)", xlabel="time of day (h)",
               xlim=(0, p.shape[0] * dt_h), ylim=(-1.05, 1.05), xticks=range(0, 25, 6))
        ax.legend(loc="lower left", fontsize=8)
    axes[0, 0].set_ylabel("device power / rating\n(+ demand, − generation)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
