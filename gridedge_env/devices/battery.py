"""Home battery (LFP): SoC dynamics, state-dependent power bounds, degradation and terminal cost.

Signed power ``p_kw`` (charge > 0, i.e. consumption from the grid; discharge < 0), ``|p| <=
p_max_kw``. With ``p+ = max(p, 0)``, ``p- = max(-p, 0)`` and step ``dt_h``:

    soc' = soc + dt_h * (eta_c * p+ - p- / eta_d) / capacity_kwh

The action ``a`` in ``[-1, 1]`` is mapped into ``[p_lo(soc), p_hi(soc)]``,

    p_hi = min(p_max, (soc_max - soc) * capacity / (eta_c * dt_h))
    p_lo = -min(p_max, (soc - soc_min) * capacity * eta_d / dt_h)

so ``soc'`` can never leave ``[soc_min, soc_max]`` (a last straight-through clamp only removes
rounding). Costs (GBP, ``(B, N)``): degradation ``deg_cost_gbp_per_kwh * |p| * dt_h`` per step;
at the end of the episode :func:`terminal_cost`, ``terminal_gbp_per_kwh * capacity *
max(soc_init - soc_final, 0)``. Units, defaults and sources: ``docs/devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from .common import DT_H, Range, check_range, scale_action, scale_action_signed, ste_clamp


@dataclass(frozen=True)
class BatteryConfig:
    """Sampling ranges (uniform, per agent) and fixed values of the battery parameters."""

    capacity_kwh: Range = (5.0, 13.5)
    """Usable energy capacity, kWh. Default (5.0, 13.5): small to large home LFP systems."""
    p_max_kw: Range = (2.5, 5.0)
    """Inverter power limit for charge and discharge, kW. Default (2.5, 5.0)."""
    eta_c: Range = (0.94, 0.96)
    """Charging efficiency (grid -> stored energy), 1. Default (0.94, 0.96)."""
    eta_d: Range = (0.94, 0.96)
    """Discharging efficiency (stored energy -> grid), 1. Default (0.94, 0.96)."""
    soc_min: float = 0.1
    """Lowest allowed state of charge, fraction of capacity. Default 0.1."""
    soc_max: float = 0.95
    """Highest allowed state of charge, fraction of capacity. Default 0.95."""
    soc_init: Range = (0.3, 0.7)
    """State of charge at the start of each day, fraction. Default (0.3, 0.7)."""
    deg_cost_gbp_per_kwh: float = 0.013
    """Cycle-ageing cost per kWh of throughput ``|p| dt``, GBP/kWh. Default 0.013: a 250 GBP/kWh
    pack over 9,600 full equivalent cycles to 80 % capacity (Naumann et al. 2020 LFP data)."""
    terminal_gbp_per_kwh: float = 1.0
    """Penalty per kWh of final SoC below the initial SoC, GBP/kWh. Default 1.0: above the
    highest import price of the default tariff (0.4693 GBP/kWh) and of the LCL dToU series
    (0.672 GBP/kWh), so ending the day empty never pays."""
    action_map: Literal["signed", "affine"] = "signed"
    """``"signed"``: ``0 -> idle``, ``1 -> p_hi``, ``-1 -> p_lo`` (piecewise linear);
    ``"affine"``: ``[-1, 1] -> [p_lo, p_hi]`` linearly (``0`` is the middle of the range)."""

    def __post_init__(self):
        check_range("capacity_kwh", self.capacity_kwh, 1e-6)
        check_range("p_max_kw", self.p_max_kw, 0.0)
        check_range("eta_c", self.eta_c, 1e-6, 1.0)
        check_range("eta_d", self.eta_d, 1e-6, 1.0)
        check_range("soc bounds", (self.soc_min, self.soc_max), 0.0, 1.0)
        check_range("soc_init", self.soc_init, self.soc_min, self.soc_max)
        check_range("costs", (0.0, min(self.deg_cost_gbp_per_kwh, self.terminal_gbp_per_kwh)))
        if self.action_map not in ("signed", "affine"):
            raise ValueError(f"action_map={self.action_map!r}: 'signed' or 'affine'")


class BatteryParams(NamedTuple):
    """Per-agent battery parameters, each ``(N,)``; units as in :class:`BatteryConfig`."""

    capacity_kwh: torch.Tensor
    p_max_kw: torch.Tensor
    eta_c: torch.Tensor
    eta_d: torch.Tensor
    soc_min: torch.Tensor
    soc_max: torch.Tensor
    soc_init: torch.Tensor
    deg_cost_gbp_per_kwh: torch.Tensor
    terminal_gbp_per_kwh: torch.Tensor
    signed_map: torch.Tensor
    """bool: ``action_map == "signed"``."""


class BatteryState(NamedTuple):
    soc: torch.Tensor
    """``(B, N)`` state of charge, fraction of ``capacity_kwh``."""


def init_state(params: BatteryParams, batch: int) -> BatteryState:
    """State at the start of a day: ``soc = soc_init``, ``(batch, N)``."""
    return BatteryState(params.soc_init.expand(batch, -1).clone())


def power_bounds(
    params: BatteryParams, soc: torch.Tensor, dt_h: float = DT_H
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p_lo, p_hi)``, kW, ``(B, N)``: the power range that keeps the next SoC in bounds.

    ``p_lo <= 0 <= p_hi`` whenever ``soc`` is within ``[soc_min, soc_max]``.
    """
    e = params.capacity_kwh / dt_h
    p_hi = torch.minimum(params.p_max_kw, (params.soc_max - soc) * e / params.eta_c)
    p_lo = -torch.minimum(params.p_max_kw, (soc - params.soc_min) * e * params.eta_d)
    return p_lo, p_hi


def next_soc(
    params: BatteryParams, soc: torch.Tensor, p_kw: torch.Tensor, dt_h: float = DT_H
) -> torch.Tensor:
    """SoC after ``dt_h`` hours at constant power ``p_kw`` (kW, charge > 0), unclamped."""
    stored = params.eta_c * torch.relu(p_kw) - torch.relu(-p_kw) / params.eta_d
    return soc + dt_h * stored / params.capacity_kwh


def action_to_power(
    params: BatteryParams,
    soc: torch.Tensor,
    action: torch.Tensor,
    dt_h: float = DT_H,
    *,
    straight_through: bool = True,
) -> torch.Tensor:
    """Map ``action`` ``(B, N)`` (clamped to ``[-1, 1]``) to power ``p_kw`` in its bounds."""
    a = ste_clamp(action, -1.0, 1.0, straight_through=straight_through)
    p_lo, p_hi = power_bounds(params, soc, dt_h)
    return torch.where(
        params.signed_map, scale_action_signed(a, p_lo, p_hi), scale_action(a, p_lo, p_hi)
    )


def step(
    params: BatteryParams,
    state: BatteryState,
    action: torch.Tensor,
    exog=None,
    dt_h: float = DT_H,
    *,
    straight_through: bool = True,
) -> tuple[BatteryState, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """One step of every battery.

    action: ``(B, N)`` in ``[-1, 1]``; exog: unused (``None``); dt_h: step, h.
    Returns ``(BatteryState(soc'), (p_kw, q_kvar), {"degradation": gbp})``, all ``(B, N)``;
    ``p_kw`` > 0 charges (consumption), ``q_kvar`` is 0 (unity power factor inverter).
    """
    p_kw = action_to_power(params, state.soc, action, dt_h, straight_through=straight_through)
    soc = next_soc(params, state.soc, p_kw, dt_h)
    soc = ste_clamp(soc, params.soc_min, params.soc_max)  # rounding only: always pass-through
    degradation = params.deg_cost_gbp_per_kwh * torch.abs(p_kw) * dt_h
    return BatteryState(soc), (p_kw, torch.zeros_like(p_kw)), {"degradation": degradation}


def terminal_cost(
    params: BatteryParams, soc_init: torch.Tensor, soc_final: torch.Tensor
) -> torch.Tensor:
    """End-of-day penalty, GBP, ``(B, N)``: ``terminal_gbp_per_kwh * capacity * shortfall``.

    ``shortfall = max(soc_init - soc_final, 0)``; no reward for ending above the initial SoC.
    """
    shortfall = torch.relu(soc_init - soc_final)
    return params.terminal_gbp_per_kwh * params.capacity_kwh * shortfall
