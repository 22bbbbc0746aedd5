"""Shared pieces of the device models: time grid, action mapping, straight-through clamp.

Conventions used by every device (see ``docs/devices.md``):

- Tensors are ``(B, N)``: ``B`` scenarios (days) in the batch, ``N`` agents of one device kind.
  Per-agent parameters are ``(N,)`` and broadcast over the batch.
- Power sign: **positive = consumption from the grid** (load convention), for P (kW) and Q (kvar).
  A battery charging, a heat pump running and a household's demand are positive; PV and a
  generator's output are negative.
- Policies emit actions in ``[-1, 1]``. Values outside are clamped here (the caller counts them
  with :func:`out_of_range`), then mapped to the device's physical bounds.
- Hard clamps are straight-through by default: the forward value is clamped, the gradient passes
  unchanged (Bengio et al. 2013), so a policy whose output sits outside the box still receives a
  gradient. ``straight_through=False`` gives the plain clamp (zero gradient outside).
"""

from __future__ import annotations

import math

import torch

DT_H = 0.5
"""Default step length, h (half-hourly settlement periods)."""

N_STEPS = 48
"""Default steps per episode (one day at ``DT_H``)."""

Range = tuple[float, float]
"""A closed sampling range ``(low, high)``; ``low == high`` fixes the value for every agent."""


def ste_clamp(
    x: torch.Tensor, lo, hi, *, straight_through: bool = True
) -> torch.Tensor:
    """Clamp ``x`` to ``[lo, hi]`` (floats or tensors broadcastable to ``x``).

    Forward: ``min(max(x, lo), hi)``, bit for bit (finite ``x``). Backward: with
    ``straight_through`` the gradient with respect to ``x`` is passed unchanged (identity), also
    where ``x`` was clamped, and none flows to ``lo``/``hi``. With ``straight_through=False`` it
    is :func:`torch.clamp` (gradient 1 inside, 0 outside; the active bound gets the gradient).
    """
    if not straight_through:
        return torch.clamp(x, lo, hi)
    # clamp(x) + (x - x): the forward value is exactly the clamp (x - x == 0), d/dx is 1.
    return torch.clamp(x.detach(), lo, hi).detach() + (x - x.detach())


def out_of_range(x: torch.Tensor, lo=-1.0, hi=1.0) -> torch.Tensor:
    """Boolean mask, shaped like ``x``, of the entries that a clamp to ``[lo, hi]`` changes.

    The env reports ``out_of_range(action).sum()`` per step; the device functions clamp silently.
    """
    return (x < lo) | (x > hi)


def scale_action(a: torch.Tensor, lo, hi) -> torch.Tensor:
    """Affine map of ``a`` in ``[-1, 1]`` onto ``[lo, hi]``: ``-1 -> lo``, ``1 -> hi``."""
    return lo + (a + 1.0) * 0.5 * (hi - lo)


def scale_action_signed(a: torch.Tensor, lo, hi) -> torch.Tensor:
    """Piecewise-linear map of ``a`` in ``[-1, 1]`` onto ``[lo, hi]`` with ``lo <= 0 <= hi``.

    ``a >= 0`` maps to ``a * hi`` and ``a < 0`` to ``-a * lo``, so ``0 -> 0`` (idle) whatever the
    bounds, ``1 -> hi`` and ``-1 -> lo``. Used for the battery, whose bounds move with its SoC.
    """
    return torch.where(a >= 0, a * hi, -a * lo)


def tan_phi(pf) -> torch.Tensor | float:
    """``Q / P`` at power factor ``pf`` in ``(0, 1]``: ``sqrt(1 - pf^2) / pf``."""
    if isinstance(pf, torch.Tensor):
        return torch.sqrt(1.0 - pf * pf) / pf
    return math.sqrt(1.0 - pf * pf) / pf


def check_range(name: str, rng: Range, lo: float = -math.inf, hi: float = math.inf) -> None:
    """Raise ``ValueError`` unless ``lo <= rng[0] <= rng[1] <= hi`` (config validation)."""
    if len(rng) != 2 or not lo <= rng[0] <= rng[1] <= hi:
        raise ValueError(f"{name}={rng!r}: need {lo} <= low <= high <= {hi}")
