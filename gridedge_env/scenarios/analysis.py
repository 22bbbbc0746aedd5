"""No-control operation of a scenario and its constraint violations.

"No control" is the reference every controller must beat: batteries idle, generators off, heat
pumps on a thermostat (each step, the electric power that brings the indoor temperature to the
lower comfort limit + 0.5 K by the end of the step, within ``[0, p_max]``). All ``(day, step)``
power flows of the chosen days are solved as one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import gather_agents
from ..devices import HeatPumpExog, HouseholdExog, heat_pump, household
from ..powerflow import PowerFlow
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


def no_control_injections(scn: Scenario, days: torch.Tensor) -> torch.Tensor:
    """``(D, T, n_nodes)`` complex kVA drawn at each node with no control, for ``days``."""
    prof, dt_h = scn.profiles, scn.config.data.dt_h
    demand, pv = gather_agents(prof, scn.assignment, days)  # (D, T, N)
    demand, pv = demand.to(torch.float64), pv.to(torch.float64)
    p, q = household.power(scn.household, HouseholdExog(demand, pv))
    hp = scn.agents_of("heatpump")
    t_out = prof.temp_out_c[days].to(torch.float64)  # (D, T)
    state = heat_pump.init_state(scn.heat_pump, len(days))
    p_hp, q_hp = [], []
    for t in range(prof.n_steps):  # time is sequential; agents and days are batched
        p_t = thermostat_kw(scn.heat_pump, state.t_in_c, t_out[:, t:t + 1], dt_h)
        action = 2 * p_t / scn.heat_pump.p_max_kw - 1
        state, (pk, qk), _ = heat_pump.step(scn.heat_pump, state, action,
                                            HeatPumpExog(t_out[:, t:t + 1]), dt_h)
        p_hp.append(pk)
        q_hp.append(qk)
    p = p.index_add(2, hp, torch.stack(p_hp, 1))
    q = q.index_add(2, hp, torch.stack(q_hp, 1))
    k = scn.config.households_per_agent
    s = torch.zeros(*p.shape[:2], scn.feeder.n_nodes, dtype=torch.complex128)
    node = torch.as_tensor(scn.placement.node)
    return s.index_add(2, node, torch.complex(p, q) * k)


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
    """Solve every (day, step) with no control: ``(v_pu (D, T, n), line_loading, converged)``."""
    s = no_control_injections(scn, days)
    nodes = sorted(set(scn.placement.node.tolist()))
    pf = PowerFlow(scn.feeder, injection_nodes=nodes, on_nonconvergence="flag")
    r = pf.solve(s, load_scale=0.0)
    return r.v_pu, r.line_loading, r.converged


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
