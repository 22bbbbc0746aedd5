"""Heat pump heating a home: first-order (1R1C) thermal model, COP, comfort band.

Electric power ``p_kw`` in ``[0, p_max_kw]`` (consumption > 0) delivers heat ``cop * p_kw`` (kW)
into a home of thermal resistance ``R`` (K/kW) to outdoors and capacitance ``C`` (kWh/K):

    C dT_in/dt = (T_out - T_in) / R + cop * p

With ``p`` and ``T_out`` constant over a step, the exact (zero-order-hold) solution is

    T_in' = T_ss + (T_in - T_ss) * exp(-dt_h / (R C)),   T_ss = T_out + R * cop * p

which is the default; ``discretisation="euler"`` gives the forward-Euler step
``T_in + dt_h / C * ((T_out - T_in) / R + cop * p)`` instead (the two agree to first order in
``dt_h / RC``; Euler overshoots and turns unstable for ``dt_h > 2 RC``).

COP: constant per agent, or the Staffell et al. (2012) air-source regression
``6.81 - 0.121 dT + 0.000630 dT^2`` in ``dT = T_sink - T_out`` (clamped to its fitted range
[15, 60] K). Discomfort (GBP): ``discomfort_gbp_per_kh * dt_h * (max(T_low - T_in', 0) +
max(T_in' - T_high, 0))``, i.e. per degree-hour outside the band, on the end-of-step temperature.
Units, defaults and sources: ``docs/devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from .common import DT_H, Range, check_range, scale_action, ste_clamp, tan_phi

STAFFELL_ASHP = (6.81, -0.121, 0.000630)
"""Air-source COP regression coefficients ``(c0, c1, c2)`` of Staffell et al. (2012)."""
STAFFELL_DT_RANGE = (15.0, 60.0)
"""Sink-source temperature differences (K) the regression was fitted on; ``dT`` is clamped."""


@dataclass(frozen=True)
class HeatPumpConfig:
    """Sampling ranges (uniform, per agent) and fixed values of the heat-pump parameters."""

    r_k_per_kw: Range = (1.6, 2.4)
    """Thermal resistance home -> outdoors, K/kW. Default 2 +- 20 % (TCL literature, Hao 2015)."""
    c_kwh_per_k: Range = (1.6, 2.4)
    """Thermal capacitance of the home, kWh/K. Default 2 +- 20 % (TCL literature, Hao 2015)."""
    cop_model: Literal["constant", "staffell2012"] = "constant"
    """``"constant"``: COP drawn from ``cop``; ``"staffell2012"``: function of ``T_out``."""
    cop: Range = (2.35, 3.5)
    """Constant COP, 1 (``cop_model="constant"``). Default (2.35, 3.5) (PNNL GridPIQ table)."""
    t_sink_c: float = 45.0
    """Heat-emitter (sink) temperature for ``"staffell2012"``, degC. Default 45 (radiators)."""
    t_low_c: Range = (18.0, 20.0)
    """Lower comfort limit, degC. Default (18, 20)."""
    band_k: float = 3.0
    """Width of the comfort band, K: ``t_high_c = t_low_c + band_k``. Default 3."""
    t_init_frac: Range = (0.25, 0.75)
    """Initial indoor temperature as a fraction of the way up the comfort band. Default."""
    t_design_c: float = -2.0
    """Outdoor design temperature for sizing ``p_max_kw``, degC. Default -2 (southern UK)."""
    oversize: Range = (1.2, 1.5)
    """``p_max_kw = oversize * (t_low - t_design) / (R * COP(t_design))``, 1. Default."""
    discomfort_gbp_per_kh: float = 1.0
    """Discomfort cost per degree-hour outside the comfort band, GBP/(K h). Default 1.0."""
    pf: float = 1.0
    """Power factor of the heat pump (lagging), 1: ``Q = P tan(acos(pf))``. Default 1."""
    discretisation: Literal["exact", "euler"] = "exact"
    """Time discretisation of the thermal model. Default ``"exact"``."""

    def __post_init__(self):
        for name in ("r_k_per_kw", "c_kwh_per_k", "cop", "oversize"):
            check_range(name, getattr(self, name), 1e-6)
        check_range("t_init_frac", self.t_init_frac, 0.0, 1.0)
        check_range("t_low_c", self.t_low_c)
        check_range("band_k, discomfort", (0.0, min(self.band_k, self.discomfort_gbp_per_kh)))
        check_range("pf", (self.pf, self.pf), 1e-6, 1.0)
        if self.cop_model not in ("constant", "staffell2012"):
            raise ValueError(f"cop_model={self.cop_model!r}: 'constant' or 'staffell2012'")
        if self.discretisation not in ("exact", "euler"):
            raise ValueError(f"discretisation={self.discretisation!r}: 'exact' or 'euler'")


class HeatPumpParams(NamedTuple):
    """Per-agent heat-pump parameters, each ``(N,)``; units as in :class:`HeatPumpConfig`."""

    r_k_per_kw: torch.Tensor
    c_kwh_per_k: torch.Tensor
    p_max_kw: torch.Tensor
    cop_c0: torch.Tensor
    """COP polynomial ``cop_c0 + cop_c1 dT + cop_c2 dT^2``; constant COP: ``c1 = c2 = 0``."""
    cop_c1: torch.Tensor
    cop_c2: torch.Tensor
    t_sink_c: torch.Tensor
    t_low_c: torch.Tensor
    t_high_c: torch.Tensor
    t_init_c: torch.Tensor
    discomfort_gbp_per_kh: torch.Tensor
    pf: torch.Tensor
    exact: torch.Tensor
    """bool: exact exponential discretisation (else forward Euler)."""


class HeatPumpState(NamedTuple):
    t_in_c: torch.Tensor
    """``(B, N)`` indoor temperature, degC."""


class HeatPumpExog(NamedTuple):
    t_out_c: torch.Tensor
    """Outdoor temperature, degC, ``(B, N)`` or broadcastable (``(B, 1)``: one per scenario)."""


def init_state(params: HeatPumpParams, batch: int) -> HeatPumpState:
    """State at the start of a day: ``t_in_c = t_init_c``, ``(batch, N)``."""
    return HeatPumpState(params.t_init_c.expand(batch, -1).clone())


def cop(params: HeatPumpParams, t_out_c: torch.Tensor) -> torch.Tensor:
    """Coefficient of performance at outdoor temperature ``t_out_c`` (degC), shape of ``t_out_c``
    broadcast with ``(N,)``."""
    dt_k = torch.clamp(params.t_sink_c - t_out_c, *STAFFELL_DT_RANGE)
    return params.cop_c0 + dt_k * (params.cop_c1 + dt_k * params.cop_c2)


def thermal_step(
    params: HeatPumpParams,
    t_in_c: torch.Tensor,
    heat_kw: torch.Tensor,
    t_out_c: torch.Tensor,
    dt_h: float = DT_H,
) -> torch.Tensor:
    """Indoor temperature after ``dt_h`` h with heat input ``heat_kw`` (kW thermal), degC."""
    r, c = params.r_k_per_kw, params.c_kwh_per_k
    t_ss = t_out_c + r * heat_kw
    exact = t_ss + (t_in_c - t_ss) * torch.exp(-dt_h / (r * c))
    euler = t_in_c + dt_h / c * ((t_out_c - t_in_c) / r + heat_kw)
    return torch.where(params.exact, exact, euler)


def step(
    params: HeatPumpParams,
    state: HeatPumpState,
    action: torch.Tensor,
    exog: HeatPumpExog,
    dt_h: float = DT_H,
    *,
    straight_through: bool = True,
) -> tuple[HeatPumpState, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """One step of every heat pump.

    action: ``(B, N)`` in ``[-1, 1]`` (``-1`` off, ``1`` full power); exog: outdoor temperature.
    Returns ``(HeatPumpState(t_in'), (p_kw, q_kvar), {"discomfort": gbp})``, all ``(B, N)``.
    """
    a = ste_clamp(action, -1.0, 1.0, straight_through=straight_through)
    p_kw = scale_action(a, 0.0, params.p_max_kw)
    heat_kw = cop(params, exog.t_out_c) * p_kw
    t_in = thermal_step(params, state.t_in_c, heat_kw, exog.t_out_c, dt_h)
    outside = torch.relu(params.t_low_c - t_in) + torch.relu(t_in - params.t_high_c)
    discomfort = params.discomfort_gbp_per_kh * outside * dt_h
    q_kvar = p_kw * tan_phi(params.pf)
    return HeatPumpState(t_in), (p_kw, q_kvar), {"discomfort": discomfort}


THERMOSTAT_MARGIN_K = 0.5


def thermostat_kw(params, t_in_c, t_out_c, dt_h: float) -> torch.Tensor:
    """Electric power ``(B, N_hp)`` that takes ``t_in_c`` to ``t_low + 0.5 K`` in one step."""
    target = params.t_low_c + THERMOSTAT_MARGIN_K
    decay = torch.exp(-dt_h / (params.r_k_per_kw * params.c_kwh_per_k))
    t_ss = (target - t_in_c * decay) / (1 - decay)  # steady state the exact step must aim at
    heat = (t_ss - t_out_c) / params.r_k_per_kw
    p = heat / cop(params, t_out_c)
    return torch.minimum(torch.clamp(p, min=0.0), params.p_max_kw)
