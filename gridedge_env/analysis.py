"""No-control operation of a scenario and its constraint violations: how often, and how far,
the feeder leaves its limits when nobody controls anything (:func:`gridedge_env.rollout.no_control`
over whole days, all days at once)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .core import EnvConfig, make_env
from .rollout import no_control, rollout
from .scenarios import Scenario


@dataclass(frozen=True)
class ViolationStats:
    """No-control constraint statistics over a set of days (voltages at non-source nodes)."""

    n_days: int
    share_days_violating: float  # days with any voltage or line violation
    share_days_overvoltage: float
    share_days_undervoltage: float
    node_step_frequency: float  # share of (node, step) pairs outside [v_min, v_max]
    magnitude_pu_per_day: float  # mean over days of summed exceedance (p.u. x node-steps)
    v_min_pu: float
    v_max_pu: float
    max_line_loading: float
    share_days_line_overload: float
    nonconverged: int

    def as_dict(self) -> dict:
        return asdict(self)


def no_control_voltages(scn: Scenario, days: torch.Tensor):
    """``(v_pu (D, T, n), line_loading (D, T, r), converged (D, T))`` of ``days`` under no
    control."""
    env = make_env(EnvConfig(scn.config), scenario=scn)
    with torch.no_grad():
        roll = rollout(env, torch.as_tensor(days), no_control(env), path="stepwise")
    return roll.v_pu, roll.line_loading, roll.converged


def violation_stats(scn: Scenario, days: torch.Tensor) -> ViolationStats:
    v, loading, conv = no_control_voltages(scn, days)
    lim = scn.config.limits
    keep = torch.ones(scn.feeder.n_nodes, dtype=torch.bool)
    keep[torch.as_tensor(scn.feeder.source_nodes)] = False
    v = v[..., keep]
    over, under = torch.relu(v - lim.v_max_pu), torch.relu(lim.v_min_pu - v)
    day_over = (over > 0).flatten(1).any(1)
    day_under = (under > 0).flatten(1).any(1)
    day_line = (loading > lim.line_loading_max).flatten(1).any(1)
    return ViolationStats(
        n_days=len(days),
        share_days_violating=float((day_over | day_under | day_line).double().mean()),
        share_days_overvoltage=float(day_over.double().mean()),
        share_days_undervoltage=float(day_under.double().mean()),
        node_step_frequency=float(((over > 0) | (under > 0)).double().mean()),
        magnitude_pu_per_day=float((over + under).flatten(1).sum(1).mean()),
        v_min_pu=float(v.min()), v_max_pu=float(v.max()),
        max_line_loading=float(loading.max()),
        share_days_line_overload=float(day_line.double().mean()),
        nonconverged=int((~conv).sum()),
    )
