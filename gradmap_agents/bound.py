"""Certified copper-plate lower bound: the cost of any policy with the network dropped, an LP/QP.

Without the network (no voltage or line limits; the environment has no network *cost*: its cost
channels are the energy bill and the device costs), the cost of a day separates by agent, and
each agent's part is a small convex program over its device's power trajectory with exactly the
environment's device models (``gridedge_env.devices``) and costs (``gridedge_env.costs``). Per
household (an agent's ``k = households_per_agent`` homes act alike, so its cost is ``k`` times
one home's), day and step ``t`` (``T`` steps of ``dt`` hours), with the household's net demand
``h_t`` (demand minus PV, kW) as data and ``d_t`` the device's power (consumption > 0):

- **energy bill** ``dt max(price_t n_t, export_t n_t)`` of the net power ``n_t = h_t + d_t``,
  which is the environment's ``dt (price n+ - export n-)`` because ``price >= export`` (checked:
  a higher export price makes the bill nonconvex and is refused). Where every feasible ``n_t``
  has one sign the bill is linear; elsewhere it is an epigraph variable ``e_t`` with two rows;
- **battery**: charge ``c_t >= 0`` and discharge ``u_t >= 0``, ``c_t + u_t <= p_max``,
  ``d_t = c_t - u_t``, ``soc_t = soc_{t-1} + dt (eta_c c_t - u_t / eta_d) / capacity`` in
  ``[soc_min, soc_max]``,
  degradation ``deg dt (c_t + u_t)``, terminal ``w >= terminal capacity (soc_init - soc_T)``,
  ``w >= 0``;
- **heat pump**: ``d_t`` in ``[0, p_max]``, ``T_t = alpha T_{t-1} + beta (T_out,t + R cop_t
  d_t)`` (``alpha = exp(-dt / RC)``, or ``1 - dt / RC`` for Euler; ``beta = 1 - alpha``; COP
  of the step's outdoor temperature), discomfort ``disc dt v_t``, ``v_t >= T_low - T_t``,
  ``v_t >= T_t - T_high``, ``v_t >= 0``;
- **generator**: output ``g_t`` in ``[0, p_max]``, ``d_t = -g_t``, fuel ``(a g_t^2 + b g_t) dt``
  (the one quadratic term: the program is a convex QP).

**Relaxation.** Every trajectory the environment can produce is feasible here and costs the
same (tested on rollouts): the action maps put each device's power inside these bounds (the
battery's SoC-dependent ``[p_lo, p_hi]`` lies in ``[-p_max, p_max]`` and keeps the SoC in
bounds), and with ``c = max(d, 0)``, ``u = max(-d, 0)`` and each epigraph variable at its
function's value the rows and objective are the environment's. The one nonconvex piece, the
separate charge and discharge efficiencies, is relaxed by letting ``c`` and ``u`` be positive
together (throughput ``c + u >= |d|``), which only enlarges the feasible set (the environment's
last SoC clamp only removes rounding, ~1e-16). So the optimum is a lower bound on the cost of
every policy, centralised or not, with or without the network.

**Certificate.** Clarabel (an interior-point solver for convex QPs and cones) solves the
block-diagonal program, one block per (day, agent), in chunks of blocks. The bound reported is
not the solver's objective but the Lagrangian dual function at its multipliers ``z``
(inequality multipliers clipped to ``>= 0``), with every variable in a finite box that holds for
all environment trajectories (the temperatures' by interval arithmetic along the day):

    g(z) = -b' z + sum_j min_{lb_j <= x_j <= ub_j} (p_j x_j^2 / 2 + (q + A' z)_j x_j) + const

It bounds the optimum from below for *any* ``z`` (weak duality), so solver tolerances can only
loosen it, never invalidate it; the gap to the solver's primal objective is reported. Sums are
in float64 (rounding ~1e-12 relative). See ``docs/baselines.md`` (oracle section).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import clarabel
import numpy as np
import scipy.sparse as sp
import torch

from gridedge_env.core import EnvParams, reset
from gridedge_env.devices import HouseholdExog, heat_pump, household

SUPPORTED_KINDS = ("battery", "heatpump", "generator")
"""Device kinds the formulation covers (``EnvParams.kind_slices`` keys), in agent order."""

GROUP_BLOCKS = 2_000
"""(day, agent) blocks :func:`copper_plate_bound` builds at once (whole days, at least one)."""

CHUNK_VARIABLES = 3_000
"""Variables per Clarabel call (whole blocks): small chunks keep the KKT system in cache; one
call on a whole 1,000-agent day is ~1.6x slower per block (``docs/baselines.md``)."""


class BoundResult(NamedTuple):
    """A certified copper-plate lower bound on ``D`` days."""

    day_cost: np.ndarray
    """``(D,)`` GBP/day summed over agents: the certified (dual) bound of each day."""
    mean: float
    """Mean of ``day_cost``, GBP/day."""
    solver: str
    """Solver and version, e.g. ``"clarabel 0.11.1"``."""
    status: str
    """Solver status, ``"Solved"`` when every chunk is (the bound is valid whatever it says)."""
    gap: float
    """Relative primal-dual gap over all days: ``(primal - bound) / max(|bound|, 1 GBP)``, with
    ``primal`` the solver's objective (feasible to its tolerance, 1e-8)."""
    seconds: float
    """Wall-clock seconds: building, solving and certifying."""


class Program(NamedTuple):
    """``min sum_j (p_j x_j^2 / 2 + q_j x_j) + sum(const)`` s.t. ``a_eq x = b_eq``,
    ``a_in x <= b_in``, ``lb <= x <= ub``: ``n`` variables, ``m_eq`` and ``m_in`` rows.

    Blocks are ``day * n_agents + agent``; ``var_block``, ``eq_block``, ``in_block`` give each
    variable's and row's block and ``const`` ``(n_blocks,)`` each block's constant cost, GBP.
    ``lb``/``ub`` are finite and hold for every environment trajectory (the certificate's box);
    ``hard_lb``/``hard_ub`` mark the model's own bounds, the ones the solver is given (the
    others hold at its optimum). ``epigraph`` marks variables that stand for a convex function
    of the others: each appears with coefficient -1 in its ``<=`` rows, at most one per row.
    """

    p: np.ndarray
    q: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    hard_lb: np.ndarray
    hard_ub: np.ndarray
    epigraph: np.ndarray
    var_block: np.ndarray
    a_eq: sp.csr_array
    b_eq: np.ndarray
    eq_block: np.ndarray
    a_in: sp.csr_array
    b_in: np.ndarray
    in_block: np.ndarray
    const: np.ndarray
    n_agents: int

    def per_day(self, block_values: np.ndarray) -> np.ndarray:
        """``(n_blocks,)`` -> ``(D,)`` sums over each day's agents."""
        return block_values.reshape(-1, self.n_agents).sum(1)

    def block_sum(self, blocks: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Sums of ``values`` by block, ``(n_blocks,)``."""
        return np.bincount(blocks, values, len(self.const))

    def day_cost(self, x: np.ndarray) -> np.ndarray:
        """Objective of ``x`` ``(n,)`` per day, ``(D,)`` GBP."""
        return self.per_day(self.block_sum(self.var_block, (0.5 * self.p * x + self.q) * x)
                            + self.const)

    def violation(self, x: np.ndarray) -> float:
        """Largest constraint violation of ``x`` (rows and box), in the rows' own units."""
        return float(max(np.abs(self.a_eq @ x - self.b_eq).max(initial=0.0),
                         np.max(self.a_in @ x - self.b_in, initial=0.0),
                         np.max(self.lb - x, initial=0.0), np.max(x - self.ub, initial=0.0)))

    def tighten(self, x: np.ndarray) -> np.ndarray:
        """``x`` with every epigraph variable at the least value its rows and box allow (its
        function's value at the other variables)."""
        x = np.where(self.epigraph, self.lb, x)
        coo = self.a_in.tocoo()
        on = self.epigraph[coo.col]
        excess = (self.a_in @ x - self.b_in)[coo.row[on]]
        np.maximum.at(x, coo.col[on], self.lb[coo.col[on]] + excess)
        return x

    def dual_bound(self, z_eq: np.ndarray, z_in: np.ndarray) -> np.ndarray:
        """Lagrangian dual function per day ``(D,)``, GBP, at multipliers ``z_eq`` ``(m_eq,)``
        and ``z_in`` ``(m_in,)`` (clipped to ``>= 0``): a lower bound on each day's optimum for
        any multipliers (module docstring)."""
        z_in = np.maximum(z_in, 0.0)
        r = self.q + self.a_eq.T @ z_eq + self.a_in.T @ z_in
        curved = self.p > 0
        x = np.where(r >= 0, self.lb, self.ub)  # linear: the box corner against the slope
        x[curved] = np.clip(-r[curved] / self.p[curved], self.lb[curved], self.ub[curved])
        inner = self.block_sum(self.var_block, (0.5 * self.p * x + r) * x)
        return self.per_day(inner + self.const - self.block_sum(self.eq_block, self.b_eq * z_eq)
                            - self.block_sum(self.in_block, self.b_in * z_in))


class _Builder:
    """Collects a :class:`Program` a family at a time: a family is an array of variables or
    rows over ``(D, T, N_kind)`` or any subset of it, each entry with its block, so nothing
    loops over agents or days."""

    def __init__(self, n_days: int, n_agents: int):
        self.n_agents, self.n = n_agents, 0
        self.vars: list[tuple] = []
        self.rows: dict = {"eq": [], "in": []}
        self.m = {"eq": 0, "in": 0}
        self.extra_q: list[tuple] = []
        self.const = np.zeros(n_days * n_agents)

    def blocks(self, shape, sl: slice) -> np.ndarray:
        """Block ids of a ``(D, [T,] N_kind)`` family of the agents ``sl``."""
        day = np.arange(shape[0]).reshape(-1, *[1] * (len(shape) - 1))
        return np.broadcast_to(day * self.n_agents + np.arange(sl.start, sl.stop), shape)

    def var(self, lb, ub, block, *, q=0.0, p=0.0, hard=(False, False), epigraph=False):
        """Variables shaped like ``block``; returns their indices, shaped like it."""
        idx = self.n + np.arange(block.size).reshape(block.shape)
        self.n += block.size
        cols = [np.broadcast_to(np.asarray(v, dtype=np.float64), block.shape).ravel()
                for v in (lb, ub, q, p)]
        flags = [np.full(block.size, f) for f in (*hard, epigraph)]
        self.vars.append((*cols, *flags, block.ravel()))
        return idx

    def row(self, sense: str, terms, rhs, block) -> None:
        """Rows ``sum(coef * x[idx]) (= or <=) rhs`` shaped like ``block``; ``terms`` is a list
        of ``(coef, idx)`` broadcastable to it; zero coefficients are left out."""
        rows = self.m[sense] + np.arange(block.size).reshape(block.shape)
        self.m[sense] += block.size
        entries = []
        for coef, idx in terms:
            c = np.broadcast_to(np.asarray(coef, dtype=np.float64), block.shape)
            keep = c != 0
            entries.append((rows[keep], np.broadcast_to(idx, block.shape)[keep], c[keep]))
        rhs = np.broadcast_to(np.asarray(rhs, dtype=np.float64), block.shape).ravel()
        self.rows[sense].append((entries, rhs, block.ravel()))

    def linear_cost(self, idx: np.ndarray, coef: np.ndarray) -> None:
        """Add ``sum(coef * x[idx])`` (GBP) to the objective."""
        self.extra_q.append((idx.ravel(), np.broadcast_to(coef, idx.shape).ravel()))

    def constant(self, block: np.ndarray, value: np.ndarray) -> None:
        """Add ``value`` (GBP, shaped like ``block``) to the blocks' constant costs."""
        np.add.at(self.const, block.ravel(), np.broadcast_to(value, block.shape).ravel())

    def program(self) -> Program:
        lb, ub, q, p, hard_lb, hard_ub, epi, var_block = (np.concatenate(c)
                                                         for c in zip(*self.vars, strict=True))
        for idx, coef in self.extra_q:
            np.add.at(q, idx, coef)
        mats = {}
        for sense, families in self.rows.items():
            r, c, v = (np.concatenate([e[i] for f in families for e in f[0]]) for i in range(3))
            a = sp.csr_array((v, (r, c)), shape=(self.m[sense], self.n))
            mats[sense] = (a, *(np.concatenate([f[i] for f in families]) for i in (1, 2)))
        return Program(p, q, lb, ub, hard_lb, hard_ub, epi, var_block, *mats["eq"], *mats["in"],
                       self.const, self.n_agents)


class DayData(NamedTuple):
    """The requested days' data, float64 numpy: per household ``(D, T, N)`` over all agents,
    feeder-wide series ``(D, T, 1)``."""

    home_kw: np.ndarray
    """Household net demand (demand minus PV), kW."""
    t_out_c: np.ndarray
    """Outdoor temperature, degC."""
    price: np.ndarray
    """Import price, GBP/kWh."""
    export_price: np.ndarray
    """Export price, GBP/kWh."""
    soc_init: np.ndarray
    """``(1, N_battery)`` SoC at the start of each day, fraction."""
    t_init_c: np.ndarray
    """``(1, N_heatpump)`` indoor temperature at the start of each day, degC."""


def day_data(env: EnvParams, days: np.ndarray) -> DayData:
    """The env's own data of ``days`` ``(D,)``: what :func:`gridedge_env.core.reset` gathers."""
    state, _ = reset(env, len(days), days=torch.as_tensor(days, device=env.agent_node.device))
    demand, pv, series = state.exog
    home, _ = household.power(env.scenario.household, HouseholdExog(demand, pv))
    return DayData(*(_numpy(x) for x in (home, series[..., 0:1], series[..., 1:2],
                                         series[..., 2:3], state.soc_init[:1], state.t_in_c[:1])))


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64 if x.is_floating_point() else x.dtype).numpy()


def _params(params) -> dict:
    return {k: _numpy(v) for k, v in params._asdict().items()}


def _previous(idx: np.ndarray) -> np.ndarray:
    """Indices of the step before along axis 1 (step 0 points at itself; its coefficient is 0)."""
    return np.concatenate([idx[:, :1], idx[:, :-1]], axis=1)


def _bill(b: _Builder, data: DayData, sl: slice, terms, d_lo, d_hi, k: float, dt: float):
    """The energy bill of one kind's agents, ``(D, T, N_kind)``; the device power is
    ``sum(coef * x[idx])`` over ``terms``, within ``[d_lo, d_hi]``. Linear where the net power
    has one sign over that range, an epigraph variable with two rows where it may change sign."""
    home = data.home_kw[..., sl]
    price, export = (np.broadcast_to(s, home.shape) for s in (data.price, data.export_price))
    lo, hi = home + d_lo, home + d_hi
    kink = (lo < 0) & (hi > 0)
    block = b.blocks(home.shape, sl)
    terms = [(np.broadcast_to(coef, home.shape), idx) for coef, idx in terms]
    slope = k * dt * np.where(lo >= 0, price, export)[~kink]
    for coef, idx in terms:
        b.linear_cost(idx[~kink], slope * coef[~kink])
    b.constant(block[~kink], slope * home[~kink])
    lo_end, hi_end = dt * export[kink] * lo[kink], dt * price[kink] * hi[kink]
    e = b.var(np.minimum(np.minimum(lo_end, hi_end), 0), np.maximum(lo_end, hi_end), block[kink],
              q=k, epigraph=True)
    for s in (price[kink], export[kink]):
        b.row("in", [(dt * s * coef[kink], idx[kink]) for coef, idx in terms] + [(-1.0, e)],
              -dt * s * home[kink], block[kink])


def _battery(b: _Builder, env: EnvParams, data: DayData, k: float, ix: dict) -> None:
    sl, dt, p = env.kind_slices["battery"], env.dt_h, _params(env.scenario.battery)
    block = b.blocks((len(data.price), env.n_steps, sl.stop - sl.start), sl)
    first = (np.arange(env.n_steps) == 0)[:, None]
    deg = k * p["deg_cost_gbp_per_kwh"] * dt
    c = b.var(0, p["p_max_kw"], block, q=deg, hard=(True, False))
    u = b.var(0, p["p_max_kw"], block, q=deg, hard=(True, False))
    b.row("in", [(1.0, c), (1.0, u)], p["p_max_kw"], block)  # |d| = c + u <= p_max, one row
    soc = b.var(p["soc_min"], p["soc_max"], block, hard=(True, True))
    cap = p["capacity_kwh"]
    b.row("eq", [(1.0, soc), (np.where(first, 0.0, -1.0), _previous(soc)),
                 (-dt * p["eta_c"] / cap, c), (dt / (p["eta_d"] * cap), u)],
          np.where(first, data.soc_init, 0.0), block)
    slope = p["terminal_gbp_per_kwh"] * cap
    w = b.var(0, slope * np.maximum(data.soc_init[0] - p["soc_min"], 0), block[:, 0], q=k,
              hard=(True, False), epigraph=True)
    b.row("in", [(-slope, soc[:, -1]), (-1.0, w)], -slope * data.soc_init, block[:, 0])
    _bill(b, data, sl, [(1.0, c), (-1.0, u)], -p["p_max_kw"], p["p_max_kw"], k, dt)
    ix.update(battery_charge_kw=c, battery_discharge_kw=u, battery_soc=soc)


def _temperature_box(alpha, gain, base, t_init, p_max):
    """Bounds ``(lo, hi)`` ``(D, T, N)`` of the indoor temperature over every power trajectory
    in ``[0, p_max]``: interval arithmetic along the day (``T' = alpha T + base + gain p``)."""
    lo, hi, t_lo, t_hi = [], [], t_init, t_init
    for t in range(base.shape[1]):  # time is sequential; days and agents are batched
        heat = gain[:, t] * p_max
        a_lo, a_hi = np.minimum(alpha * t_lo, alpha * t_hi), np.maximum(alpha * t_lo, alpha * t_hi)
        t_lo = a_lo + base[:, t] + np.minimum(heat, 0)
        t_hi = a_hi + base[:, t] + np.maximum(heat, 0)
        lo.append(t_lo)
        hi.append(t_hi)
    return np.stack(lo, 1), np.stack(hi, 1)


def _heat_pump(b: _Builder, env: EnvParams, data: DayData, k: float, ix: dict) -> None:
    sl, dt, hp = env.kind_slices["heatpump"], env.dt_h, env.scenario.heat_pump
    p = _params(hp)
    block = b.blocks((len(data.price), env.n_steps, sl.stop - sl.start), sl)
    first = (np.arange(env.n_steps) == 0)[:, None]
    t_out = torch.as_tensor(data.t_out_c, dtype=hp.cop_c0.dtype, device=hp.cop_c0.device)
    rc = p["r_k_per_kw"] * p["c_kwh_per_k"]
    alpha = np.where(p["exact"], np.exp(-dt / rc), 1 - dt / rc)
    gain = (1 - alpha) * p["r_k_per_kw"] * _numpy(heat_pump.cop(hp, t_out))  # K per kW electric
    base = np.broadcast_to((1 - alpha) * data.t_out_c, block.shape)
    t_lo, t_hi = _temperature_box(alpha, gain, base, data.t_init_c, p["p_max_kw"])
    d = b.var(0, p["p_max_kw"], block, hard=(True, True))
    t_in = b.var(t_lo, t_hi, block)
    b.row("eq", [(1.0, t_in), (np.where(first, 0.0, -alpha), _previous(t_in)), (-gain, d)],
          base + np.where(first, alpha * data.t_init_c, 0.0), block)
    v_hi = np.maximum(np.maximum(p["t_low_c"] - t_lo, t_hi - p["t_high_c"]), 0)
    v = b.var(0, v_hi, block, q=k * p["discomfort_gbp_per_kh"] * dt, hard=(True, False),
              epigraph=True)
    b.row("in", [(-1.0, t_in), (-1.0, v)], -p["t_low_c"], block)
    b.row("in", [(1.0, t_in), (-1.0, v)], p["t_high_c"], block)
    _bill(b, data, sl, [(1.0, d)], 0.0, p["p_max_kw"], k, dt)
    ix.update(heatpump_kw=d, heatpump_t_in_c=t_in)


def _generator(b: _Builder, env: EnvParams, data: DayData, k: float, ix: dict) -> None:
    sl, dt, p = env.kind_slices["generator"], env.dt_h, _params(env.scenario.generator)
    block = b.blocks((len(data.price), env.n_steps, sl.stop - sl.start), sl)
    g = b.var(0, p["p_max_kw"], block, q=k * p["b_gbp_per_kwh"] * dt,
              p=2 * k * p["a_gbp_per_kw2h"] * dt, hard=(True, True))
    _bill(b, data, sl, [(-1.0, g)], -p["p_max_kw"], 0.0, k, dt)
    ix.update(generator_output_kw=g)


@dataclass(frozen=True, eq=False)
class CopperPlate:
    """The copper-plate program of ``days`` and where the device quantities sit in ``x``:
    ``index`` maps ``battery_charge_kw``, ``battery_discharge_kw``, ``battery_soc``,
    ``heatpump_kw``, ``heatpump_t_in_c`` and ``generator_output_kw`` to index arrays
    ``(D, T, N_kind)`` (per household; the objective carries ``households_per_agent``)."""

    program: Program
    index: dict
    data: DayData
    kind_slices: dict
    days: np.ndarray

    def point(self, device_kw: np.ndarray, soc: np.ndarray, t_in_c: np.ndarray) -> np.ndarray:
        """``x`` ``(n,)`` of a trajectory: ``device_kw`` ``(D, T, N)`` every agent's device
        power per household (consumption > 0), ``soc`` ``(D, T, N_battery)`` and ``t_in_c``
        ``(D, T, N_heatpump)`` after each step; epigraph variables at their functions' values."""
        ix, sl = self.index, self.kind_slices
        x = np.zeros(self.program.q.shape)
        battery_kw = device_kw[..., sl["battery"]]
        x[ix["battery_charge_kw"]] = np.maximum(battery_kw, 0)
        x[ix["battery_discharge_kw"]] = np.maximum(-battery_kw, 0)
        x[ix["battery_soc"]] = soc
        x[ix["heatpump_kw"]] = device_kw[..., sl["heatpump"]]
        x[ix["heatpump_t_in_c"]] = t_in_c
        x[ix["generator_output_kw"]] = -device_kw[..., sl["generator"]]
        return self.program.tighten(x)


def check_supported(env: EnvParams, data: DayData | None = None, days=None) -> None:
    """Raise ``ValueError`` naming the first thing the formulation does not cover: a device
    kind, a negative fuel-cost curvature, or (with ``data``) an export price above the import
    price."""
    other = sorted(k for k, s in env.kind_slices.items()
                   if k not in SUPPORTED_KINDS and s.stop > s.start)
    if other:
        raise ValueError(f"copper_plate_bound: device kind(s) {other} not covered "
                         f"(supported: {list(SUPPORTED_KINDS)})")
    a = _numpy(env.scenario.generator.a_gbp_per_kw2h)
    if (a < 0).any():
        raise ValueError(f"copper_plate_bound: generator a_gbp_per_kw2h={a.min():g} < 0 makes "
                         "the fuel cost nonconvex")
    if data is not None and (data.export_price > data.price).any():
        d, t, _ = np.argwhere(data.export_price > data.price)[0]
        raise ValueError(f"copper_plate_bound: export price {data.export_price[d, t, 0]:g} above "
                         f"import price {data.price[d, t, 0]:g} GBP/kWh on day {days[d]} step "
                         f"{t} makes the energy bill nonconvex")


def copper_plate_problem(env: EnvParams, days) -> CopperPlate:
    """The copper-plate program of ``days`` ``(D,)`` (indices into the scenario's profiles)."""
    check_supported(env)
    days = _numpy(torch.as_tensor(days, dtype=torch.long).reshape(-1))
    data = day_data(env, days)
    check_supported(env, data, days)
    k = float(env.scenario.config.households_per_agent)
    b, ix = _Builder(len(days), env.n_agents), {}
    _battery(b, env, data, k, ix)
    _heat_pump(b, env, data, k, ix)
    _generator(b, env, data, k, ix)
    return CopperPlate(b.program(), ix, data, dict(env.kind_slices), days)


class Solution(NamedTuple):
    """Solver output in the program's own order (:func:`solve`)."""

    x: np.ndarray
    z_eq: np.ndarray
    z_in: np.ndarray
    primal: float
    """Sum of the chunks' primal objectives (with ``Program.const``), GBP."""
    status: str


class _Stacked(NamedTuple):
    """Clarabel's ``A x + s = b`` (``[a_eq; a_in; x <= ub; -x <= -lb]``, hard bounds only) with
    columns sorted by block and rows by (chunk, cone), so chunk ``i`` is the column range
    ``cols[i]:cols[i + 1]``, its zero-cone rows ``rows[i]:zero_end[i]`` and its nonnegative-cone
    rows ``zero_end[i]:rows[i + 1]``."""

    a: sp.csc_array
    b: np.ndarray
    col_order: np.ndarray  # stacked column -> program variable
    row_of_eq: np.ndarray  # program eq row -> stacked row
    row_of_in: np.ndarray  # program in row -> stacked row
    cols: np.ndarray
    rows: np.ndarray
    zero_end: np.ndarray


def _stack(program: Program, per_chunk: int) -> _Stacked:
    """:class:`_Stacked` of ``program`` in chunks of ``per_chunk`` blocks."""
    n, pr = len(program.q), program
    hi, lo = np.flatnonzero(pr.hard_ub), np.flatnonzero(pr.hard_lb)
    eq, ineq = pr.a_eq.tocoo(), pr.a_in.tocoo()
    m_eq, m_in = len(pr.b_eq), len(pr.b_in)
    row_block = np.concatenate([pr.eq_block, pr.in_block, pr.var_block[hi], pr.var_block[lo]])
    cone = np.repeat([0, 1], [m_eq, len(row_block) - m_eq])
    row_order = np.argsort(row_block // per_chunk * 2 + cone, kind="stable")
    new_row = np.empty_like(row_order)
    new_row[row_order] = np.arange(len(row_order))
    col_order = np.argsort(pr.var_block, kind="stable")
    new_col = np.empty_like(col_order)
    new_col[col_order] = np.arange(n)
    r = np.concatenate([eq.row, m_eq + ineq.row, m_eq + m_in + np.arange(len(hi) + len(lo))])
    c = np.concatenate([eq.col, ineq.col, hi, lo])
    v = np.concatenate([eq.data, ineq.data, np.ones(len(hi)), -np.ones(len(lo))])
    a = sp.csc_array((v, (new_row[r], new_col[c])), shape=(len(row_order), n))
    b = np.concatenate([pr.b_eq, pr.b_in, pr.ub[hi], -pr.lb[lo]])[row_order]
    chunk = np.arange(-(-len(pr.const) // per_chunk) + 1)  # chunk ids and one past the last
    key = (row_block // per_chunk * 2 + cone)[row_order]
    return _Stacked(a, b, col_order, new_row[:m_eq], new_row[m_eq:m_eq + m_in],
                    np.searchsorted(pr.var_block[col_order], chunk * per_chunk),
                    np.searchsorted(key, 2 * chunk), np.searchsorted(key, 2 * chunk + 1))


def _chunk(a: sp.csc_array, cols: slice, rows: slice) -> sp.csc_array:
    """Columns ``cols`` of ``a``, whose entries all lie in ``rows``, as a matrix of their own."""
    ptr = a.indptr[cols.start:cols.stop + 1]
    at = slice(ptr[0], ptr[-1])
    return sp.csc_array((a.data[at], a.indices[at] - rows.start, ptr - ptr[0]),
                        shape=(rows.stop - rows.start, cols.stop - cols.start))


def _diagonal(p: np.ndarray) -> sp.csc_array:
    """``diag(p)`` as CSC with the nonzeros only (an LP chunk passes an empty ``P``)."""
    on = p != 0
    ptr = np.concatenate([[0], np.cumsum(on)])
    return sp.csc_array((p[on], np.flatnonzero(on), ptr), shape=(len(p), len(p)))


def solve(program: Program, *, chunk_variables: int = CHUNK_VARIABLES,
          tol_gap_rel: float = 1e-8) -> Solution:
    """Solve ``program`` with Clarabel, about ``chunk_variables`` variables (whole blocks) per
    call; the blocks are independent, so the chunks' solutions together solve the program."""
    per_chunk = max(1, int(chunk_variables * len(program.const) / max(len(program.q), 1)))
    st = _stack(program, per_chunk)
    p, q = program.p[st.col_order], program.q[st.col_order]
    x, z = np.zeros(len(q)), np.zeros(len(st.b))
    statuses, primal = set(), float(program.const.sum())
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_rel = tol_gap_rel
    settings.direct_solve_method = "qdldl"  # deterministic, single-threaded
    settings.iterative_refinement_enable = False  # 2x faster; the certificate absorbs the rest
    for i in range(len(st.cols) - 1):  # chunks of whole blocks, not agents one by one
        v, r = slice(st.cols[i], st.cols[i + 1]), slice(st.rows[i], st.rows[i + 1])
        if v.start == v.stop:
            continue
        sol = clarabel.DefaultSolver(_diagonal(p[v]), q[v], _chunk(st.a, v, r), st.b[r], [
            clarabel.ZeroConeT(int(st.zero_end[i] - r.start)),
            clarabel.NonnegativeConeT(int(r.stop - st.zero_end[i]))], settings).solve()
        x[v], z[r] = sol.x, sol.z
        statuses.add(str(sol.status))
        primal += sol.obj_val
    out = np.empty_like(x)
    out[st.col_order] = x
    status = "Solved" if statuses <= {"Solved"} else ",".join(sorted(statuses))
    return Solution(out, z[st.row_of_eq], z[st.row_of_in], primal, status)


def copper_plate_bound(env: EnvParams, days, *, chunk_variables: int = CHUNK_VARIABLES,
                       tol_gap_rel: float = 1e-8) -> BoundResult:
    """Certified lower bound on every policy's cost of ``days`` ``(D,)`` (module docstring).

    Deterministic (single-threaded Clarabel, fixed chunks). Builds and solves
    :data:`GROUP_BLOCKS` (day, agent) blocks at a time (whole days) to bound memory.
    ``tol_gap_rel``: the solver's relative gap tolerance; ``chunk_variables``: variables per
    solver call. Raises ``ValueError`` for an environment the formulation does not cover
    (:func:`check_supported`).
    """
    t0 = time.perf_counter()
    days = _numpy(torch.as_tensor(days, dtype=torch.long).reshape(-1))
    if not len(days):
        raise ValueError("copper_plate_bound: no days given")
    per_group = max(1, GROUP_BLOCKS // env.n_agents)
    day_cost, primal, statuses = [], 0.0, set()
    for group in np.array_split(days, -(-len(days) // per_group)):  # whole days at a time
        program = copper_plate_problem(env, group).program
        sol = solve(program, chunk_variables=chunk_variables, tol_gap_rel=tol_gap_rel)
        if "Infeasible" in sol.status:
            raise RuntimeError(f"copper_plate_bound: Clarabel reports {sol.status} on days "
                               f"{group.tolist()}; a supported environment's program is "
                               "feasible and bounded")
        day_cost.append(program.dual_bound(sol.z_eq, sol.z_in))
        if not np.isfinite(day_cost[-1]).all():
            raise RuntimeError(f"copper_plate_bound: Clarabel ({sol.status}) returned non-finite "
                               f"multipliers on days {group.tolist()}")
        primal += sol.primal
        statuses.update(sol.status.split(","))
    day_cost = np.concatenate(day_cost)
    total = float(day_cost.sum())
    status = "Solved" if statuses <= {"Solved"} else ",".join(sorted(statuses))
    return BoundResult(day_cost, float(day_cost.mean()), f"clarabel {clarabel.__version__}",
                       status, (primal - total) / max(abs(total), 1.0), time.perf_counter() - t0)
