"""MAPPO and IPPO for continuous actions on the batched core (Yu et al. 2022, "The Surprising
Effectiveness of PPO in Cooperative Multi-Agent Games"; Schulman et al. 2017).

Each iteration rolls the stochastic policies over ``B`` training days without gradients
(``core.step``, which takes the fused compiled step when the environment is built with
``compile=True``), then takes ``epochs x minibatches`` steps on the clipped PPO objective

    L_actor = -mean min(r A, clip(r, 1 - eps, 1 + eps) A) - c_ent H,   r = pi(a|o) / pi_old(a|o)
    L_critic = mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)

with GAE(gamma, lambda) advantages (TorchRL's ``vec_generalized_advantage_estimate``),
normalised per agent, and value targets normalised by running statistics (Yu et al.'s value
normalisation). **IPPO**: each agent's critic sees its own observation (stacked independent
critics). **MAPPO**: one centralised critic of the global state (every agent's observation
and last voltage, ``core.global_state``) with one value head per agent.

Actors are Gaussian, ``a ~ N(mu_theta(o), sigma^2)``, with ``mu_theta`` the same stacked
independent policies as GradMAP (:class:`gradmap_agents.policy.StackedPolicy`, so evaluation
and export are shared; ``shared_actor=True``: one network for every agent) and a learned
``log sigma`` per agent. Samples go to the environment unclipped; it clamps them to ``[-1, 1]``
and counts the clamped ones. The deterministic policy ``mu_theta`` is what is evaluated.

**Rewards.** Agent ``i`` at step ``t`` gets ``r_it = -(c_it + P_t / N)``: its own cost plus an
equal share of the network term ``P_t = sum_k mu_tk g_tk`` (voltage and line exceedances at
every node and line), so the agents' rewards sum to minus the Lagrangian GradMAP minimises.
``constraint="penalty"``: fixed ``mu``; ``"lagrangian"``: ``mu`` learned by the same projected
dual ascent as GradMAP's (:func:`gradmap_agents.dual.dual_ascent`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from gradmap_agents.dual import Duals, dual_ascent, init_duals, penalty
from gradmap_agents.evaluate import evaluate
from gradmap_agents.policy import StackedMLP, StackedPolicy, kind_groups, observation_stats
from gridedge_env.config import check_fields
from gridedge_env.core import global_state, make_env, reset, step
from gridedge_env.costs import Constraints
from gridedge_env.rollout import no_control, rollout

ROLLOUTS = ("eager", "compiled", "compiled_fp32")


@dataclass(frozen=True)
class PPOConfig:
    variant: str = "ippo"
    """``"ippo"`` (local critics) or ``"mappo"`` (centralised critic)."""
    shared_actor: bool = False
    """One actor network for every agent (parameter sharing) instead of independent ones."""
    iterations: int = 100
    """Rollout-and-update iterations."""
    days_per_rollout: int = 32
    """Training days rolled out per iteration (``B``)."""
    epochs: int = 5
    minibatches: int = 4
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    init_log_std: float = -1.0
    hidden: tuple[int, ...] = (16,)
    critic_hidden: tuple[int, ...] = (64,)
    constraint: str = "lagrangian"
    """``"lagrangian"`` (learned multipliers) or ``"penalty"`` (fixed at the initial values)."""
    init_voltage_gbp_per_pu: float = 1e4
    init_line_gbp: float = 1e3
    dual_lr_voltage: float = 2e5
    dual_lr_line: float = 2e4
    dual_max: float = 1e7
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
        if self.constraint not in ("lagrangian", "penalty"):
            raise ValueError(f"ppo: constraint must be 'lagrangian' or 'penalty', got "
                             f"{self.constraint!r}")
        check_fields(self, "ppo: ", at_least_one=(
            "iterations", "days_per_rollout", "epochs", "minibatches", "eval_every"),
            positive=("actor_lr", "critic_lr", "clip", "value_clip", "max_grad_norm"))
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError("ppo: need 0 < gamma <= 1 and 0 <= gae_lambda <= 1")


class SharedPolicy(torch.nn.Module):
    """One network for every agent (parameter sharing), with the interface of
    :class:`StackedPolicy`: ``(..., N, F) -> (..., N)``; ``agent(i)`` is the shared network."""

    def __init__(self, n_agents: int, obs_dim: int, hidden, *, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.net = StackedMLP(1, obs_dim, tuple(hidden), 1, generator=g, dtype=torch.float32)
        self.n_agents, self.obs_dim, self.dtype = n_agents, obs_dim, torch.float32

    def forward(self, obs, t=None, state=None):
        x = obs.to(self.dtype).reshape(1, -1, self.obs_dim)
        return self.net.forward_agent_major(x)[0, :, 0].reshape(obs.shape[:-1]).to(obs.dtype)

    def set_normalisation(self, mean, std):  # one normalisation for all agents
        self.net.obs_mean.copy_(mean.mean(0, keepdim=True))
        self.net.obs_std.copy_(std.mean(0, keepdim=True))

    def agent(self, i: int) -> dict:
        out = {k: v[0].detach().clone() for k, v in self.net.named_parameters()}
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
    actor: torch.nn.Module
    log_std: torch.nn.Parameter
    critic: torch.nn.Module
    value_norm: ValueNorm
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    duals: tuple
    generator: torch.Generator
    iteration: int = 0
    env_steps: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)
    no_control_val: dict = field(default_factory=dict)
    rollout_env: object = None  # the environment rollouts step (None: the given one)


def make_actor(env, cfg: PPOConfig) -> torch.nn.Module:
    """The deterministic actors, freshly initialised from ``cfg.seed``: stacked independent
    policies, or one shared network with ``cfg.shared_actor``."""
    n, f = env.n_agents, env.obs_dim
    return (SharedPolicy(n, f, cfg.hidden, seed=cfg.seed) if cfg.shared_actor else
            StackedPolicy(n, f, kind_groups(env.kind_slices, tuple(cfg.hidden)), seed=cfg.seed))


def init_ppo(env, cfg: PPOConfig) -> PPOState:
    """Actors, critics, optimisers and duals; normalisation from no-control training days."""
    torch.manual_seed(cfg.seed)
    n, f = env.n_agents, env.obs_dim
    actor = make_actor(env, cfg)
    days = env.scenario.split.train[:64]
    _, roll = evaluate(env, no_control(env), days)
    mean, std = observation_stats(roll.obs)
    actor.set_normalisation(mean, std)
    if cfg.variant == "ippo":
        g = torch.Generator().manual_seed(cfg.seed + 7)
        critic = StackedMLP(n, f, cfg.critic_hidden, 1, generator=g, dtype=torch.float32,
                            out_scale=1.0, squash=False)
        critic.obs_mean.copy_(mean)
        critic.obs_std.copy_(std)
    else:
        gs = _global_states(env, days[:16])
        critic = CentralCritic(gs.shape[-1], n, cfg.critic_hidden, gs.mean(0),
                               gs.std(0).clamp_min(1e-3))
    log_std = torch.nn.Parameter(torch.full((n,), cfg.init_log_std, dtype=torch.float32))
    d = init_duals(env, "node_time", cfg.init_voltage_gbp_per_pu, cfg.init_line_gbp)
    nc_val, _ = evaluate(env, no_control(env), env.scenario.split.validation)
    return PPOState(actor, log_std, critic, ValueNorm(n),
                    torch.optim.Adam([*actor.parameters(), log_std], lr=cfg.actor_lr),
                    torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr), d,
                    torch.Generator().manual_seed(cfg.seed + 1), no_control_val=nc_val)


def _global_states(env, days):
    """No-control global states of ``days`` ``(T D, G)`` (the central critic's normalisation):
    every agent's observation and the previous step's voltage at every agent's node, as
    :func:`gridedge_env.core.global_state` gives them, step-major."""
    with torch.no_grad():
        roll = rollout(env, days, no_control(env), path="stepwise")
    v_prev = torch.cat([torch.ones_like(roll.v_pu[:, :1]), roll.v_pu[:, :-1]], 1)
    g = torch.cat([roll.obs.flatten(2), (v_prev[..., env.agent_node] - 1) / 0.05], -1)
    return g.transpose(0, 1).reshape(-1, g.shape[-1])


@torch.no_grad()
def collect(env, cfg: PPOConfig, s: PPOState, days) -> dict:
    """One batch of ``B`` whole days under the stochastic policies: ``(B, T, N)`` actions,
    log-probabilities, rewards, values; observations ``(B, T, N, F)``; constraint terms."""
    state, obs = reset(env, len(days), days=days)
    dtype = obs.dtype  # the environment's: float64, or float32 (the fused compiled step)
    std, log_std = s.log_std.exp().to(dtype), s.log_std.to(dtype)
    duals = Duals(*(d.to(dtype) for d in s.duals))
    rec = {k: [] for k in ("obs", "gs", "act", "logp", "rew", "val", "v_over", "v_under", "line")}
    for t in range(env.n_steps):
        mu = s.actor(obs)
        a = mu + std * torch.randn(mu.shape, generator=s.generator, dtype=mu.dtype)
        gs = global_state(env, state) if cfg.variant == "mappo" else None
        rec["val"].append(_values(cfg, s, obs, gs))
        rec["obs"].append(obs)
        rec["gs"].append(gs)
        rec["act"].append(a)
        rec["logp"].append(_log_prob(a, mu, log_std))
        state, out = step(env, state, a)
        c = out.constraints
        net = penalty(Duals(*(mu[t:t + 1] for mu in duals)),  # (B,) GBP, the step's network term
                      Constraints(c.v_over_pu[:, None], c.v_under_pu[:, None], c.line_over[:, None], None))
        own = sum(out.costs[k] for k in out.costs)
        rec["rew"].append(-(own + net[:, None] / env.n_agents))
        for k, v in (("v_over", c.v_over_pu), ("v_under", c.v_under_pu), ("line", c.line_over)):
            rec[k].append(v)
        obs = out.obs
    return {k: (torch.stack(v, 1) if v[0] is not None else None) for k, v in rec.items()}


def _values(cfg, s, obs, gs):
    """Denormalised values ``(B, N)``."""
    if cfg.variant == "mappo":
        v = s.critic(gs)
    else:
        v = s.critic(obs.to(torch.float32).contiguous())[..., 0]
    return s.value_norm.denormalise(v.double()).to(obs.dtype)


def _log_prob(a, mu, log_std):
    return -((a - mu) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)


def update(cfg: PPOConfig, s: PPOState, batch: dict) -> dict:
    """GAE, value normalisation and ``epochs x minibatches`` clipped PPO steps (module docstring)."""
    from torchrl.objectives.value.functional import (  # optional (gridedge[rl])
        vec_generalized_advantage_estimate,  # optional (gridedge[rl])
    )

    val, rew = batch["val"], batch["rew"]  # (B, T, N)
    b, n_t, n = val.shape
    done = torch.zeros(b, n_t, n, 1, dtype=torch.bool)
    done[:, -1] = True  # a day is an episode: no bootstrap past its last step
    next_val = torch.cat([val[:, 1:], torch.zeros_like(val[:, :1])], 1)
    adv, ret = vec_generalized_advantage_estimate(
        cfg.gamma, cfg.gae_lambda, val[..., None].transpose(1, 2), next_val[..., None].transpose(1, 2),
        rew[..., None].transpose(1, 2), done.transpose(1, 2), time_dim=-2)  # (B, N, T, 1)
    adv, ret = adv[..., 0].transpose(1, 2), ret[..., 0].transpose(1, 2)  # (B, T, N)
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


def train_ppo(env, cfg: PPOConfig, *, state: PPOState | None = None,
              progress_fn: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> PPOState:
    """Run ``cfg.iterations`` rollout-and-update iterations, validating the deterministic
    policies every ``eval_every`` (history keys as GradMAP's trainer, with ``train/env_steps``
    and ``train/env_gradients = 0``: PPO uses none)."""
    s = state or init_ppo(env, cfg)
    train_days = env.scenario.split.train
    while s.iteration < cfg.iterations:
        t0 = time.perf_counter()
        days = train_days[torch.randperm(len(train_days), generator=s.generator)
                          [:cfg.days_per_rollout]]
        batch = collect(_rollout_env(env, cfg, s), cfg, s, days)
        m = update(cfg, s, batch)
        cons = Constraints(batch["v_over"], batch["v_under"], batch["line"], None)
        if cfg.constraint == "lagrangian":
            s.duals = dual_ascent(s.duals, cons, cfg.dual_lr_voltage, cfg.dual_lr_line, cfg.dual_max)
        if not all(bool(torch.isfinite(p).all()) for p in s.actor.parameters()):
            raise FloatingPointError(f"actor parameters became non-finite at iteration {s.iteration}")
        s.train_seconds += time.perf_counter() - t0
        s.iteration += 1
        s.env_steps += len(days) * env.n_steps
        rec = {"iteration": s.iteration, "train/env_gradients": 0, "train/env_steps": s.env_steps,
               "train/wall_seconds": s.train_seconds,
               "train/return": float(batch["rew"].sum(1).mean()), **m}
        if s.iteration % cfg.eval_every == 0 or s.iteration == cfg.iterations:
            val, _ = evaluate(env, s.actor, env.scenario.split.validation)
            v = {"iteration": s.iteration, "train/env_gradients": 0, "train/env_steps": s.env_steps,
                 "train/wall_seconds": s.train_seconds, **{f"val/{k}": x for k, x in val.items()}}
            s.history.append(v)
            rec.update(v)
        if progress_fn is not None:
            progress_fn(rec)
        if should_stop is not None and should_stop():
            break
    return s


__all__ = ["PPOConfig", "PPOState", "SharedPolicy", "ValueNorm", "CentralCritic", "init_ppo",
           "collect", "update", "train_ppo"]
