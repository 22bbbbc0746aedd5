"""Uncontrollable household demand and rooftop PV (no state, no action).

Every household (agent) has demand and, for a configurable share of households, PV:

    P = demand_scale * demand_kw - has_pv * pv_kwp * pv_kw_per_kwp      (kW, consumption > 0)
    Q = demand_scale * demand_kw * tan(acos(pf))                        (kvar, lagging demand)

PV runs at unity power factor. ``demand_kw`` is the household's demand profile (from
``gridedge_env.data``), ``pv_kw_per_kwp`` the PV output per kWp installed (``0..~1``).
Units, defaults and sources: ``docs/devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .common import Range, check_range, tan_phi


@dataclass(frozen=True)
class HouseholdConfig:
    """Sampling ranges (uniform, per agent) and fixed values of the household parameters."""

    demand_scale: Range = (0.6, 1.4)
    """Multiplier on the demand profile, 1. Default (0.6, 1.4); use (1, 1) with per-household
    metered profiles."""
    pf: Range = (0.95, 0.98)
    """Power factor of the demand (lagging), 1. Default (0.95, 0.98)."""
    pv_share: float = 0.3
    """Share of households with PV, 1: exactly ``round(pv_share * N)`` of them. Default 0.3."""
    pv_kwp: Range = (2.0, 5.0)
    """Installed PV peak power of a household with PV, kWp. Default (2, 5)."""

    def __post_init__(self):
        check_range("demand_scale", self.demand_scale, 0.0)
        check_range("pf", self.pf, 1e-6, 1.0)
        check_range("pv_share", (self.pv_share, self.pv_share), 0.0, 1.0)
        check_range("pv_kwp", self.pv_kwp, 0.0)


class HouseholdParams(NamedTuple):
    """Per-agent household parameters, each ``(N,)``; units as in :class:`HouseholdConfig`."""

    demand_scale: torch.Tensor
    pf: torch.Tensor
    has_pv: torch.Tensor
    """bool: the household has PV."""
    pv_kwp: torch.Tensor
    """Installed PV, kWp (0 where ``has_pv`` is False)."""


class HouseholdExog(NamedTuple):
    demand_kw: torch.Tensor
    """Demand profile value over the step, kW, ``(B, N)``."""
    pv_kw_per_kwp: torch.Tensor
    """PV output per kWp, kW/kWp, ``(B, N)`` or broadcastable (``(B, 1)``: one site per day)."""


def pv_kw(params: HouseholdParams, exog: HouseholdExog) -> torch.Tensor:
    """PV generation, kW (``>= 0``), ``(B, N)``."""
    return torch.where(params.has_pv, params.pv_kwp, 0.0) * exog.pv_kw_per_kwp


def power(params: HouseholdParams, exog: HouseholdExog) -> tuple[torch.Tensor, torch.Tensor]:
    """Net household ``(p_kw, q_kvar)``, ``(B, N)`` each, consumption > 0 (PV makes P < 0)."""
    demand = params.demand_scale * exog.demand_kw
    return demand - pv_kw(params, exog), demand * tan_phi(params.pf)
