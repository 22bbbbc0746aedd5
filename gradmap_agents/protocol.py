"""The comparison protocol: quality levels fixed by the scenario, and how runs are scored
against them (``docs/results.md``, protocol).

**Quality levels** come from the scenario alone, never from the runs they judge. On the
validation days, no control has cost ``c_nc`` (GBP/day) and voltage (line) violation magnitude
``V_nc`` (``L_nc``); the copper-plate problem (network constraints dropped, solved exactly:
:mod:`.bound`) has optimum ``c_lb <= `` the cost of every feasible policy. A validation point
is **feasible** when every power flow converged and

    V <= 0.1 V_nc   and   L <= 0.1 L_nc                                                   (P1)

(each kind in its own units; a kind no control never violates must stay at 0), and it
**captures** the share

    q = (c_nc - c) / (c_nc - c_lb)                                                        (P2)

of the cost gap. Level ``s`` (25, 50, 75 %) is reached at the first validation point that is
feasible with ``q >= s``. The levels therefore move with the scenario and the validation days
only: running the same comparison with another set of methods gives the same levels (tested).

**Curves and areas.** For a run's validation history, the best captured share so far
(``max q`` over the feasible points up to ``x``, 0 before the first) against ``x`` = training
wall seconds, environment gradients or simulated day-steps is a non-decreasing step function;
its normalised area over ``[0, H]``,

    AUC(H) = 1/H int_0^H max(0, q_best(x)) dx  in [0, 1],                                 (P3)

scores speed and final quality at once (``H`` the wall-time budget: a run that captures half
the gap at once scores 0.5). The sweep (:mod:`baselines.sweep`) selects on it.

**Fixed-penalty variant.** Every method minimises the same objective
``J = c + mu_V V + mu_L L`` with multipliers fixed by the scenario:
``mu_V = 10 (c_nc - c_lb) / V_nc`` GBP per p.u. x node-step and likewise ``mu_L`` per unit
overload x line-phase-step (``mu_V`` where no control overloads no line): no control's violation
then costs ten times the whole gap, so the minimiser of ``J`` gives up nearly all of it.
``J`` also has ``c_lb`` as a lower bound, and its captured share
``(J_nc - J) / (J_nc - c_lb)`` is scored like (P2) without the feasibility test.

**Where no level is attainable.** The levels measure the cost gap to a bound that ignores the
network, so on a scenario where satisfying the limits costs more than that gap, a feasible
policy can cost more than no control and capture a negative share (measured on ieee13-50-v1,
``docs/results.md``). Every run is therefore also scored on ``J``'s captured share
(``final_penalised``, ``auc_wall_penalised``), which is defined at every validation point and
ranks runs by cost and violation together; the sweeps select on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from gridedge_env.rollout import no_control

from .bound import copper_plate_bound
from .evaluate import evaluate

SHARES = (0.25, 0.5, 0.75)
"""Shares of the cost gap that define the quality levels."""
VIOLATION_SHARE = 0.1
"""Feasible: each violation magnitude at most this share of no control's (P1)."""
PENALTY_FACTOR = 10.0
"""Fixed-penalty variant: no control's violation costs this many times the cost gap."""
AXES = {"wall": "train/wall_seconds", "gradients": "train/env_gradients",
        "day_steps": "train/day_steps"}
"""Budget axes of the curves: history key of each."""


@dataclass(frozen=True)
class Levels:
    """The protocol's quality levels of one scenario's validation days (module docstring)."""

    no_control_cost: float  # c_nc, GBP/day
    bound_cost: float  # c_lb, GBP/day (certified copper-plate lower bound)
    no_control_voltage: float  # V_nc, p.u. x node-steps per day
    no_control_line: float  # L_nc, unit overload x line-phase-steps per day
    shares: tuple[float, ...] = SHARES
    violation_share: float = VIOLATION_SHARE

    def __post_init__(self):
        if not self.no_control_cost > self.bound_cost:
            raise ValueError(f"protocol: no-control cost {self.no_control_cost:,.2f} is not above "
                             f"the copper-plate bound {self.bound_cost:,.2f}: there is no gap")

    @property
    def gap(self) -> float:
        """``c_nc - c_lb``, GBP/day."""
        return self.no_control_cost - self.bound_cost

    def cost_at(self, share: float) -> float:
        """Validation cost (GBP/day) that captures ``share`` of the gap."""
        return self.no_control_cost - share * self.gap

    def feasible(self, val: dict, prefix: str = "") -> bool:
        """(P1) for metrics ``val`` (keys of :func:`.evaluate.metrics`, optionally prefixed)."""
        def get(k):
            return val[f"{prefix}{k}"]

        return (get("nonconverged") == 0
                and get("voltage_violation_magnitude") <= self.violation_share * self.no_control_voltage
                and get("line_violation_magnitude") <= self.violation_share * self.no_control_line)

    def captured(self, val: dict, prefix: str = "") -> float | None:
        """(P2) of a feasible validation point, ``None`` for an infeasible one."""
        if not self.feasible(val, prefix):
            return None
        return (self.no_control_cost - val[f"{prefix}cost"]) / self.gap

    def penalty_multipliers(self) -> tuple[float, float]:
        """``(mu_V, mu_L)`` of the fixed-penalty variant (module docstring): GBP per p.u. x
        node-step and GBP per unit overload x line-phase-step."""
        if not self.no_control_voltage > 0:
            raise ValueError("protocol: no control violates no voltage limit on the validation "
                             "days; the fixed-penalty multipliers are not defined")
        mu_v = PENALTY_FACTOR * self.gap / self.no_control_voltage
        mu_l = PENALTY_FACTOR * self.gap / self.no_control_line if self.no_control_line > 0 else mu_v
        return mu_v, mu_l

    def objective(self, val: dict, prefix: str = "") -> float:
        """``J`` of the fixed-penalty variant for metrics ``val``, GBP/day."""
        mu_v, mu_l = self.penalty_multipliers()
        return (val[f"{prefix}cost"] + mu_v * val[f"{prefix}voltage_violation_magnitude"]
                + mu_l * val[f"{prefix}line_violation_magnitude"])

    def as_dict(self) -> dict:
        """JSON-ready: the fields, the cost of each level and the feasibility bounds."""
        return {**asdict(self), "shares": list(self.shares),
                "cost_levels": {f"{s:g}": self.cost_at(s) for s in self.shares},
                "voltage_max": self.violation_share * self.no_control_voltage,
                "line_max": self.violation_share * self.no_control_line}


_LEVELS: dict = {}
"""Levels by scenario configuration, agent count, validation days and dtype (a process computes
each once: a sweep builds a new environment per trial)."""


def levels(env) -> Levels:
    """The levels of ``env``'s scenario on its validation days: no control's metrics and the
    certified copper-plate bound (:func:`.bound.copper_plate_bound`), computed once per
    scenario configuration, agent count, validation days and dtype in a process (both are
    deterministic functions of these)."""
    days = env.scenario.split.validation
    key = (repr(env.scenario.config), env.n_agents, tuple(int(d) for d in days),
           str(env.node_mask.dtype))
    if key not in _LEVELS:
        nc, _ = evaluate(env, no_control(env), days)
        _LEVELS[key] = from_metrics(nc, copper_plate_bound(env, days).mean)
    return _LEVELS[key]


def from_metrics(no_control_val: dict, bound_cost: float) -> Levels:
    """Levels from no control's validation metrics and the copper-plate bound."""
    return Levels(float(no_control_val["cost"]), float(bound_cost),
                  float(no_control_val["voltage_violation_magnitude"]),
                  float(no_control_val["line_violation_magnitude"]))


def quality(history: Sequence[dict], lv: Levels, penalised: bool = False) -> list[float | None]:
    """Captured share (P2) of each validation point of ``history`` (``val/`` keys), ``None``
    where infeasible; ``penalised``: the fixed-penalty variant's share of ``J`` instead."""
    if penalised:
        j_nc = lv.objective({"cost": lv.no_control_cost,
                             "voltage_violation_magnitude": lv.no_control_voltage,
                             "line_violation_magnitude": lv.no_control_line})
        return [(j_nc - lv.objective(h, "val/")) / (j_nc - lv.bound_cost) for h in history]
    return [lv.captured(h, "val/") for h in history]


def best_curve(history: Sequence[dict], lv: Levels, axis: str = "wall",
               penalised: bool = False) -> list[tuple[float, float | None]]:
    """``(x, best captured share so far)`` at each validation point (``None`` before the first
    feasible one); ``axis``: ``"wall"``, ``"gradients"`` or ``"day_steps"``."""
    out, best = [], None
    for h, q in zip(history, quality(history, lv, penalised), strict=True):
        if q is not None and (best is None or q > best):
            best = q
        out.append((float(h[AXES[axis]]), best))
    return out


def auc(history: Sequence[dict], lv: Levels, horizon: float, axis: str = "wall",
        penalised: bool = False) -> float:
    """(P3): normalised area under ``max(0, best captured share)`` over ``[0, horizon]``, the
    step function holding each validation point's value until the next (0 before the first)."""
    if not horizon > 0:
        raise ValueError(f"protocol: AUC horizon must be > 0, got {horizon}")
    area, pts = 0.0, best_curve(history, lv, axis, penalised)
    for (x, q), x_next in zip(pts, [p[0] for p in pts[1:]] + [math.inf], strict=True):
        lo, hi = min(x, horizon), min(x_next, horizon)
        area += max(0.0, q or 0.0) * max(0.0, hi - lo)
    return area / horizon


def time_to(history: Sequence[dict], lv: Levels, share: float, axis: str = "wall",
            penalised: bool = False) -> float | None:
    """``x`` at the first validation point capturing at least ``share`` (feasibly), ``None``
    when none does."""
    for x, q in best_curve(history, lv, axis, penalised):
        if q is not None and q >= share:
            return x
    return None


def final(history: Sequence[dict], lv: Levels, penalised: bool = False) -> float | None:
    """The best captured share of the whole history (``None``: never feasible)."""
    pts = best_curve(history, lv, "wall", penalised)
    return pts[-1][1] if pts else None


def score(history: Sequence[dict], lv: Levels, budget_s: float | None,
          penalised: bool = False) -> dict:
    """Every protocol number of one run: final captured share, AUC over the wall-time budget
    (and over the run's own wall time without a budget), and the time, environment gradients
    and day-steps to each level."""
    horizon = budget_s or (history[-1][AXES["wall"]] if history else 0.0)
    out = {"final_captured": final(history, lv, penalised),
           "auc_wall": auc(history, lv, horizon, "wall", penalised) if horizon > 0 else None,
           # the penalised objective's share is defined at every point, feasible or not: it
           # still ranks runs where no feasible point beats no control (module docstring)
           "final_penalised": final(history, lv, True),
           "auc_wall_penalised": auc(history, lv, horizon, "wall", True) if horizon > 0 else None}
    for s in lv.shares:
        tag = f"{round(100 * s)}"
        for axis, name in (("wall", "time"), ("gradients", "gradients"), ("day_steps", "day_steps")):
            out[f"{name}_to_{tag}"] = time_to(history, lv, s, axis, penalised)
    return out
