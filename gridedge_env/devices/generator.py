"""Controllable generator (e.g. a gas micro-CHP or genset): output, fuel cost, reactive power.

Output ``p_gen_kw`` in ``[0, p_max_kw]`` from the first action component (affine map, ``-1`` off,
``1`` full output). Its consumption-convention power is ``P = -p_gen_kw``. Fuel cost (GBP) per
step, quadratic in output: ``(a * p_gen^2 + b * p_gen) * dt_h``.

Reactive power (optional): when the action has a second component ``a_q``, ``Q = a_q * q_lim``
(consumption convention: ``Q > 0`` absorbs, ``Q < 0`` supplies vars) with

    q_lim = min( sqrt(s_max^2 - p_gen^2),  p_gen * tan(acos(pf_min)) )

the kVA rating circle and a minimum power factor: a stopped machine gives no vars, one at full
output is limited by its rating (``s_max > p_max`` keeps the square root away from 0). With a
``(B, N)`` action ``Q = 0``. Units, defaults and sources: ``docs/devices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from .common import DT_H, Range, check_range, scale_action, ste_clamp, tan_phi


@dataclass(frozen=True)
class GeneratorConfig:
    """Sampling ranges (uniform, per agent) and fixed values of the generator parameters."""

    p_max_kw: Range = (3.0, 10.0)
    """Maximum active output, kW. Default (3, 10)."""
    a_gbp_per_kw2h: Range = (0.005, 0.02)
    """Quadratic fuel-cost coefficient, GBP/(kW^2 h). Default (0.005, 0.02)."""
    b_gbp_per_kwh: Range = (0.12, 0.25)
    """Linear fuel-cost coefficient, GBP/kWh. Default (0.12, 0.25): gas at about 0.06 GBP/kWh
    over 25-50 % electrical efficiency."""
    s_over_p: float = 1.0 / 0.9
    """kVA rating over ``p_max_kw``, 1 (> 1). Default 1/0.9: rated output at power factor 0.9."""
    pf_min: float = 0.8
    """Lowest power factor the machine may run at, 1. Default 0.8 (synchronous machine)."""

    def __post_init__(self):
        check_range("p_max_kw", self.p_max_kw, 0.0)
        check_range("a_gbp_per_kw2h", self.a_gbp_per_kw2h, 0.0)
        check_range("b_gbp_per_kwh", self.b_gbp_per_kwh, 0.0)
        check_range("pf_min", (self.pf_min, self.pf_min), 1e-6, 1.0)
        if not self.s_over_p > 1.0:
            raise ValueError(f"s_over_p={self.s_over_p}: must be > 1")


class GeneratorParams(NamedTuple):
    """Per-agent generator parameters, each ``(N,)``; units as in :class:`GeneratorConfig`."""

    p_max_kw: torch.Tensor
    s_max_kva: torch.Tensor
    pf_min: torch.Tensor
    a_gbp_per_kw2h: torch.Tensor
    b_gbp_per_kwh: torch.Tensor


def reactive_limit(params: GeneratorParams, p_gen_kw: torch.Tensor) -> torch.Tensor:
    """``q_lim`` (kvar, ``>= 0``) at output ``p_gen_kw`` (kW, in ``[0, p_max]``)."""
    circle = torch.sqrt(torch.clamp(params.s_max_kva**2 - p_gen_kw**2, min=1e-12))
    return torch.minimum(circle, p_gen_kw * tan_phi(params.pf_min))


def step(
    params: GeneratorParams,
    state: None,
    action: torch.Tensor,
    exog=None,
    dt_h: float = DT_H,
    *,
    straight_through: bool = True,
) -> tuple[None, tuple[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """One step of every generator (stateless: ``state`` and ``exog`` are unused, ``None``).

    action: ``(B, N)`` (active power only) or ``(B, N, 2)`` (active, reactive), in ``[-1, 1]``.
    Returns ``(None, (p_kw, q_kvar), {"fuel": gbp})``, all ``(B, N)``; ``p_kw = -p_gen <= 0``.
    """
    a = ste_clamp(action, -1.0, 1.0, straight_through=straight_through)
    a_p = a[..., 0] if a.dim() == 3 else a
    p_gen = scale_action(a_p, 0.0, params.p_max_kw)
    fuel = (params.a_gbp_per_kw2h * p_gen + params.b_gbp_per_kwh) * p_gen * dt_h
    if a.dim() == 3:
        q_kvar = a[..., 1] * reactive_limit(params, p_gen)
    else:
        q_kvar = torch.zeros_like(p_gen)
    return None, (-p_gen, q_kvar), {"fuel": fuel}
