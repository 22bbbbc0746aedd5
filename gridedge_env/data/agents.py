"""Per-agent diversity: which household / PV profile each agent follows, scaled and shifted.

A few household profiles drive hundreds of agents. :func:`assign_agents` gives every agent

* a household profile index, balanced (``randperm(n) % H``: every profile is used
  ``floor(n/H)`` or ``ceil(n/H)`` times) and a PV profile index, balanced the same way;
* a demand scale factor, log-uniform in ``scale_range`` (default ``(0.8, 1.25)``: median 1);
* a time offset in steps, uniform integer in ``[-max_offset_steps, max_offset_steps]``
  (default 2 steps = +-1 h at 30 min).

:func:`gather_agents` then builds ``(days, T, n_agents)`` tensors with a single advanced-indexing
operation per quantity (no Python loop over agents):

    demand[d, t, i] = scale[i] * demand_kw[flat(d, t) + offset[i], household[i]]
    pv[d, t, i]     = pv_kw_per_kwp[d, t, pv[i]]

where ``flat(d, t) = d * T + t`` indexes the record as one continuous series, so a shift runs
into the neighbouring calendar day (and wraps around the ends of the record). PV is not shifted:
it follows the sun, which all agents of a feeder share. The household model in
:mod:`gridedge_env.devices` has its own ``demand_scale``; use one of the two scalings (e.g.
``scale_range=(1, 1)`` here, or ``demand_scale=(1, 1)`` there), not both by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .container import Profiles


@dataclass(frozen=True, eq=False)
class AgentAssignment:
    """Per-agent profile choices, each ``(n_agents,)``."""

    household: torch.Tensor
    """long: index into the household axis of ``Profiles.demand_kw``."""
    pv: torch.Tensor
    """long: index into the PV axis of ``Profiles.pv_kw_per_kwp``."""
    scale: torch.Tensor
    """float: multiplier on the demand profile, 1."""
    offset_steps: torch.Tensor
    """long: time shift of the demand profile, steps (``+k``: the agent's day runs ``k`` steps
    ahead of the household's, e.g. its evening peak comes ``k`` steps earlier)."""

    @property
    def n_agents(self) -> int:
        return self.household.shape[0]


def assign_agents(
    n_agents: int,
    n_households: int,
    n_pv: int,
    seed: int = 0,
    *,
    scale_range: tuple[float, float] = (0.8, 1.25),
    max_offset_steps: int = 2,
) -> AgentAssignment:
    """Draw a deterministic (for a given ``seed``) :class:`AgentAssignment`.

    Args:
        n_agents: number of agents ``n``.
        n_households, n_pv: how many household / PV profiles there are to choose from.
        seed: seed of a private ``torch.Generator``.
        scale_range: ``(low, high)`` of the log-uniform demand scale, ``0 < low <= high``.
        max_offset_steps: largest absolute time offset, steps (``0``: no shift).
    """
    if n_agents < 0 or n_households < 1 or n_pv < 1:
        raise ValueError("need n_agents >= 0 and at least one household and one PV profile")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if max_offset_steps < 0:
        raise ValueError("max_offset_steps must be >= 0")
    g = torch.Generator().manual_seed(seed)
    household = torch.randperm(n_agents, generator=g) % n_households
    pv = torch.randperm(n_agents, generator=g) % n_pv
    u = torch.rand(n_agents, generator=g, dtype=torch.float64)
    scale = torch.exp(torch.log(torch.tensor(lo, dtype=torch.float64)) * (1 - u)
                      + torch.log(torch.tensor(hi, dtype=torch.float64)) * u).float()
    offset = torch.randint(-max_offset_steps, max_offset_steps + 1, (n_agents,), generator=g)
    return AgentAssignment(household.long(), pv.long(), scale, offset.long())


def gather_agents(
    profiles: Profiles, assignment: AgentAssignment, days: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-agent demand and PV for the given days.

    Args:
        profiles: the full, contiguous record (not a :meth:`Profiles.select_days` selection when
            offsets are non-zero: shifts read the neighbouring calendar day).
        assignment: from :func:`assign_agents` (indices must fit ``profiles``).
        days: ``(B,)`` day indices into ``profiles`` (default: all days).

    Returns:
        ``(demand_kw, pv_kw_per_kwp)``, each ``(B, T, n_agents)``: demand in kW (scaled and
        shifted), PV per kWp in kW/kWp.
    """
    D, T = profiles.n_days, profiles.n_steps
    dev = profiles.demand_kw.device
    a = assignment
    if a.n_agents and (int(a.household.max()) >= profiles.n_households
                       or int(a.pv.max()) >= profiles.n_pv):
        raise IndexError("assignment refers to more household/PV profiles than profiles has")
    if bool((a.offset_steps != 0).any()) and not profiles.is_contiguous_record():
        raise ValueError("time offsets need the contiguous record: pass the full profiles and "
                         "select days with `days=` instead of Profiles.select_days")
    if days is None:
        days = torch.arange(D, device=dev)
    days = torch.as_tensor(days, dtype=torch.long, device=dev)
    step = days[:, None] * T + torch.arange(T, device=dev)[None, :]  # (B, T)
    off = a.offset_steps.to(dev)
    demand_idx = (step[:, :, None] + off[None, None, :]) % (D * T)  # (B, T, n)
    demand = profiles.demand_kw.reshape(D * T, -1)[demand_idx, a.household.to(dev)]
    demand = demand * a.scale.to(device=dev, dtype=demand.dtype)
    pv = profiles.pv_kw_per_kwp.reshape(D * T, -1)[step[:, :, None], a.pv.to(dev)]
    return demand, pv
