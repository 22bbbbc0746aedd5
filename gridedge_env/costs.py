"""Operating costs, constraint terms and rewards: pure functions over batched tensors.

Costs (GBP, per agent, ``(B, N)``): energy bill ``price * import - export_price * export`` over the
step, battery degradation, generator fuel, heat-pump discomfort, and at the end of the day the
battery terminal-SoC penalty. Constraint terms ``g >= 0`` (``gradmap-notes`` section 5): voltage
exceedance above ``v_max`` and below ``v_min`` per node-phase, line current over its rating per
line-phase; the voltage unbalance of three-phase buses is reported, not constrained.

The reward (:class:`RewardConfig`) is minus cost minus weighted violations, per agent:
``"team"`` gives every agent the total over the feeder (cost and violations), ``"local"`` its own
cost plus the violations at its own node. Weights are fixed penalties; a primal-dual trainer
passes its own per-constraint multipliers to :func:`lagrangian` instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from .powerflow.solve import magnitude


@dataclass(frozen=True)
class RewardConfig:
    """How costs and violations become the per-agent reward."""

    kind: Literal["team", "local"] = "team"
    """``"team"``: every agent gets the feeder total; ``"local"``: own cost + own-node violation."""
    voltage_weight_gbp_per_pu: float = 100.0
    """Penalty per p.u. of voltage exceedance per node-phase and step, GBP/p.u."""
    line_weight_gbp: float = 10.0
    """Penalty per unit of line overload (current / rating - 1) per line-phase and step, GBP."""
    nonconvergence_gbp: float = 1000.0
    """Penalty when the power flow of a scenario step does not converge, GBP (to every agent
    under ``"team"``, shared equally under ``"local"``)."""
    scale: float = 1.0
    """Rewards are multiplied by this (e.g. to keep RL value targets near 1)."""

    def __post_init__(self):
        if self.kind not in ("team", "local"):
            raise ValueError(f"reward.kind must be 'team' or 'local', got {self.kind!r}")
        if min(self.voltage_weight_gbp_per_pu, self.line_weight_gbp, self.nonconvergence_gbp) < 0:
            raise ValueError("reward weights must be >= 0")


class Constraints(NamedTuple):
    """Constraint terms of one step, all ``>= 0`` (signed, negative with slack, when
    :func:`constraints` is asked for ``signed`` ones)."""

    v_over_pu: torch.Tensor  # (B, n_nodes) exceedance above v_max (0 at source nodes)
    v_under_pu: torch.Tensor  # (B, n_nodes) exceedance below v_min (0 at source nodes)
    line_over: torch.Tensor  # (B, n_line_phases) current / rating - limit, where positive
    unbalance: torch.Tensor  # (B, n_3ph_buses) voltage unbalance factor |V-| / |V+| (report)


class CostChannels(Mapping):
    """Per-agent cost channels, name -> ``(B, N)`` GBP, a read-only mapping.

    Device costs are computed per device kind, ``(B, N_kind)`` over the kind's contiguous block
    of agents; each is widened to ``(B, N)`` (zero for the other agents) only when asked for, so
    a step does not write four mostly-zero ``(B, N)`` arrays nobody reads. ``blocks`` gives the
    raw per-kind tensors and their agent slices.
    """

    def __init__(self, parts: dict, slices: dict, n_agents: int):
        self.blocks = {k: (v, slices.get(k)) for k, v in parts.items()}
        self._n = n_agents
        self._full: dict = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._full:
            x, sl = self.blocks[name]
            self._full[name] = x if sl is None else torch.nn.functional.pad(
                x, (sl.start, self._n - sl.stop))
        return self._full[name]

    def __iter__(self):
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __repr__(self) -> str:
        return f"CostChannels({list(self.blocks)})"


def energy_bill(p_kw, price, export_price, dt_h: float) -> torch.Tensor:
    """GBP for net consumption ``p_kw`` ``(B, N)`` at prices ``(B, 1)`` over ``dt_h`` hours."""
    return (price * torch.relu(p_kw) - export_price * torch.relu(-p_kw)) * dt_h


def constraints(v_pu, loading, v_min, v_max, line_max, node_mask, v_complex=None,
                bus_phases=None, signed: bool = False) -> Constraints:
    """Exceedances of one step. ``node_mask`` ``(n,)`` selects constrained (non-source) nodes;
    ``bus_phases`` ``(n_3ph, 3)`` node indices of three-phase buses for the unbalance factor
    (:func:`voltage_unbalance`; zero columns without ``v_complex``). ``signed``: the constraint
    functions themselves, ``v - v_max``, ``v_min - v`` and ``loading - line_max`` (negative where
    a limit holds with slack), for a primal-dual method whose multipliers can fall; the default
    is their positive parts, the exceedances that metrics and fixed penalties use."""
    part = (lambda x: x) if signed else torch.relu
    over = part(v_pu - v_max) * node_mask
    under = part(v_min - v_pu) * node_mask
    if v_complex is not None and bus_phases is not None:
        unbalance = voltage_unbalance(v_complex, bus_phases)
    else:
        unbalance = v_pu.new_zeros(v_pu.shape[0], 0)
    return Constraints(over, under, part(loading - line_max), unbalance)


def voltage_unbalance(v_complex: torch.Tensor, bus_phases: torch.Tensor) -> torch.Tensor:
    """Voltage unbalance factor ``|V-| / |V+|`` ``(B, n_3ph)`` of the three-phase buses whose
    phase nodes are ``bus_phases`` ``(n_3ph, 3)``, from complex node voltages ``(B, n)``.

    ``V+ = (Va + a Vb + a^2 Vc) / 3`` and ``V- = (Va + a^2 Vb + a Vc) / 3``, ``a = exp(2j pi / 3)``:
    one gather and one small matrix product for every bus at once.
    A real ``(B, n, 2)`` (interleaved re, im) ``v_complex`` is accepted too (compiled code); it
    takes element-wise rotations by Python constants, which compiled code fuses into its kernel
    (no tiny GEMM, no constant tensor to pass in).
    """
    real = not v_complex.is_complex()
    b = v_complex.shape[0]
    if not bus_phases.numel():
        return (v_complex if real else v_complex.real).new_zeros(b, 0)
    v3 = v_complex.index_select(1, bus_phases.reshape(-1))
    if real:
        va, vb, vc = v3.reshape(b, -1, 3, 2).unbind(2)
        pos = va + _rotate(vb, 1) + _rotate(vc, 2)
        neg = va + _rotate(vb, 2) + _rotate(vc, 1)
        return torch.linalg.vector_norm(neg, dim=-1) / torch.linalg.vector_norm(pos, dim=-1)
    pos_neg = magnitude(v3.reshape(b, -1, 3) @ torch.as_tensor(_SEQ, dtype=v3.dtype,
                                                                device=v3.device))
    return pos_neg[..., 1] / pos_neg[..., 0]


def _rotate(v: torch.Tensor, k: int) -> torch.Tensor:
    """``a^k v`` for interleaved ``(..., 2)`` ``v``, ``a = exp(2j pi / 3)``."""
    c, s = math.cos(2 * math.pi * k / 3), math.sin(2 * math.pi * k / 3)
    re, im = v[..., 0], v[..., 1]
    return torch.stack([c * re - s * im, s * re + c * im], dim=-1)


_A = np.exp(2j * np.pi / 3)
_SEQ = np.array([[1, 1], [_A, _A * _A], [_A * _A, _A]])  # (Va, Vb, Vc) -> 3 (V+, V-)


def lagrangian(costs, cons: Constraints, dual_v_over, dual_v_under, dual_line) -> torch.Tensor:
    """``sum(costs) + sum(mu * g)``, a scalar: the GradMAP / GradMA environment objective.

    ``costs``: per-agent cost tensors; duals broadcast against the constraint terms.
    """
    total = sum(c.sum() for c in costs)
    return (total + (dual_v_over * cons.v_over_pu).sum() + (dual_v_under * cons.v_under_pu).sum()
            + (dual_line * cons.line_over).sum())


def leg_mean(x: torch.Tensor, legs: torch.Tensor) -> torch.Tensor:
    """Per-node values ``(..., n)`` averaged over each agent's legs ``(N, L)``: ``(..., N)``
    (``L = 1``: the node's value itself, no averaging)."""
    return x[..., legs[:, 0]] if legs.shape[1] == 1 else x[..., legs].mean(-1)


def reward(cfg: RewardConfig, cost_agent, cons: Constraints, agent_legs, nonconverged):
    """Per-agent reward ``(B, N)`` from per-agent cost ``(B, N)`` and the step's constraints;
    ``agent_legs`` ``(N, L)``: each agent's nodes, whose voltage penalties it bears (the mean
    over a split-phase household's two legs)."""
    v_pen = cfg.voltage_weight_gbp_per_pu * (cons.v_over_pu + cons.v_under_pu)  # (B, n)
    line_pen = cfg.line_weight_gbp * cons.line_over.sum(-1, keepdim=True)  # (B, 1)
    fail = cfg.nonconvergence_gbp * nonconverged.to(cost_agent.dtype).unsqueeze(-1)
    n = cost_agent.shape[-1]
    if cfg.kind == "team":
        total = cost_agent.sum(-1, keepdim=True) + v_pen.sum(-1, keepdim=True) + line_pen + fail
        return -cfg.scale * total.expand_as(cost_agent)
    own = cost_agent + leg_mean(v_pen, agent_legs) + (line_pen + fail) / n
    return -cfg.scale * own
