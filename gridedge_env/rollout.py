"""Whole days under a policy, differentiable: the environment gradient of GradMAP and GradMA.

:func:`rollout` runs ``B`` days of ``T`` steps with every agent acting through ``policy`` and
returns everything a primal-dual trainer needs: the observations the policy saw, its actions,
per-day costs, and the constraint terms of every (day, step). It is differentiable with respect
to the policy's parameters and, with ``perturb=True``, to a zero perturbation ``delta`` added to
every action, whose gradient ``dL/d delta`` is the *closed-loop action-space gradient* of any
loss ``L`` of the result (it includes what an action changes in later observations and so in
later actions).

Two paths give the same numbers and gradients (tested):

- **whole-day** (default without ``observe_voltage``): nothing in the device dynamics depends on
  voltages, so devices and policies are stepped over the day first and the power flow then
  solves all ``B x T`` (day, step) pairs in **one** batched call with one implicit backward;
- **stepwise** (``observe_voltage=True``, or ``path="stepwise"``): :func:`.core.step` per step,
  since each observation then needs the previous step's voltages.

Both report each (day, step)'s power-flow iterations and contraction rate (``pf_iterations``,
``pf_contraction``: per-scenario records of the same fixed point, so the paths agree), except
that the stepwise path on a compiled environment (``EnvConfig.compile``, no gradient) takes the
fused step, which reports the iterations it unrolled and the rate at its last one.

Shapes: ``B`` days, ``T`` steps, ``N`` agents, ``n`` nodes, ``r`` line phases, ``F`` features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from .core import (
    EnvParams,
    EnvState,
    device_step,
    exogenous,
    leg_power,
    observe,
    reset,
    staged,
    step,
)
from .costs import Constraints, constraints, voltage_unbalance
from .devices.heat_pump import thermostat_kw

Policy = Callable[[torch.Tensor, int, EnvState], torch.Tensor]
"""``policy(obs (B, N, F), t, state) -> actions (B, N)`` in ``[-1, 1]``. A decentralised policy
reads only its agent's row of ``obs``; ``state`` is there for references that are not
policies of local observations (no control's thermostat, a centralised oracle). A policy with a
``bind()`` method is bound once per rollout and the callable it returns acts at every step
(parameters that are fixed over the rollout are then prepared once, not at each step)."""


def no_control(env: EnvParams) -> Policy:
    """No control, the reference every controller must beat, as a rollout policy: batteries idle
    (0), generators off (-1), heat pumps on a thermostat (``2 p / p_max - 1`` with ``p`` the
    electric power that brings the indoor temperature to the lower comfort limit + 0.5 K by the
    end of the step, within ``[0, p_max]``: :func:`gridedge_env.devices.heat_pump.thermostat_kw`).
    """
    hp, sl = env.scenario.heat_pump, env.kind_slices

    def act(obs, t, state):
        p = thermostat_kw(hp, state.t_in_c, exogenous(env, state)[2], env.dt_h)
        a = torch.zeros(len(state.day), env.n_agents, dtype=p.dtype, device=p.device)
        a[:, sl["generator"]] = -1.0
        a[:, sl["heatpump"]] = 2 * p / hp.p_max_kw - 1
        return a

    return act


class DayRollout(NamedTuple):
    """``B`` whole days under a policy (see the module docstring for the shapes)."""

    obs: torch.Tensor  # (B, T, N, F) what each agent observed before acting, detached (stored
    #                    feature-major like the core's observations: a view of (B, T, F, N))
    actions: torch.Tensor  # (B, T, N) the policy's outputs a0 (before ``delta``), detached
    delta: torch.Tensor | None  # (B, T, N) the zero perturbation leaf (``perturb=True``)
    cost: torch.Tensor  # (B,) GBP per day, all agents and cost channels
    cost_parts: dict  # channel -> (B,) GBP per day
    cost_agent: torch.Tensor  # (B, N) GBP per day and agent
    constraints: Constraints  # v_over_pu, v_under_pu (B, T, n), line_over (B, T, r); unbalance (B, T, n_3ph)
    #                         the voltage unbalance factor of the three-phase buses, detached
    v_pu: torch.Tensor  # (B, T, n)
    line_loading: torch.Tensor  # (B, T, r)
    converged: torch.Tensor  # (B, T) bool
    p_agent_kw: torch.Tensor  # (B, T, N) each agent's net power (all its households), kW
    clipped_actions: torch.Tensor  # (B,) actions outside [-1, 1] over the day
    pf_iterations: torch.Tensor  # (B, T) long, the power flow's iterations (fixed point + Newton;
    #                              the fused compiled step: the iterations it unrolled), detached
    pf_contraction: torch.Tensor  # (B, T) the power flow's observed contraction rate, 1
    #                               (PowerFlowResult.contraction: last step / the one before, at
    #                               the recorded iteration; the fused step: at its last unrolled
    #                               iteration; NaN where no ratio exists or the power flow reports
    #                               none, e.g. the OpenDSS peer), detached
    q_agent_kvar: torch.Tensor  # (B, T, N) each agent's reactive power (all households), kvar,
    #                             load convention, detached

    def detached(self) -> DayRollout:
        """The same numbers without autograd history (``delta`` dropped)."""
        def cut(x):
            if isinstance(x, torch.Tensor):
                return x.detach()
            if isinstance(x, dict):
                return {k: cut(v) for k, v in x.items()}
            return type(x)(*(cut(v) for v in x)) if isinstance(x, tuple) else x

        return DayRollout(*(cut(f) for f in self._replace(delta=None)))


def rollout(env: EnvParams, days: torch.Tensor, policy: Policy, *, perturb: bool = False,
            path: str = "auto", recompute: bool = False) -> DayRollout:
    """Run ``days`` ``(B,)`` (indices into the scenario's profiles) under ``policy``.

    ``path``: ``"auto"`` (whole-day unless ``observe_voltage``), ``"whole_day"`` or
    ``"stepwise"``. Gradients flow to whatever ``policy`` closes over and, with ``perturb``,
    to ``DayRollout.delta``. Under ``torch.no_grad`` it is a plain evaluation.

    ``recompute`` (whole-day path): keep only each step's input state for the backward and
    run that step's observations, policies and devices again during it
    (``torch.utils.checkpoint``), instead of keeping every intermediate tensor of the 48 steps:
    the same numbers and gradients for less memory and one more forward of observations, policies and devices
    (``docs/gradmap.md``, peak memory).
    """
    if path not in ("auto", "whole_day", "stepwise"):
        raise ValueError(f"path must be 'auto', 'whole_day' or 'stepwise', got {path!r}")
    if path == "auto":
        path = "stepwise" if env.config.observe_voltage else "whole_day"
    if path == "whole_day" and env.config.observe_voltage:
        raise ValueError("observe_voltage=True needs each step's voltages: use path='stepwise'")
    if recompute and path != "whole_day":
        raise ValueError("recompute=True applies to the whole-day path (the stepwise path would "
                         "solve each step's power flow again in the backward)")
    days = torch.as_tensor(days, dtype=torch.long, device=env.agent_node.device).reshape(-1)
    b, n_t, n = len(days), env.n_steps, env.n_agents
    state, obs = reset(env, b, days=days)
    dtype = state.soc.dtype
    delta = None
    if perturb:
        delta = torch.zeros(b, n_t, n, dtype=dtype, device=days.device, requires_grad=True)
    if hasattr(policy, "bind"):
        policy = policy.bind()
    # per-step views by one unbind: its backward stacks the T step gradients in one op (slicing
    # delta[:, t] would zero-fill and accumulate a full (B, T, N) gradient at every step)
    deltas = None if delta is None else delta.unbind(1)
    if path == "whole_day":
        out = _whole_day(env, state, obs, policy, deltas, recompute and torch.is_grad_enabled())
    else:
        out = _stepwise(env, state, obs, policy, deltas)
    return out._replace(delta=delta)


def _act(policy, obs, t, deltas, state):
    a0 = policy(obs, t, state)
    return a0, (a0 if deltas is None else a0 + deltas[t])


def _day_step(env: EnvParams, state, action):
    """Devices and costs of one step and the next observations: the whole-day path's step
    without the power flow (one compiled graph with ``compile=True``)."""
    dev = device_step(env, state, action)
    new = state._replace(t=state.t + 1, soc=dev.soc, t_in_c=dev.t_in_c, done=dev.last)
    return dev, new, observe(env, new)


def _whole_day(env: EnvParams, state, obs, policy, deltas, recompute: bool) -> DayRollout:
    day_step = staged(env, _day_step)

    def act_step(state, obs, t):  # policies and devices of step t
        a0, a = _act(policy, obs, t, deltas, state)
        return (a0, *day_step(state, a))

    def act_step_from_state(state, t):  # the same, observing inside: the backward keeps the
        obs = observe(env, state)       # state (B, N) and recomputes the observations (B, N, F)
        a0, dev, new, _ = act_step(state, obs, t)
        return obs.detach(), a0, dev, new

    b, n_t = len(state.day), env.n_steps
    # one (B, T, F, N) buffer filled step by step: no second copy of every observation at the end
    obs_all = obs.new_empty(b, n_t, obs.shape[2], obs.shape[1])
    a0_all, p, q, total, clipped = [], [], [], [], 0
    parts: dict = {}
    for t in range(n_t):  # time is sequential (SoC, indoor temperature); days, agents batched
        if recompute:  # non-reentrant: the policy's parameters and delta[t] reached by closure
            obs, a0, dev, state = checkpoint(act_step_from_state, state, t, use_reentrant=False)
            next_obs = None
        else:
            a0, dev, state, next_obs = act_step(state, obs, t)
        obs_all[:, t].copy_(obs.detach().transpose(1, 2))  # (B, F, N): the memory order
        obs = next_obs
        a0_all.append(a0.detach())
        if not bool(dev.finite):
            raise ValueError(f"policy returned NaN/inf actions at step {t}")
        p.append(dev.p_kw)
        q.append(dev.q_kvar)
        for k, v in dev.cost_parts.items():
            parts[k] = parts.get(k, 0) + v.sum(-1)
        total.append(dev.cost_agent)
        clipped = clipped + dev.clipped
    p_kw, q_kvar = torch.stack(p, 1), torch.stack(q, 1)  # (B, T, N)
    s = torch.complex(p_kw, q_kvar).reshape(b * n_t, -1)
    r = env.powerflow.solve(leg_power(env, s), load_scale=0.0, at=env.leg_node, check=False)
    lim = env.scenario.config.limits
    cons = constraints(r.v_pu, r.line_loading, lim.v_min_pu, lim.v_max_pu,
                       lim.line_loading_max, env.node_mask)

    def days_steps(x):
        return x.reshape(b, n_t, *x.shape[1:])

    with torch.no_grad():  # a report, not a constraint term: no gradient flows through it
        unbalance = days_steps(voltage_unbalance(r.v.detach(), env.bus_phases))
    cons = Constraints(days_steps(cons.v_over_pu), days_steps(cons.v_under_pu),
                       days_steps(cons.line_over), unbalance)
    cost_agent = torch.stack(total, 1).sum(1)
    return DayRollout(
        obs=obs_all.transpose(2, 3), actions=torch.stack(a0_all, 1), delta=None,
        cost=cost_agent.sum(-1), cost_parts=parts, cost_agent=cost_agent, constraints=cons,
        v_pu=days_steps(r.v_pu), line_loading=days_steps(r.line_loading),
        converged=days_steps(r.converged), p_agent_kw=p_kw,
        clipped_actions=clipped, pf_iterations=days_steps(r.iterations),
        pf_contraction=days_steps(r.contraction), q_agent_kvar=q_kvar.detach())


def _stepwise(env: EnvParams, state, obs, policy, deltas) -> DayRollout:
    obs_all, a0_all, outs = [], [], []
    for t in range(env.n_steps):
        a0, a = _act(policy, obs, t, deltas, state)
        obs_all.append(obs.detach())
        a0_all.append(a0.detach())
        state, out = step(env, state, a)
        outs.append(out)
        obs = out.obs

    def stack(get):
        return torch.stack([get(o) for o in outs], 1)

    cost_agent = sum(sum(o.costs[k] for k in o.costs) for o in outs)
    parts = {k: sum(o.costs.blocks[k][0].sum(-1) for o in outs) for k in outs[0].costs}
    cons = Constraints(stack(lambda o: o.constraints.v_over_pu),
                       stack(lambda o: o.constraints.v_under_pu),
                       stack(lambda o: o.constraints.line_over), stack(lambda o: o.constraints.unbalance))
    return DayRollout(
        obs=torch.stack(obs_all, 1), actions=torch.stack(a0_all, 1), delta=None,
        cost=cost_agent.sum(-1), cost_parts=parts, cost_agent=cost_agent, constraints=cons,
        v_pu=stack(lambda o: o.info["v_pu"]), line_loading=stack(lambda o: o.info["line_loading"]),
        converged=stack(lambda o: o.info["converged"]),
        p_agent_kw=stack(lambda o: o.info["p_agent_kw"]),
        clipped_actions=sum(o.info["clipped_actions"] for o in outs),
        pf_iterations=stack(lambda o: o.info["pf_iterations"]),
        pf_contraction=stack(lambda o: o.info["pf_contraction"]),
        q_agent_kvar=stack(lambda o: o.info["q_agent_kvar"].detach()))


def concat(rolls: list[DayRollout]) -> DayRollout:
    """Rollouts of different days as one, days concatenated (per-day sums and 0-d values kept
    from the first)."""
    def cat(xs):
        x = xs[0]
        if isinstance(x, torch.Tensor):
            return torch.cat(xs, 0) if x.ndim else x
        if isinstance(x, dict):
            return {k: cat([r[k] for r in xs]) for k in x}
        if isinstance(x, tuple):
            return type(x)(*(cat([r[i] for r in xs]) for i in range(len(x))))
        return x

    return DayRollout(*(cat([r[i] for r in rolls]) for i in range(len(rolls[0]))))
