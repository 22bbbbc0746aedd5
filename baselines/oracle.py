"""Centralised perfect-foresight oracle: every agent's actions of each day optimised directly.

The oracle sees everything in advance (each day's demand, PV, prices and temperatures) and
chooses all ``B x T x N`` actions of those days jointly, on the same differentiable model the
policies are trained on. It is not a controller anyone can run (it needs the future and a
central computer); it shows how much room there is. The actions ``a`` in ``[-1, 1]`` are the
variables (projected back onto the box after every step), and the constrained problem

    min_a  cost(a)   s.t.  v_min <= v <= v_max, |I| <= rating

is solved by the same primal-dual scheme as the trainer (``gradmap_agents.dual``): projected
Adam steps on the Lagrangian with a cosine-decaying step size and projected dual ascent on
per-(step, node-phase) multipliers, against the limits tightened by a small margin so that
the result is feasible at the limits themselves.

**Optimality gap.** The AC power flow makes the problem nonconvex, so no certified optimum of
it is available. Without the network constraints, though, it separates by agent and day into
small convex programs in power space, the *copper-plate* problem, whose optimum bounds every
feasible cost from below; :func:`baselines.bound.copper_plate_bound` solves it exactly (an LP/QP
with Clarabel, certified by weak duality). :func:`oracle` reports it as ``lower_bound_cost`` and
``gap = (cost - lower_bound_cost) / |lower_bound_cost|``, an upper bound on the oracle's
distance to the true constrained optimum (it also contains the price of the constraints).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gradmap_agents.bound import copper_plate_bound
from gradmap_agents.dual import dual_ascent, init_duals, penalty, tightened
from gradmap_agents.evaluate import metrics
from gridedge_env.config import check_fields
from gridedge_env.rollout import concat, rollout


@dataclass(frozen=True)
class OracleConfig:
    iterations: int = 400
    """Adam steps on the Lagrangian (one rollout and one backward each)."""
    lr: float = 0.05
    """Initial Adam step size on the actions (cosine decay to 0 over the iterations)."""
    margin_pu: float = 0.002
    """Voltage limits tightened by this much (p.u.) while optimising."""
    line_margin: float = 0.01
    """Line ratings tightened by this share while optimising."""
    dual_lr_voltage: float = 2e5
    """Dual ascent step of the voltage multipliers, GBP per p.u. per (p.u. of mean violation)."""
    dual_lr_line: float = 2e4
    """Dual ascent step of the line multipliers."""
    dual_max: float = 1e7
    """Upper bound of every multiplier."""
    chunk: int = 64
    """Days optimised together (one rollout); the problem separates by day."""

    def __post_init__(self):
        check_fields(self, "oracle: ", at_least_one=("iterations", "chunk"),
                     positive=("lr", "dual_lr_voltage", "dual_lr_line", "dual_max"))
        if self.margin_pu < 0 or self.line_margin < 0:
            raise ValueError("oracle: margins must be >= 0")


class OpenLoop(torch.nn.Module):
    """Fixed actions ``a`` ``(B, T, N)`` for ``B`` days, as a rollout policy (it ignores the
    observations)."""

    def __init__(self, days: int, n_steps: int, n_agents: int, dtype=torch.float64, device="cpu"):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(days, n_steps, n_agents, dtype=dtype, device=device))

    def forward(self, obs, t, state=None):
        return self.a[:, t]


def optimise_actions(env, days, cfg: OracleConfig, *, constrained: bool = True,
                     progress_fn: Callable[[dict], None] | None = None) -> OpenLoop:
    """Every action of ``days`` ``(B,)`` by projected Adam on the day costs, with the primal-dual
    network constraints when ``constrained`` (else the network is ignored: a local method on the
    copper-plate problem, kept as a cross-check of :mod:`baselines.bound`). Returns the
    actions ``(B, T, N)`` as a rollout policy."""
    pol = OpenLoop(len(days), env.n_steps, env.n_agents, env.node_mask.dtype, env.node_mask.device)
    opt = torch.optim.Adam(pol.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.iterations)
    duals = init_duals(env, "node_time", 0.0, 0.0)
    for it in range(cfg.iterations):
        roll = rollout(env, days, pol)
        loss = roll.cost.sum()
        if constrained:
            cons = tightened(env, roll.v_pu, roll.line_loading, cfg.margin_pu, cfg.line_margin)
            loss = loss + penalty(duals, cons).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            pol.a.clamp_(-1.0, 1.0)
        if constrained:
            duals = dual_ascent(duals, cons, cfg.dual_lr_voltage, cfg.dual_lr_line, cfg.dual_max)
        if progress_fn is not None:
            progress_fn({"iteration": it + 1, "cost": float(roll.cost.detach().mean())})
    return pol


def oracle(env, days, cfg: OracleConfig | None = None,
           progress_fn: Callable[[dict], None] | None = None) -> dict:
    """Optimise every action of ``days`` under the network constraints and return the
    solution's metrics (:func:`gradmap_agents.evaluate.metrics` keys), the certified copper-plate
    ``lower_bound_cost`` (GBP/day, mean over the days whose power flows all converged, as
    ``cost``), the ``optimality_gap`` and ``wall_seconds``."""
    cfg = cfg or OracleConfig()
    days = torch.as_tensor(days, dtype=torch.long)
    t0 = time.perf_counter()
    rolls = []
    for chunk in days.split(cfg.chunk):
        pol = optimise_actions(env, chunk, cfg, progress_fn=progress_fn)
        with torch.no_grad():
            rolls.append(rollout(env, chunk, pol))
    roll = rolls[0] if len(rolls) == 1 else concat(rolls)
    out = metrics(env, roll)
    bound = copper_plate_bound(env, days)
    day_ok = roll.converged.all(1).cpu().numpy()
    lb = float(bound.day_cost[day_ok].mean()) if day_ok.any() else float("nan")
    out.update(lower_bound_cost=lb, optimality_gap=(out["cost"] - lb) / abs(lb),
               wall_seconds=time.perf_counter() - t0)
    return out
