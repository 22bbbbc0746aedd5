"""The batched environment core: ``reset`` and ``step`` as functions of an explicit state.

Everything is a tensor over ``B`` parallel days (``num_envs``) and ``N`` agents, on any torch
device, and differentiable with respect to the actions (devices, costs, and the power flow through
its implicit gradient), so a whole day can be backpropagated. The PettingZoo, Gymnasium and other
adapters hold a state and call these functions; nothing on :class:`EnvParams` changes in a step.

Per step: each agent's action in ``[-1, 1]`` sets its device (battery charge/discharge, heat-pump
power, generator output); households add demand and PV; the agents' net powers (times
``households_per_agent``) are injected at their nodes (split-phase households: half on each of
their two legs, :func:`leg_power`) and the power flow gives voltages and line loadings; costs,
constraint terms and rewards follow (:mod:`.costs`). A day has ``T`` steps
(``T = 48`` at 30 min); the episode terminates after the last one.

Observations (per agent, ``(B, N, obs_dim)``, local only, see ``docs/env.md``):
``[sin(2πt/T), cos(2πt/T), price / 0.5, demand_kw / 3, pv_kw / 5, (t_out - 10) / 10,
device_state]`` (+ ``(v_prev - 1) / 0.05`` at the agent's own node, the mean of its legs for a
split-phase household, when ``observe_voltage``), where
``device_state`` is ``2 soc - 1`` for batteries, ``(t_in - t_low) / band * 2 - 1`` for heat pumps
and 0 for generators. The global state for centralised critics is :func:`global_state`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np
import torch

from .compiling import compile_own
from .costs import (
    Constraints,
    CostChannels,
    RewardConfig,
    constraints,
    energy_bill,
    leg_mean,
    reward,
    voltage_unbalance,
)
from .data import gather_agents
from .devices import HeatPumpExog, HouseholdExog, battery, generator, heat_pump, household
from .devices.common import out_of_range
from .powerflow import PowerFlow
from .powerflow.unrolled import UnrolledNetwork, unrolled_solve
from .scenarios import Scenario, ScenarioConfig, build_scenario
from .scenarios.placement import KINDS


@dataclass(frozen=True)
class EnvConfig:
    """Environment options on top of the scenario."""

    scenario: ScenarioConfig
    reward: RewardConfig = field(default_factory=RewardConfig)
    observe_voltage: bool = False
    """Add the agent's own node voltage of the previous step to its observation."""
    straight_through: bool = True
    """Clamps pass gradients straight through (``False``: plain clamps, zero gradient outside)."""
    split: str = "train"
    """Days ``reset`` draws from when none are given: ``train``, ``validation`` or ``test``."""
    pf_tol_pu: float = 1e-8
    """Power-flow tolerance: estimated largest port-voltage error, p.u. (the same number as
    OpenDSS's ``set tolerance``, whose default is 1e-4; ``PowerFlow``'s own default is 1e-10 in
    float64). Gradient checks against finite differences want it tighter (1e-12)."""
    compile: bool = False
    """Run the step's element-wise stages (devices and costs; constraints, rewards and
    observations) through ``torch.compile``, fusing ~100 small kernels into a few. Costs
    ~20-40 s of compilation on the first step (and again for a new batch size or grad mode) and
    needs a C++ compiler on the CPU; pays off for long rollouts (``docs/env.md``, benchmark)."""


class EnvState(NamedTuple):
    """Explicit state, batched over ``B`` days."""

    day: torch.Tensor  # (B,) long, index into the scenario's profiles
    t: torch.Tensor  # (B,) long, step within the day
    soc: torch.Tensor  # (B, N_battery)
    soc_init: torch.Tensor  # (B, N_battery), for the terminal penalty
    t_in_c: torch.Tensor  # (B, N_heatpump)
    v_pu: torch.Tensor  # (B, n_nodes) node voltages of the previous step (1 at reset), p.u.
    done: torch.Tensor  # (B,) bool
    exog: tuple  # the day's data, gathered at reset: demand_kw, pv_kw_per_kwp (B, T, N);
    #              (t_out_c, price, export_price) stacked as (B, T, 3)


class StepOut(NamedTuple):
    obs: torch.Tensor  # (B, N, obs_dim)
    reward: torch.Tensor  # (B, N)
    costs: CostChannels  # name -> (B, N) GBP: energy, degradation, fuel, discomfort, terminal
    constraints: Constraints
    terminated: torch.Tensor  # (B,) bool
    truncated: torch.Tensor  # (B,) bool (always False: days end by termination)
    info: dict  # converged, pf_iterations, pf_contraction, clipped_actions (B,); v_pu (B, n);
    #             line_loading (B, r); p_agent_kw, q_agent_kvar (B, N). pf_contraction: the
    #             power flow's observed contraction rate (PowerFlowResult.contraction; fused
    #             step: at its last unrolled iteration; NaN from a power flow that reports none)


@dataclass(frozen=True, eq=False)
class EnvParams:
    """Everything fixed for an environment (built once by :func:`make_env`)."""

    config: EnvConfig
    scenario: Scenario
    powerflow: PowerFlow
    agent_node: torch.Tensor  # (N,)
    kind_agents: dict  # kind -> (N_kind,) agent indices
    kind_slices: dict  # kind -> slice: the same agents, a contiguous block (scenario order)
    node_mask: torch.Tensor  # (n,) 1 at constrained (non-source) nodes
    bus_phases: torch.Tensor  # (n_3ph, 3)
    obs_dim: int
    agent_legs: torch.Tensor = None  # (N, L) node of each agent's legs (L = 1 or 2)
    leg_node: torch.Tensor = None  # (L N,) the legs' nodes, leg-major: the columns of leg_power
    agent_port: torch.Tensor = None  # (L N,) power-flow port of each leg_node
    unrolled: UnrolledNetwork | None = None  # the power flow's constants for the fused step
    compiled: dict = field(default_factory=dict, repr=False)  # stage name -> compiled function

    @property
    def n_agents(self) -> int:
        return len(self.agent_node)

    @property
    def n_steps(self) -> int:
        return self.scenario.profiles.n_steps

    @property
    def dt_h(self) -> float:
        return self.scenario.profiles.dt_minutes / 60.0


def make_env(config: EnvConfig, device="cpu", dtype=torch.float64,
                scenario: Scenario | None = None) -> EnvParams:
    """Build the environment once (``scenario``: a prebuilt one, else from ``config``)."""
    scn = build_scenario(config.scenario, dtype=dtype) if scenario is None else scenario
    scn = _to(scn, device)
    f = scn.feeder
    legs = torch.as_tensor(scn.placement.legs, device=device)
    leg_node = legs.T.reshape(-1)
    nodes = sorted(set(leg_node.tolist()))
    # households replace the feeder's own loads: the power flow has ports at agent nodes only
    pf = PowerFlow(f.without_loads(), device=device, dtype=dtype, injection_nodes=nodes,
                   on_nonconvergence="flag", tol=config.pf_tol_pu, compile=config.compile)
    mask = torch.ones(f.n_nodes, dtype=dtype, device=device)
    mask[torch.as_tensor(f.source_nodes, device=device)] = 0
    buses: dict[str, dict[str, int]] = {}
    for i, name in enumerate(f.nodes):
        bus, ph = name.rsplit(".", 1)
        buses.setdefault(bus, {})[ph] = i
    three = [[b["1"], b["2"], b["3"]] for b in buses.values() if {"1", "2", "3"} <= set(b)]
    return EnvParams(
        config=config, scenario=scn, powerflow=pf,
        agent_node=torch.as_tensor(scn.placement.node, device=device),
        kind_agents={k: scn.agents_of(k).to(device) for k in KINDS},
        kind_slices={k: scn.kind_slice(k) for k in KINDS},
        node_mask=mask, bus_phases=torch.as_tensor(np.array(three, dtype=np.int64).reshape(-1, 3),
                                                   device=device),
        obs_dim=7 + int(config.observe_voltage),
        agent_legs=legs, leg_node=leg_node,
        agent_port=pf.ports_of(leg_node), unrolled=pf.unrolled_network(),
    )


def leg_power(env: EnvParams, x: torch.Tensor) -> torch.Tensor:
    """Per-agent power ``(B, N)`` as the power of each leg ``(B, L N)``, the columns of
    ``env.leg_node``: each of an agent's ``L`` legs carries ``1/L`` of it (split-phase
    households: half on each 120 V leg). ``L = 1`` returns ``x`` itself."""
    n_legs = env.agent_legs.shape[1]
    return x if n_legs == 1 else torch.cat([x / n_legs] * n_legs, dim=-1)


def agent_voltage(env: EnvParams, v_pu: torch.Tensor) -> torch.Tensor:
    """Each agent's voltage ``(..., N)`` from node voltages ``(..., n_nodes)``: its node's, or
    the mean of its legs' (split-phase), p.u."""
    return leg_mean(v_pu, env.agent_legs)


def _to(scn: Scenario, device) -> Scenario:
    def move(nt):
        return type(nt)(*(x.to(device) if isinstance(x, torch.Tensor) else x for x in nt))

    return dataclasses.replace(
        scn, household=move(scn.household), battery=move(scn.battery),
        heat_pump=move(scn.heat_pump), generator=move(scn.generator),
        profiles=scn.profiles.to(device))


def reset(env: EnvParams, batch: int, *, seed: int | None = None,
          days: torch.Tensor | None = None) -> tuple[EnvState, torch.Tensor]:
    """Start ``batch`` days (drawn from the configured split by ``seed``, or ``days``)."""
    dev = env.agent_node.device
    scn = env.scenario
    if days is None:
        pool = getattr(scn.split, env.config.split)
        g = torch.Generator().manual_seed(0 if seed is None else int(seed))
        days = pool[torch.randint(len(pool), (batch,), generator=g)]
    days = torch.as_tensor(days, dtype=torch.long, device=dev).reshape(-1)
    if len(days) != batch:
        raise ValueError(f"got {len(days)} days for batch {batch}")
    if bool(((days < 0) | (days >= scn.profiles.n_days)).any()):
        raise ValueError(f"day index out of range [0, {scn.profiles.n_days})")
    soc = battery.init_state(scn.battery, batch).soc
    dtype = soc.dtype
    demand, pv = gather_agents(scn.profiles, scn.assignment, days)
    prof = scn.profiles
    series = torch.stack([prof.temp_out_c[days], prof.price_gbp_per_kwh[days],
                          prof.export_price_gbp_per_kwh[days]], dim=-1)
    exog = (demand.contiguous(), pv.contiguous(), series)
    state = EnvState(
        day=days, t=torch.zeros(batch, dtype=torch.long, device=dev), soc=soc, soc_init=soc.clone(),
        t_in_c=heat_pump.init_state(scn.heat_pump, batch).t_in_c,
        v_pu=torch.ones(batch, env.scenario.feeder.n_nodes, dtype=dtype, device=dev),
        done=torch.zeros(batch, dtype=torch.bool, device=dev), exog=exog)
    return state, observe(env, state)


def exogenous(env: EnvParams, state: EnvState):
    """Per-agent demand, PV per kWp ``(B, N)`` and outdoor temperature, prices ``(B, 1)`` at
    each day's current step."""
    demand, pv, series = state.exog
    b, n_t = demand.shape[:2]
    t = state.t.clamp(max=env.n_steps - 1)  # after the last step: the last slot
    row = torch.arange(b, device=t.device) * n_t + t  # (B,) rows of the (B * T, .) flattening
    d = demand.reshape(b * n_t, -1).index_select(0, row)
    p = pv.reshape(b * n_t, -1).index_select(0, row)
    s = series.reshape(b * n_t, 3).index_select(0, row)
    return d, p, s[:, 0:1], s[:, 1:2], s[:, 2:3]


def observe(env: EnvParams, state: EnvState) -> torch.Tensor:
    """Local observations ``(B, N, obs_dim)`` (see module docstring), stored feature-major.

    The tensor is a ``(B, N, obs_dim)`` view of ``(B, obs_dim, N)`` memory: every feature is
    one contiguous row over the agents, so each is written with whole vector stores (an
    agent-major layout makes the compiled step write seven interleaved columns element by
    element, a quarter of its time). Indexing, arithmetic and matmuls take any layout; call
    ``.contiguous()`` where agent-major memory is needed (``docs/env.md``, observations)."""
    scn = env.scenario
    demand, pv, t_out, price, _ = exogenous(env, state)
    hh, hp, sl = scn.household, scn.heat_pump, env.kind_slices
    b, n = demand.shape
    phase = 2 * torch.pi * state.t.to(demand.dtype)[:, None] / env.n_steps
    band = hp.t_high_c - hp.t_low_c
    n_gen = sl["generator"].stop - sl["generator"].start
    dev_state = torch.cat([2 * state.soc - 1, (state.t_in_c - hp.t_low_c) / band * 2 - 1,
                           demand.new_zeros(b, n_gen)], dim=1)  # kind blocks in agent order
    cols = [torch.sin(phase).expand(b, n), torch.cos(phase).expand(b, n),
            (price / 0.5).expand(b, n), demand * (hh.demand_scale / 3.0),
            pv * (torch.where(hh.has_pv, hh.pv_kwp, 0.0) / 5.0), ((t_out - 10) / 10).expand(b, n),
            dev_state]
    if env.config.observe_voltage:
        cols.append((agent_voltage(env, state.v_pu) - 1) / 0.05)
    return torch.stack(cols, dim=1).transpose(1, 2)


def global_state(env: EnvParams, state: EnvState) -> torch.Tensor:
    """State for centralised critics ``(B, N * obs_dim + N)``: every agent's observation and the
    previous step's voltage at every agent's node."""
    obs = observe(env, state)
    return torch.cat([obs.flatten(1), (agent_voltage(env, state.v_pu) - 1) / 0.05], dim=1)


def staged(env: EnvParams, fn):
    """``fn`` bound to ``env``, through ``torch.compile`` when ``config.compile`` is set
    (each environment its own compiled copy: :func:`.compiling.compile_own`)."""
    if env.config.compile and fn.__name__ not in env.compiled:
        env.compiled[fn.__name__] = compile_own(fn)
    return partial(env.compiled.get(fn.__name__, fn), env)


def step(env: EnvParams, state: EnvState, action: torch.Tensor) -> tuple[EnvState, StepOut]:
    """Advance every day by one step. ``action``: ``(B, N)`` in ``[-1, 1]`` (values outside are
    clamped and counted in ``info["clipped_actions"]``)."""
    if bool(state.done.any()):
        raise RuntimeError("step() called on a finished day; call reset() first")
    b, n = action.shape[0], env.n_agents
    if action.shape != (b, n):
        raise ValueError(f"action must have shape (B, {n}), got {tuple(action.shape)}")
    sl = env.kind_slices
    slices = {"degradation": sl["battery"], "terminal": sl["battery"], "fuel": sl["generator"],
              "discomfort": sl["heatpump"]}
    fallback_from = 0
    if env.config.compile and env.unrolled is not None and not torch.is_grad_enabled():
        n_iter = env.compiled.setdefault("unroll", env.powerflow.settings.unroll)
        new, out, finite, converged = staged(env, _fused_step)(state, action, n_iter)
        if not bool(finite):
            raise ValueError("action has NaN/inf entries")
        if bool(converged.all()):
            return new, out._replace(costs=CostChannels(out.costs, slices, n))
        # Some day needs more iterations: this step takes the regular path below (which
        # iterates on), and later steps unroll as many as it needed (one recompilation).
        fallback_from = n_iter
    dev = staged(env, device_step)(state, action)
    if not bool(dev.finite):  # finite: checked after the (pure) device stage, which computes it
        raise ValueError("action has NaN/inf entries")
    r = env.powerflow.solve(leg_power(env, torch.complex(dev.p_kw, dev.q_kvar)), load_scale=0.0,
                            at=env.leg_node, check=False)  # built here: no scan
    if fallback_from:
        env.compiled["unroll"] = min(max(fallback_from + 1, int(r.iterations.max())),
                                        MAX_UNROLL)
    new, out = _close_step(env, state, dev, staged(env, _outcome), r.v, r.v_pu,
                           r.line_loading, r.converged, (r.iterations, _contraction(r)))
    return new, out._replace(costs=CostChannels(out.costs, slices, n))


def _contraction(r) -> torch.Tensor:
    """``r.contraction`` ``(B,)``, or NaN from a power flow that reports none (the OpenDSS
    peer of :func:`gridedge_env.opendss.powerflow.opendss_stepped`)."""
    rate = getattr(r, "contraction", None)
    return torch.full(r.converged.shape, float("nan"), dtype=r.v_pu.dtype,
                      device=r.v_pu.device) if rate is None else rate


def _close_step(env, state, dev, outcome, v, v_pu, line_loading, converged, pf_record):
    """Everything after the power flow (next state, ``outcome``, unbalance report, info), shared
    by the staged and the fused step; ``dev`` is :func:`device_step`' output, ``v`` complex or
    interleaved real, ``pf_record`` the power flow's ``(iterations, contraction)``, ``(B,)``
    each; ``StepOut.costs`` the raw cost parts."""
    p_kw, q_kvar, parts, cost_agent, soc, t_in_c, last, clipped, _ = dev
    new = EnvState(day=state.day, t=state.t + 1, soc=soc, soc_init=state.soc_init, t_in_c=t_in_c,
                   v_pu=v_pu, done=last, exog=state.exog)
    cons, rew, obs = outcome(new, cost_agent, v_pu, line_loading, converged)
    cons = cons._replace(unbalance=voltage_unbalance(v, env.bus_phases))
    info = {"converged": converged, "pf_iterations": pf_record[0],
            "pf_contraction": pf_record[1], "clipped_actions": clipped, "v_pu": v_pu,
            "line_loading": line_loading, "p_agent_kw": p_kw, "q_agent_kvar": q_kvar}
    return new, StepOut(obs, rew, parts, cons, last, torch.zeros_like(last), info)


MAX_UNROLL = 12
"""Most fixed-point iterations the fused step unrolls (it starts at ``Settings.unroll``)."""


def _fused_step(env: EnvParams, state: EnvState, action: torch.Tensor, n_iter: int):
    """The whole step without gradients as one fixed-shape function (``compile=True``):
    devices, the power flow unrolled for ``n_iter`` iterations
    (:func:`~.powerflow.unrolled.unrolled_solve`), outcome. Returns the next state, the
    ``StepOut`` (costs as the raw parts), whether the actions are finite and which days' power
    flows converged; :func:`step` redoes the step on the regular path if any did not."""
    dev = device_step(env, state, action)
    p_kw, q_kvar = dev.p_kw, dev.q_kvar
    # the port count from a tensor: PowerFlow.n_ports is numpy-backed, a conversion per call
    b, m = action.shape[0], env.unrolled.inv_a.shape[0]
    # agents -> ports as scatter_reduce("sum"), which inductor hands to ATen's kernel on a
    # multi-threaded CPU; index_add compiles to atomic adds in extra passes (10 % of the step)
    port = env.agent_port.expand(b, -1)
    p_leg, q_leg = leg_power(env, p_kw), leg_power(env, q_kvar)
    s_va = torch.stack([p_kw.new_zeros(b, m).scatter_reduce(1, port, p_leg, "sum"),
                        q_kvar.new_zeros(b, m).scatter_reduce(1, port, q_leg, "sum")],
                       dim=-1) * 1e3
    sol = unrolled_solve(env.unrolled, s_va, n_iter, env.powerflow.settings.tol,
                         50 * torch.finfo(action.dtype).eps)
    new, out = _close_step(env, state, dev, partial(_outcome, env), sol.v, sol.v_pu,
                           sol.line_loading, sol.converged,
                           (torch.full_like(state.t, n_iter), sol.contraction))
    return new, out, dev.finite, sol.converged


def _block(x: torch.Tensor, sl: slice, n: int) -> torch.Tensor:
    """``(B, N_kind)`` values of one kind's block as ``(B, n)``, zero for the other agents."""
    return torch.nn.functional.pad(x, (sl.start, n - sl.stop))


class DeviceStep(NamedTuple):
    """Households, devices and costs of one step (:func:`device_step`)."""

    p_kw: torch.Tensor  # (B, N) each agent's injection, all its households, load convention
    q_kvar: torch.Tensor  # (B, N)
    cost_parts: dict  # channel -> energy (B, N), the others (B, N_kind) per kind block, GBP
    cost_agent: torch.Tensor  # (B, N) total cost per agent, GBP
    soc: torch.Tensor  # (B, N_battery) next state of charge
    t_in_c: torch.Tensor  # (B, N_heatpump) next indoor temperature, C
    last: torch.Tensor  # (B,) bool: this was the day's last step
    clipped: torch.Tensor  # (B,) actions outside [-1, 1]
    finite: torch.Tensor  # 0-d bool: every action was finite


def device_step(env: EnvParams, state: EnvState, action: torch.Tensor) -> DeviceStep:
    """Households, devices and costs of one step (element-wise; compiled with ``compile``)."""
    scn, dt, n = env.scenario, env.dt_h, env.n_agents
    st, sl = env.config.straight_through, env.kind_slices
    demand, pv, t_out, price, export = exogenous(env, state)
    p_home, q_home = household.power(scn.household, HouseholdExog(demand, pv))
    bat_state, (pb, _), c_b = battery.step(scn.battery, battery.BatteryState(state.soc),
                                           action[:, sl["battery"]], None, dt, straight_through=st)
    hp_state, (ph, qh), c_h = heat_pump.step(scn.heat_pump, heat_pump.HeatPumpState(state.t_in_c),
                                             action[:, sl["heatpump"]], HeatPumpExog(t_out), dt,
                                             straight_through=st)
    _, (pg, qg), c_g = generator.step(scn.generator, None, action[:, sl["generator"]], None, dt,
                                      straight_through=st)
    # Agents are numbered kind by kind (Scenario.kind_slice), so the devices' blocks concatenate.
    p = p_home + torch.cat([pb, ph, pg], dim=1)
    q = q_home + _block(torch.cat([qh, qg], dim=1), slice(sl["heatpump"].start, n), n)
    k = scn.config.households_per_agent
    last = state.t == env.n_steps - 1
    term = battery.terminal_cost(scn.battery, state.soc_init, bat_state.soc) * last[:, None]
    parts = {  # per agent (energy) or per kind block (the rest), GBP for all k households
        "energy": energy_bill(p, price, export, dt) * k,
        "degradation": c_b["degradation"] * k,
        "fuel": c_g["fuel"] * k,
        "discomfort": c_h["discomfort"] * k,
        "terminal": term * k,
    }
    total = parts["energy"] + torch.cat(
        [parts["degradation"] + parts["terminal"], parts["discomfort"], parts["fuel"]], dim=1)
    clipped = out_of_range(action).sum(-1)
    finite = torch.isfinite(action).all()
    return DeviceStep(p * k, q * k, parts, total, bat_state.soc, hp_state.t_in_c, last, clipped,
                      finite)


def _outcome(env: EnvParams, new: EnvState, cost_agent, v_pu, line_loading, converged):
    """Constraint terms (without the unbalance report), rewards and the next observations."""
    lim = env.scenario.config.limits
    cons = constraints(v_pu, line_loading, lim.v_min_pu, lim.v_max_pu, lim.line_loading_max,
                       env.node_mask)
    rew = reward(env.config.reward, cost_agent, cons, env.agent_legs, ~converged)
    return cons, rew, observe(env, new)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
