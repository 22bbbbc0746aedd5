"""No-control operation of a scenario and its constraint violations.

"No control" is the reference every controller must beat: batteries idle, generators off, heat
pumps on a thermostat (each step, the electric power that brings the indoor temperature to the
lower comfort limit + 0.5 K by the end of the step, within ``[0, p_max]``). The environment core
rolls all chosen days out at once with these actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..devices import heat_pump
from .build import Scenario

THERMOSTAT_MARGIN_K = 0.5


def thermostat_kw(params, t_in_c, t_out_c, dt_h: float) -> torch.Tensor:
    """Electric power ``(B, N_hp)`` that takes ``t_in_c`` to ``t_low + 0.5 K`` in one step."""
    target = params.t_low_c + THERMOSTAT_MARGIN_K
    decay = torch.exp(-dt_h / (params.r_k_per_kw * params.c_kwh_per_k))
    t_ss = (target - t_in_c * decay) / (1 - decay)  # steady state the exact step must aim at
    heat = (t_ss - t_out_c) / params.r_k_per_kw
    p = heat / heat_pump.cop(params, t_out_c)
    return torch.minimum(torch.clamp(p, min=0.0), params.p_max_kw)


def no_control_actions(env, state) -> torch.Tensor:
    """``(B, N)`` actions of no control: batteries idle (0), generators off (-1), heat pumps on
    the thermostat (``2 p / p_max - 1``)."""
    from ..core import _exog

    hp, sl = env.scenario.heat_pump, env.kind_slices
    t_out = _exog(env, state)[2]
    p = thermostat_kw(hp, state.t_in_c, t_out, env.dt_h)
    a = torch.zeros(len(state.day), env.n_agents, dtype=p.dtype, device=p.device)
    a[:, sl["generator"]] = -1.0
    a[:, sl["heatpump"]] = 2 * p / hp.p_max_kw - 1
    return a


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
        from dataclasses import asdict

        return asdict(self)


def no_control_voltages(scn: Scenario, days: torch.Tensor):
    """Roll the environment core over ``days`` with no control: ``(v_pu (D, T, n), line_loading
    (D, T, r), converged (D, T))``."""
    from ..core import EnvConfig, make_params, reset, step

    env = make_params(EnvConfig(scn.config), scenario=scn)
    state, _ = reset(env, len(days), days=days)
    v, loading, conv = [], [], []
    with torch.no_grad():
        for _ in range(env.n_steps):  # time is sequential; days and agents are batched
            state, out = step(env, state, no_control_actions(env, state))
            v.append(out.info["v_pu"])
            loading.append(out.info["line_loading"])
            conv.append(out.info["converged"])
    return torch.stack(v, 1), torch.stack(loading, 1), torch.stack(conv, 1)


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
