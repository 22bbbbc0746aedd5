"""MAPPO and IPPO for continuous actions on the batched core (Yu et al. 2022, "The Surprising
Effectiveness of PPO in Cooperative Multi-Agent Games"; Schulman et al. 2017).

Each iteration rolls the stochastic policies over ``B`` training days without gradients
(``core.step``, which takes the fused compiled step when the environment is built with
``compile=True``), then takes ``epochs x minibatches`` steps on the clipped PPO objective

    L_actor = -mean min(r A, clip(r, 1 - eps, 1 + eps) A) - c_ent H,   r = pi(a|o) / pi_old(a|o)
    L_critic = mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)

with GAE(gamma, lambda) advantages (:func:`gae`, TorchRL's ``vec_generalized_advantage_estimate``;
a day is an episode, terminal at its last step), normalised per agent, and value targets
normalised by running statistics (Yu et al.'s value normalisation). **IPPO**: each agent's
critic sees its own observation (stacked independent critics). **MAPPO**: one centralised
critic of the global state (every agent's observation and last voltage,
``core.global_state``) with one value head per agent.

Actors are Gaussian, ``a ~ N(mu_theta(o), sigma^2)``, with ``mu_theta`` the same stacked
independent policies as GradMAP (:class:`gradmap_agents.policy.StackedPolicy`, so evaluation
and export are shared; ``shared_actor=True``: one network for every agent) and a learned
``log sigma`` per agent. Samples go to the environment unclipped; it clamps them to ``[-1, 1]``
and counts the clamped ones. The deterministic policy ``mu_theta`` is what is evaluated.

**The same start as GradMAP.** Observation normalisation (actors, critics and the central
critic's global state) comes from no-control rollouts of the training days
:func:`gradmap_agents.train.normalisation_days` draws, and every actor starts at the no-control
actions (``StackedPolicy.fit_output``), exactly as :func:`gradmap_agents.train.init_state`
does for GradMAP and GradMA.

**Rewards and multipliers.** Agent ``i`` at step ``t`` gets ``r_it = -(c_it + P_t / N)``: its
own cost plus an equal share of the network term ``P_t = sum_k mu_tk g_tk`` over every node and
line phase, so the agents' rewards sum to minus the Lagrangian GradMAP minimises. ``g`` and
``mu`` follow the training configuration's :class:`gradmap_agents.config.DualConfig`, as for
GradMAP: the constraint terms of :func:`gradmap_agents.dual.tightened` (its margins and
``scheme``), the initial multipliers and granularity of :func:`~gradmap_agents.dual.init_duals`,
and one projected :func:`~gradmap_agents.dual.dual_ascent` step per iteration (none when
``fixed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from gradmap_agents.config import DualConfig
from gradmap_agents.dual import Duals, dual_ascent, init_duals, penalty, tightened
from gradmap_agents.evaluate import evaluate, metrics
from gradmap_agents.policy import (
    INITIAL_ACTION_BOUND,
    OUTPUT_RIDGE,
    StackedMLP,
    StackedPolicy,
    kind_groups,
    observation_stats,
    pre_activation,
    ridge_fit,
)
from gradmap_agents.train import TRAIN_METRICS, check_finite, counters, normalisation_days
from gridedge_env.config import check_fields
from gridedge_env.core import agent_voltage, global_state, make_env, reset, step
from gridedge_env.costs import Constraints
from gridedge_env.rollout import DayRollout, no_control

ROLLOUTS = ("eager", "compiled", "compiled_fp32")


@dataclass(frozen=True)
class PPOConfig:
    variant: str = "ippo"
    """``"ippo"`` (local critics) or ``"mappo"`` (centralised critic)."""
    shared_actor: bool = False
    """One actor network for every agent (parameter sharing) instead of independent ones."""
    iterations: int = 100
    """Rollout-and-update iterations (a cap: a wall-time budget, ``should_stop``, may end the
    run first; nothing else depends on it)."""
    days_per_rollout: int = 32
    """Training days rolled out per iteration (``B``)."""
    epochs: int = 5
    minibatches: int = 4
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    """Discount per half-hour step: 0.99 (Yu et al.'s) or 1.0, the undiscounted day GradMAP
    minimises (its battery terminal term comes with the last step; no bootstrap past it)."""
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    init_log_std: float = -1.0
    hidden: tuple[int, ...] = (16,)
    critic_hidden: tuple[int, ...] = (64,)
    eval_every: int = 10
    seed: int = 0
    rollout: str = "eager"
    """How rollouts step the environment: ``"eager"`` (the environment as given),
    ``"compiled"`` (the fused compiled step of a ``compile=True`` copy of it, same dtype) or
    ``"compiled_fp32"`` (the same in float32). Validation and evaluation always use the
    environment as given. Measured in ``docs/baselines.md``: 1.2-3x faster rollouts after a
    20-40 s compilation, so ``"eager"`` for short budgets."""

    def __post_init__(self):
        if self.variant not in ("ippo", "mappo"):
            raise ValueError(f"ppo: variant must be 'ippo' or 'mappo', got {self.variant!r}")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"ppo: rollout must be one of {', '.join(ROLLOUTS)}, got "
                             f"{self.rollout!r}")
        check_fields(self, "ppo: ", at_least_one=(
            "iterations", "days_per_rollout", "epochs", "minibatches", "eval_every"),
            positive=("actor_lr", "critic_lr", "clip", "value_clip", "max_grad_norm"))
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError(f"ppo: need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got "
                             f"gamma={self.gamma}, gae_lambda={self.gae_lambda}")


class SharedPolicy(torch.nn.Module):
    """One network for every agent (parameter sharing), with the interface of
    :class:`StackedPolicy`: ``(..., N, F) -> (..., N)``; ``agent(i)`` is the shared network.

    The output is ``tanh(y(o) + c_i)``: ``c_i`` is a fixed (untrained) per-agent offset that
    :meth:`fit_output` sets with the shared output layer, so that the shared network starts
    every agent near its own no-control action as the independent policies do (a generator
    off, a battery idle: the observations alone do not tell the kinds apart). ``agent(i)``
    folds ``c_i`` into the output bias."""

    def __init__(self, n_agents: int, obs_dim: int, hidden, *, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.net = StackedMLP(1, obs_dim, tuple(hidden), 1, generator=g, dtype=torch.float32,
                              squash=False)
        self.register_buffer("out_offset", torch.zeros(n_agents, dtype=torch.float32))
        self.n_agents, self.obs_dim, self.dtype = n_agents, obs_dim, torch.float32

    def forward(self, obs, t=None, state=None):
        x = obs.to(self.dtype).reshape(1, -1, self.obs_dim)
        y = self.net.forward_agent_major(x)[0, :, 0].reshape(obs.shape[:-1])
        return torch.tanh(y + self.out_offset).to(obs.dtype)

    def set_normalisation(self, mean, std):  # one normalisation for all agents
        self.net.obs_mean.copy_(mean.mean(0, keepdim=True))
        self.net.obs_std.copy_(std.mean(0, keepdim=True))

    @torch.no_grad()
    def fit_output(self, obs: torch.Tensor, actions: torch.Tensor,
                   bound: float = INITIAL_ACTION_BOUND, ridge: float = OUTPUT_RIDGE) -> None:
        """:meth:`StackedPolicy.fit_output` with one output layer for all agents and an
        intercept per agent: the shared weights are the ridge fit of the pre-activation targets
        on the features, both centred per agent; ``c_i`` makes each agent's mean fit exact.
        ``obs`` ``(..., N, F)``, ``actions`` ``(..., N)``."""
        n = self.n_agents
        h = self.net.features(obs.reshape(1, -1, self.obs_dim)).reshape(-1, n, self.net.sizes[-2])
        z = pre_activation(actions.detach(), bound).reshape(-1, n)  # (S, N)
        h_mean, z_mean = h.mean(0), z.mean(0)  # (N, H), (N,)
        w, _ = ridge_fit((h - h_mean).reshape(1, -1, h.shape[-1]), (z - z_mean).reshape(1, -1), ridge)
        w_out, b_out = self.net.layers()[-1]
        w_out.copy_(w.to(w_out))
        self.out_offset.copy_((z_mean - h_mean.double() @ w[0, :, 0] - b_out.reshape(())).float())

    def agent(self, i: int) -> dict:
        out = {k: v[0].detach().clone() for k, v in self.net.named_parameters()}
        last = f"b{self.net.n_layers - 1}"
        out[last] = out[last] + self.out_offset[i]
        out.update(obs_mean=self.net.obs_mean[0].clone(), obs_std=self.net.obs_std[0].clone())
        return out


class ValueNorm(torch.nn.Module):
    """Running mean and variance of value targets per agent (debiased exponential averages,
    ``beta``), to normalise the critic's targets and denormalise its outputs."""

    def __init__(self, n: int, beta: float = 0.99999):
        super().__init__()
        self.beta = beta
        for k in ("mean", "mean_sq", "debias"):
            self.register_buffer(k, torch.zeros(n, dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:  # x (..., n)
        x = x.reshape(-1, x.shape[-1]).double()
        self.mean.mul_(self.beta).add_((1 - self.beta) * x.mean(0))
        self.mean_sq.mul_(self.beta).add_((1 - self.beta) * (x * x).mean(0))
        self.debias.mul_(self.beta).add_(1 - self.beta)

    def stats(self):
        mean = self.mean / self.debias.clamp_min(1e-5)
        var = (self.mean_sq / self.debias.clamp_min(1e-5) - mean ** 2).clamp_min(1e-4)
        return mean, var.sqrt()

    def normalise(self, x):
        mean, std = self.stats()
        return ((x - mean) / std).to(x.dtype)

    def denormalise(self, x):
        mean, std = self.stats()
        return (x * std + mean).to(x.dtype)


class CentralCritic(torch.nn.Module):
    """MAPPO's critic: an MLP of the normalised global state ``(..., G)`` -> values ``(..., N)``."""

    def __init__(self, in_dim: int, n_agents: int, hidden, mean, std):
        super().__init__()
        layers, d = [], in_dim
        for h in hidden:
            layers += [torch.nn.Linear(d, h), torch.nn.Tanh()]
            d = h
        self.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(d, n_agents))
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, g):
        return self.mlp((g.float() - self.mean) / self.std)


@dataclass
class PPOState:
    """Everything a run needs to continue (saved whole by :mod:`.ppo_checkpoint`), with the
    budget counters every method reports (:func:`gradmap_agents.train.counters`)."""

    actor: torch.nn.Module
    log_std: torch.nn.Parameter
    critic: torch.nn.Module
    value_norm: ValueNorm
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    duals: Duals
    generator: torch.Generator
    iteration: int = 0
    env_gradients: int = 0  # always 0: PPO differentiates no environment
    train_seconds: float = 0.0  # wall seconds of the training iterations (validation excluded)
    cpu_seconds: float = 0.0  # process CPU seconds of the same iterations (all threads)
    day_steps: int = 0  # simulated day-steps (days x steps) of the training rollouts
    history: list = field(default_factory=list)  # one dict per validation point
    no_control_val: dict = field(default_factory=dict)
    rollout_env: object = None  # the environment rollouts step (None: the given one)


def make_actor(env, cfg: PPOConfig) -> torch.nn.Module:
    """The deterministic actors, freshly initialised from ``cfg.seed`` (normalisation and
    initial actions not yet set): stacked independent policies, or one shared network with
    ``cfg.shared_actor``."""
    n, f = env.n_agents, env.obs_dim
    return (SharedPolicy(n, f, cfg.hidden, seed=cfg.seed) if cfg.shared_actor else
            StackedPolicy(n, f, kind_groups(env.kind_slices, tuple(cfg.hidden)), seed=cfg.seed))


def init_ppo(env, cfg: PPOConfig, dual: DualConfig) -> PPOState:
    """Actors, critics, optimisers and the multipliers of ``dual``; normalisation and initial
    actions from the no-control rollouts of :func:`gradmap_agents.train.normalisation_days`."""
    torch.manual_seed(cfg.seed)
    actor = make_actor(env, cfg)
    _, roll = evaluate(env, no_control(env), normalisation_days(env, cfg.seed))
    mean, std = observation_stats(roll.obs)
    actor.set_normalisation(mean, std)
    actor.fit_output(roll.obs, roll.actions)
    critic = _make_critic(env, cfg, roll, mean, std)
    log_std = torch.nn.Parameter(torch.full((env.n_agents,), cfg.init_log_std, dtype=torch.float32))
    d = init_duals(env, dual.granularity, dual.init_voltage_gbp_per_pu, dual.init_line_gbp)
    nc_val, _ = evaluate(env, no_control(env), env.scenario.split.validation)
    return PPOState(actor, log_std, critic, ValueNorm(env.n_agents),
                    torch.optim.Adam([*actor.parameters(), log_std], lr=cfg.actor_lr),
                    torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr), d,
                    torch.Generator().manual_seed(cfg.seed + 1), no_control_val=nc_val)


def _make_critic(env, cfg: PPOConfig, roll: DayRollout, mean, std) -> torch.nn.Module:
    """IPPO's stacked critics (the actors' normalisation) or MAPPO's central critic (the
    normalisation of the global states of the same no-control days, :func:`global_state_stats`)."""
    n, f = env.n_agents, env.obs_dim
    if cfg.variant == "ippo":
        g = torch.Generator().manual_seed(cfg.seed + 7)
        critic = StackedMLP(n, f, cfg.critic_hidden, 1, generator=g, dtype=torch.float32,
                            out_scale=1.0, squash=False)
        critic.obs_mean.copy_(mean)
        critic.obs_std.copy_(std)
        return critic
    gs_mean, gs_std = global_state_stats(env, roll)
    return CentralCritic(len(gs_mean), n, cfg.critic_hidden, gs_mean, gs_std)


def global_state_stats(env, roll: DayRollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std ``(G,)`` of :func:`gridedge_env.core.global_state` over every (day, step)
    of ``roll``: every agent's observation (as :func:`observation_stats` gives them) and the
    previous step's voltage at every agent's node (1 p.u. before the first step), without
    forming the ``(B T, G)`` states."""
    v_prev = torch.cat([torch.ones_like(roll.v_pu[:, :1]), roll.v_pu[:, :-1]], 1)
    v_mean, v_std = observation_stats(((agent_voltage(env, v_prev) - 1) / 0.05)[..., None])
    o_mean, o_std = observation_stats(roll.obs)
    return torch.cat([o_mean.flatten(), v_mean[:, 0]]), torch.cat([o_std.flatten(), v_std[:, 0]])


def _step_duals(duals: Duals, t: int) -> Duals:
    """The multipliers of step ``t`` ``(1, n|1)`` (one row per step, or one for the day)."""
    return Duals(*(mu[t:t + 1] if mu.shape[0] > 1 else mu for mu in duals))


@torch.no_grad()
def collect(env, cfg: PPOConfig, dual: DualConfig, s: PPOState, days) -> dict:
    """One batch of ``B`` whole days under the stochastic policies: ``(B, T, N)`` actions,
    log-probabilities, rewards, values; observations ``(B, T, N, F)``; global states ``(B, T,
    G)`` (MAPPO); the constraint terms the multipliers weigh (``cons``, ``(B, T, n|r)``) and
    the days as a :class:`~gridedge_env.rollout.DayRollout` (``roll``, for the metrics)."""
    state, obs = reset(env, len(days), days=days)
    dtype = obs.dtype  # the environment's: float64, or float32 (the fused compiled step)
    std, log_std = s.log_std.exp().to(dtype), s.log_std.to(dtype)
    duals = Duals(*(d.to(dtype) for d in s.duals))
    rec = {k: [] for k in ("obs", "gs", "act", "logp", "rew", "val", "cons", "out")}
    for t in range(env.n_steps):
        mu = s.actor(obs)
        a = mu + std * torch.randn(mu.shape, generator=s.generator, dtype=mu.dtype)
        gs = global_state(env, state) if cfg.variant == "mappo" else None
        rec["val"].append(_values(cfg, s, obs, gs))
        for k, v in (("obs", obs), ("gs", gs), ("act", a), ("logp", _log_prob(a, mu, log_std))):
            rec[k].append(v)
        state, out = step(env, state, a)
        cons = tightened(env, out.info["v_pu"][:, None], out.info["line_loading"][:, None],
                         dual.margin_pu, dual.line_margin, scheme=dual.scheme)  # (B, 1, n|r)
        net = penalty(_step_duals(duals, t), cons)  # (B,) GBP, the step's network term
        own = sum(out.costs[k] for k in out.costs)  # (B, N) GBP
        rec["rew"].append(-(own + net[:, None] / env.n_agents))
        rec["cons"].append(cons)
        rec["out"].append(out)
        obs = out.obs
    batch = {k: (torch.stack(rec[k], 1) if rec[k][0] is not None else None)
             for k in ("obs", "gs", "act", "logp", "rew", "val")}
    batch["cons"] = Constraints(*(torch.cat([c[i] for c in rec["cons"]], 1) for i in range(3)),
                                None)
    batch["roll"] = _day_rollout(batch["obs"], batch["act"], rec["out"])
    return batch


def _day_rollout(obs, actions, outs) -> DayRollout:
    """The recorded steps as a :class:`~gridedge_env.rollout.DayRollout` (what
    ``gridedge_env.rollout``'s stepwise path assembles from the same step outputs), so the
    training rollouts get GradMAP's metrics (:func:`gradmap_agents.evaluate.metrics`)."""
    def stack(get):
        return torch.stack([get(o) for o in outs], 1)

    cost_agent = sum(sum(o.costs[k] for k in o.costs) for o in outs)
    info = {k: stack(lambda o, k=k: o.info[k]) for k in (
        "v_pu", "line_loading", "converged", "p_agent_kw", "pf_iterations", "pf_contraction",
        "q_agent_kvar")}
    return DayRollout(
        obs=obs, actions=actions, delta=None, cost=cost_agent.sum(-1),
        cost_parts={k: sum(o.costs.blocks[k][0].sum(-1) for o in outs) for k in outs[0].costs},
        cost_agent=cost_agent,
        constraints=Constraints(*(stack(lambda o, i=i: o.constraints[i]) for i in range(4))),
        clipped_actions=sum(o.info["clipped_actions"] for o in outs), **info)


def _values(cfg, s, obs, gs):
    """Denormalised values ``(B, N)``."""
    if cfg.variant == "mappo":
        v = s.critic(gs)
    else:
        v = s.critic(obs.to(torch.float32).contiguous())[..., 0]
    return s.value_norm.denormalise(v.double()).to(obs.dtype)


def _log_prob(a, mu, log_std):
    return -((a - mu) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)


def gae(rew: torch.Tensor, val: torch.Tensor, gamma: float, lam: float):
    """GAE(gamma, lambda) advantages and value targets ``(B, T, N)`` of whole days: rewards and
    values ``(B, T, N)``; each day is one episode, terminal after its last step (whose reward
    carries the battery's terminal term), so nothing is bootstrapped past it or across days.
    ``gamma = 1``: the targets are the undiscounted rest of the day (``lam = 1``: exactly)."""
    from torchrl.objectives.value.functional import (  # optional (gridedge[rl])
        vec_generalized_advantage_estimate,  # optional (gridedge[rl])
    )

    b, n_t, n = val.shape
    end = torch.zeros(b, n, n_t, 1, dtype=torch.bool, device=val.device)
    end[:, :, -1] = True  # done and terminated at the day's last step
    next_val = torch.cat([val[:, 1:], torch.zeros_like(val[:, :1])], 1)

    def time_major(x):  # (B, T, N) -> (B, N, T, 1)
        return x.transpose(1, 2)[..., None]

    adv, ret = vec_generalized_advantage_estimate(
        gamma, lam, time_major(val), time_major(next_val), time_major(rew), end, end, time_dim=-2)
    return adv[..., 0].transpose(1, 2), ret[..., 0].transpose(1, 2)


def update(cfg: PPOConfig, s: PPOState, batch: dict) -> dict:
    """GAE, value normalisation and ``epochs x minibatches`` clipped PPO steps (module docstring)."""
    val, rew = batch["val"], batch["rew"]  # (B, T, N)
    adv, ret = gae(rew, val, cfg.gamma, cfg.gae_lambda)
    s.value_norm.update(ret)
    target = s.value_norm.normalise(ret).float().flatten(0, 1)  # (S, N)
    old_v = s.value_norm.normalise(val).float().flatten(0, 1)
    adv = adv.flatten(0, 1)
    adv = ((adv - adv.mean(0)) / adv.std(0).clamp_min(1e-8)).float()  # per agent
    obs, act, logp_old = (batch[k].flatten(0, 1) for k in ("obs", "act", "logp"))
    gs = None if batch["gs"] is None else batch["gs"].flatten(0, 1)
    stats = []
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(adv), generator=s.generator).chunk(cfg.minibatches):
            mu = s.actor(obs[idx])
            logp = _log_prob(act[idx], mu, s.log_std.to(mu.dtype))
            ratio = torch.exp(logp - logp_old[idx]).float()
            a = adv[idx]
            actor_loss = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a).mean()
            entropy = (s.log_std + 0.5 * math.log(2 * math.pi * math.e)).mean()
            s.actor_opt.zero_grad(set_to_none=True)
            (actor_loss - cfg.entropy_coef * entropy).backward()
            torch.nn.utils.clip_grad_norm_([*s.actor.parameters(), s.log_std], cfg.max_grad_norm)
            s.actor_opt.step()
            v = (s.critic(gs[idx]) if gs is not None
                 else s.critic(obs[idx].to(torch.float32))[..., 0])
            v_clip = old_v[idx] + (v - old_v[idx]).clamp(-cfg.value_clip, cfg.value_clip)
            critic_loss = torch.maximum((v - target[idx]) ** 2, (v_clip - target[idx]) ** 2).mean()
            s.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            torch.nn.utils.clip_grad_norm_(s.critic.parameters(), cfg.max_grad_norm)
            s.critic_opt.step()
            stats.append((actor_loss.item(), critic_loss.item(), (ratio - 1).abs().mean().item()))
    a_l, c_l, r = (sum(x) / len(stats) for x in zip(*stats, strict=True))
    return {"ppo/actor_loss": a_l, "ppo/critic_loss": c_l, "ppo/ratio_dev": r,
            "ppo/std_mean": s.log_std.detach().exp().mean().item()}


def _rollout_env(env, cfg: PPOConfig, s: PPOState):
    """The environment rollouts step (``cfg.rollout``), built once per state."""
    if cfg.rollout == "eager":
        return env
    if s.rollout_env is None:
        dtype = torch.float32 if cfg.rollout == "compiled_fp32" else env.node_mask.dtype
        s.rollout_env = make_env(replace(env.config, compile=True),
                                 device=env.node_mask.device, dtype=dtype)
    return s.rollout_env


def iterate(env, cfg: PPOConfig, dual: DualConfig, s: PPOState) -> dict:
    """One rollout of ``B`` training days, the PPO update and the dual step (as GradMAP's
    trainer takes it); returns the iteration's ``train/`` metrics with the budget counters.
    Raises ``FloatingPointError`` when the actors or the multipliers become non-finite."""
    train_days = env.scenario.split.train
    days = train_days[torch.randperm(len(train_days), generator=s.generator)[:cfg.days_per_rollout]]
    t0, c0 = time.perf_counter(), time.process_time()
    roll_env = _rollout_env(env, cfg, s)
    batch = collect(roll_env, cfg, dual, s, days)
    m = update(cfg, s, batch)
    if not dual.fixed:
        s.duals = dual_ascent(s.duals, batch["cons"], dual.lr_voltage, dual.lr_line, dual.max_gbp)
    check_finite(s.actor, s.duals, s.iteration + 1, "actor")
    s.train_seconds += time.perf_counter() - t0
    s.cpu_seconds += time.process_time() - c0
    s.iteration += 1
    s.day_steps += len(days) * env.n_steps
    tm = metrics(roll_env, batch["roll"])
    return {"iteration": s.iteration, **counters(s), "train/env_steps": s.day_steps,
            "train/return": float(batch["rew"].sum(1).mean()),
            **{f"train/{k}": tm[k] for k in TRAIN_METRICS if k in tm}, **m,
            "dual/v_mean": float((s.duals.v_over_pu + s.duals.v_under_pu).mean() / 2),
            "dual/line_mean": float(s.duals.line_over.mean())}


def validate(env, s: PPOState) -> dict:
    """Validation metrics of the deterministic actors (``val/`` keys) with the counters."""
    m, _ = evaluate(env, s.actor, env.scenario.split.validation)
    return {"iteration": s.iteration, **counters(s), "train/env_steps": s.day_steps,
            **{f"val/{k}": x for k, x in m.items()}}


def train_ppo(env, cfg: PPOConfig, dual: DualConfig, *, state: PPOState | None = None,
              progress_fn: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> PPOState:
    """Run (or continue, from ``state``) until ``cfg.iterations`` or ``should_stop()``,
    validating the deterministic actors every ``eval_every`` iterations and at the last.
    Records carry GradMAP's keys (:func:`gradmap_agents.train.counters`, ``train/`` metrics of
    the training rollouts, ``val/`` metrics), plus ``train/env_steps`` (= ``train/day_steps``)
    and ``ppo/`` losses."""
    s = state or init_ppo(env, cfg, dual)
    while s.iteration < cfg.iterations:
        rec = iterate(env, cfg, dual, s)
        if s.iteration % cfg.eval_every == 0 or s.iteration == cfg.iterations:
            val = validate(env, s)
            s.history.append(val)
            rec.update(val)
        if progress_fn is not None:
            progress_fn(rec)
        if should_stop is not None and should_stop():
            break
    return s


__all__ = ["PPOConfig", "PPOState", "SharedPolicy", "ValueNorm", "CentralCritic", "make_actor",
           "init_ppo", "global_state_stats", "collect", "gae", "update", "iterate", "validate",
           "train_ppo"]
