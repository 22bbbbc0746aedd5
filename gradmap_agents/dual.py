"""Lagrange multipliers of the network constraints and their projected dual ascent.

The constraint terms of a day are ``g >= 0`` per (step, node-phase) for the voltage exceedance
above ``v_max`` and below ``v_min``, and per (step, line-phase) for the line overload
(:mod:`gridedge_env.costs`). Each has a multiplier ``mu >= 0`` at a chosen *granularity*:

- ``"node_time"`` (default): one per node-phase (line-phase) and time of day, ``(T, n)``;
- ``"node"``: one per node-phase, shared over the day, ``(1, n)``;
- ``"time"``: one per time of day, shared by all nodes, ``(T, 1)``;
- ``"global"``: one per constraint kind, ``(1, 1)``.

After each environment gradient (``gradmap-notes`` section 6), with ``G`` the mean over the batch's
days of the terms each multiplier weighs, summed over the members of its group,

    mu <- clip(mu + rho * G, 0, mu_max).

**Schemes** (``DualConfig.scheme``). ``"rising"``: the terms are the exceedances
``relu(v - v_max)`` etc., ``G >= 0``, so a multiplier never falls: an increasing penalty
schedule. ``"signed"``: the terms are the constraint functions themselves, ``v - v_max``,
``v_min - v`` and ``loading - line_max`` per (day, step, node- or line-phase), negative where
the limit holds with slack; the Lagrangian weighs them signed and the projected ascent lowers a
multiplier whose constraint holds on average over the batch (proper primal-dual ascent on
``max_mu min_theta L``). Both use the same initial multipliers and steps; the comparison and the
decision are in ``docs/gradmap.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gridedge_env.costs import Constraints, constraints

GRANULARITIES = ("node_time", "node", "time", "global")
SCHEMES = ("rising", "signed")


class Duals(NamedTuple):
    """Multipliers, GBP per unit of violation per (day, step, node-phase or line-phase)."""

    v_over_pu: torch.Tensor  # (T|1, n|1), GBP/p.u.: weighs Constraints.v_over_pu
    v_under_pu: torch.Tensor  # (T|1, n|1), GBP/p.u.: weighs Constraints.v_under_pu
    line_over: torch.Tensor  # (T|1, r|1), GBP per unit overload: weighs Constraints.line_over


def _shape(granularity: str, n_steps: int, width: int) -> tuple[int, int]:
    if granularity not in GRANULARITIES:
        raise ValueError(f"dual granularity must be one of {GRANULARITIES}, got {granularity!r}")
    return (n_steps if granularity in ("node_time", "time") else 1,
            width if granularity in ("node_time", "node") else 1)


def init_duals(env, granularity: str, voltage_gbp_per_pu: float, line_gbp: float) -> Duals:
    """Constant initial multipliers of the given granularity for ``env``'s nodes and line phases
    (in the environment's dtype and device)."""
    n_lines = len(env.powerflow.line_phase_names)

    def full(width, value):
        return torch.full(_shape(granularity, env.n_steps, width), float(value),
                          dtype=env.node_mask.dtype, device=env.node_mask.device)

    return Duals(full(env.scenario.feeder.n_nodes, voltage_gbp_per_pu),
                 full(env.scenario.feeder.n_nodes, voltage_gbp_per_pu), full(n_lines, line_gbp))


def tightened(env, v_pu: torch.Tensor, line_loading: torch.Tensor, margin_pu: float = 0.0,
              line_margin: float = 0.0, scheme: str = "rising") -> Constraints:
    """Constraint terms ``(B, T, n|r)`` against the scenario's limits tightened by margins:
    ``[v_min + m, v_max - m]`` and ``line_loading_max - m_line``. A margin keeps the trained
    policies off the limits, so that days not trained on stay inside them (**Decision**,
    ``docs/gradmap.md``); evaluation always uses the limits themselves. ``scheme``: exceedances
    (``"rising"``) or signed constraint functions (``"signed"``), module docstring."""
    if scheme not in SCHEMES:
        raise ValueError(f"dual scheme must be one of {SCHEMES}, got {scheme!r}")
    lim = env.scenario.config.limits
    return constraints(v_pu, line_loading, lim.v_min_pu + margin_pu, lim.v_max_pu - margin_pu,
                       lim.line_loading_max - line_margin, env.node_mask,
                       signed=scheme == "signed")


def penalty(duals: Duals, cons) -> torch.Tensor:
    """``sum mu * g`` per day ``(B,)`` for constraint terms ``(B, T, n|r)`` (one step of a day:
    ``(B, 1, n|r)`` terms and that step's multipliers)."""
    return ((duals.v_over_pu * cons.v_over_pu).sum((1, 2))
            + (duals.v_under_pu * cons.v_under_pu).sum((1, 2))
            + (duals.line_over * cons.line_over).sum((1, 2)))


def dual_ascent(duals: Duals, cons, rho_v: float, rho_line: float, mu_max: float) -> Duals:
    """One projected ascent step from the batch's constraint terms ``(B, T, n|r)``."""
    def step(mu, g, rho):
        mean = g.detach().mean(0)  # (T, width): mean over days
        dims = [d for d in (0, 1) if mu.shape[d] == 1 and mean.shape[d] > 1]
        grouped = mean.sum(dim=dims, keepdim=True) if dims else mean  # (sum over no dims = all)
        return torch.clamp(mu + rho * grouped, 0.0, mu_max)

    return Duals(step(duals.v_over_pu, cons.v_over_pu, rho_v), step(duals.v_under_pu, cons.v_under_pu, rho_v),
                 step(duals.line_over, cons.line_over, rho_line))
