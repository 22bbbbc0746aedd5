"""The primal-dual training loop of GradMAP and GradMA, with explicit, checkpointable state.

``train(env, cfg, progress_fn=...)`` runs ``cfg.iterations`` environment gradients and returns
the final :class:`TrainState`. Each iteration (``iterate``):

1. draws ``B`` training days (a seeded generator kept in the state);
2. updates every policy (:func:`.gradmap.gradmap_update` or :func:`.gradmap.gradma_update`);
3. takes one projected dual ascent step (:func:`.dual.dual_ascent`), unless the duals are fixed;

and every ``eval_every`` iterations it evaluates the policies on the validation days. Day-steps
whose power flow did not converge carry no gradient: each iteration reports how many
(``train/nonconverged``, ``train/nonconverged_share``) and the run stops with
:class:`NonConvergenceError` when their share exceeds ``cfg.max_nonconverged_share``; non-finite
policy parameters or duals stop it with ``FloatingPointError``. The loop
reports through ``progress_fn(metrics)`` and ``checkpoint_fn(state)`` only: loggers, progress
bars and files live in the CLI layer (:mod:`.cli`). Everything random comes from generators in
the state, so a run resumed from a checkpoint continues exactly (same numbers on the CPU).

Across processes (``torchrun``, :mod:`.distributed`) every rank runs this loop on the same
state: the same days are drawn everywhere, each rank rolls out its block of them, and the
updates, the dual step's constraint means and the metrics are reduced over the ranks, so the
ranks stay identical and equal one process up to the order of floating-point sums. The
counters are the whole batch's (``day_steps``) or the rank's own (wall and CPU seconds: the run
reports rank 0's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gridedge_env.costs import Constraints
from gridedge_env.rollout import no_control

from . import distributed
from .config import TrainConfig
from .dual import Duals, dual_ascent, init_duals
from .evaluate import evaluate, metrics
from .gradmap import gradma_update, gradmap_update
from .policy import StackedPolicy, kind_groups, observation_stats

TRAIN_METRICS = ("cost", "violation_magnitude", "voltage_violation_magnitude",
                 "line_violation_magnitude", "violation_frequency", "nonconverged",
                 "nonconverged_share", "pf_iterations_mean", "pf_iterations_max",
                 "pf_contraction_mean", "pf_contraction_max")
"""Metrics of each environment gradient's rollout logged as ``train/`` keys (the power flow's
iterations and contraction rate where the rollout carries them)."""
NORMALISATION_DAYS = 64
"""Training days whose no-control observations fix the observation normalisation."""


class NonConvergenceError(RuntimeError):
    """Too many power flows of an environment gradient did not converge (above
    ``TrainConfig.max_nonconverged_share``); the message names the iteration, count and share."""

    def __init__(self, iteration: int, count: int, share: float, limit: float):
        super().__init__(f"{count} day-steps ({share:.1%}) of the environment gradient at "
                         f"iteration {iteration} did not converge, above "
                         f"max_nonconverged_share={limit:g}")
        self.iteration, self.count, self.share, self.limit = iteration, count, share, limit


@dataclass
class TrainState:
    """Everything a run needs to continue: saved whole in a checkpoint."""

    policy: StackedPolicy
    optimizer: torch.optim.Optimizer
    duals: Duals
    day_generator: torch.Generator
    minibatch_generator: torch.Generator
    iteration: int = 0
    env_gradients: int = 0
    train_seconds: float = 0.0  # wall seconds of the training iterations (validation excluded)
    cpu_seconds: float = 0.0  # process CPU seconds of the same iterations (all threads)
    day_steps: int = 0  # simulated day-steps (days x steps) of the environment gradients
    history: list = field(default_factory=list)  # one dict per validation point
    no_control_val: dict = field(default_factory=dict)


def make_policy(env, cfg: TrainConfig) -> StackedPolicy:
    """The run's policies, initialised from ``cfg.seed`` (normalisation not yet set)."""
    dtype = {"fp32": torch.float32, "fp64": torch.float64}[cfg.policy.dtype]
    groups = kind_groups(env.kind_slices, cfg.policy.hidden, cfg.policy.hidden_by_kind)
    return StackedPolicy(env.n_agents, env.obs_dim, groups, seed=cfg.seed, dtype=dtype,
                         device=env.node_mask.device, out_scale=cfg.policy.out_scale,
                         activation=cfg.policy.activation)


def make_optimizer(policy, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(policy.parameters(), lr=cfg.algo.lr)


def normalisation_days(env, seed: int) -> torch.Tensor:
    """The training days ``(min(64, D_train),)`` whose no-control rollouts fix every learner's
    observation normalisation and initial actions (GradMAP, GradMA, MAPPO/IPPO): a permutation
    of the training split seeded by ``seed``, so they span the year (the split is in date order:
    its first 64 days are January to March)."""
    train_days = env.scenario.split.train
    g = torch.Generator().manual_seed(int(seed))
    return train_days[torch.randperm(len(train_days), generator=g)[:NORMALISATION_DAYS]]


def init_state(env, cfg: TrainConfig) -> TrainState:
    """A fresh run: policies (normalisation from no-control days of :func:`normalisation_days`,
    output layers fitted so that they start at the no-control actions: ``StackedPolicy.
    fit_output``), duals, generators, and the no-control validation metrics the target is
    measured against."""
    policy = make_policy(env, cfg)
    _, roll = evaluate(env, no_control(env), normalisation_days(env, cfg.seed))
    policy.set_normalisation(*observation_stats(roll.obs))
    policy.fit_output(roll.obs, roll.actions)  # start at no control (docs/gradmap.md)
    nc_val, _ = evaluate(env, no_control(env), env.scenario.split.validation, across_ranks=True)
    d = cfg.dual
    duals = init_duals(env, d.granularity, d.init_voltage_gbp_per_pu, d.init_line_gbp)
    return TrainState(policy=policy, optimizer=make_optimizer(policy, cfg), duals=duals,
                      day_generator=torch.Generator().manual_seed(cfg.seed + 1),
                      minibatch_generator=torch.Generator().manual_seed(cfg.seed + 2),
                      no_control_val=nc_val)


def iterate(env, cfg: TrainConfig, s: TrainState) -> dict:
    """One environment gradient, the policy update and the dual step; returns train metrics
    (``train/nonconverged``: day-steps whose power flow did not converge). Raises
    ``FloatingPointError`` when the policy parameters or the duals become non-finite."""
    a = cfg.algo
    train_days = env.scenario.split.train
    days = train_days[torch.randperm(len(train_days), generator=s.day_generator)
                      [:a.days_per_gradient]]
    margins = (cfg.dual.margin_pu, cfg.dual.line_margin)
    t0, c0 = time.perf_counter(), time.process_time()
    if a.method == "gradmap":
        eg = gradmap_update(env, s.policy, s.optimizer, days, s.duals, epochs=a.epochs,
                            minibatches=a.minibatches, eta=a.eta, eps=a.eps, form=a.surrogate,
                            grad_scale=a.grad_scale, generator=s.minibatch_generator,
                            margins=margins, scheme=cfg.dual.scheme, recompute=a.recompute)
    else:
        eg = gradma_update(env, s.policy, s.optimizer, days, s.duals, margins=margins,
                           grad_scale=a.grad_scale, scheme=cfg.dual.scheme,
                           recompute=a.recompute)
    if not cfg.dual.fixed:
        cons = batch_mean(eg.cons, len(days)) if distributed.active() else eg.cons
        s.duals = dual_ascent(s.duals, cons, cfg.dual.lr_voltage, cfg.dual.lr_line,
                              cfg.dual.max_gbp)
    check_finite(s.policy, s.duals, s.iteration + 1, "policy")
    s.train_seconds += time.perf_counter() - t0
    s.cpu_seconds += time.process_time() - c0
    s.iteration += 1
    s.env_gradients += 1
    s.day_steps += len(days) * env.n_steps
    m = metrics(env, eg.roll, across_ranks=True)
    return {"iteration": s.iteration, **counters(s), "train/lagrangian": eg.loss,
            **{f"train/{k}": m[k] for k in TRAIN_METRICS if k in m},
            "dual/v_mean": float((s.duals.v_over_pu + s.duals.v_under_pu).mean() / 2),
            "dual/line_mean": float(s.duals.line_over.mean())}


def batch_mean(cons: Constraints, n_days: int) -> Constraints:
    """The dual step's constraint terms ``(1, T, n|r)``: each rank's ``(b, T, n|r)`` summed over
    its days and over the ranks, divided by the batch's ``n_days`` (the mean over days
    :func:`.dual.dual_ascent` takes of one process's terms)."""
    def mean(g):
        return distributed.all_sum(g.sum(0, keepdim=True)) / n_days

    return Constraints(mean(cons.v_over_pu), mean(cons.v_under_pu), mean(cons.line_over), None)


def check_finite(module: torch.nn.Module, duals: Duals, iteration: int, name: str) -> None:
    """Raise ``FloatingPointError`` naming ``name`` (or the duals) and the iteration when a
    parameter of ``module`` or a multiplier is not finite (divergence)."""
    if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
        raise FloatingPointError(f"{name} parameters became non-finite at iteration {iteration}")
    bad = [k for k, d in duals._asdict().items() if not bool(torch.isfinite(d).all())]
    if bad:
        raise FloatingPointError(f"duals {', '.join(bad)} became non-finite at iteration "
                                 f"{iteration}")


def counters(s) -> dict:
    """The budget counters every method reports with its metrics (``train/`` keys): environment
    gradients, wall and process CPU seconds of training, simulated day-steps."""
    return {"train/env_gradients": s.env_gradients, "train/wall_seconds": s.train_seconds,
            "train/cpu_seconds": s.cpu_seconds, "train/day_steps": s.day_steps}


def validate(env, s: TrainState) -> dict:
    """Validation metrics of the current policies (``val/`` keys) with the train counters."""
    m, _ = evaluate(env, s.policy, env.scenario.split.validation, across_ranks=True)
    return {"iteration": s.iteration, **counters(s), **{f"val/{k}": v for k, v in m.items()}}


def train(env, cfg: TrainConfig, *, state: TrainState | None = None,
          progress_fn: Callable[[dict], None] | None = None,
          checkpoint_fn: Callable[[TrainState], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainState:
    """Run (or continue, from ``state``) until ``cfg.iterations`` environment gradients.

    ``progress_fn(metrics)`` is called after every iteration (validation metrics included on
    validation iterations); ``checkpoint_fn(state)`` every ``checkpoint_every`` iterations and
    at the end; ``should_stop()`` ends the run early (after a checkpoint). Raises
    :class:`NonConvergenceError` (after reporting the iteration through ``progress_fn``, before
    any checkpoint of it) when more than ``cfg.max_nonconverged_share`` of an environment
    gradient's day-steps did not converge, ``FloatingPointError`` when the run diverges.
    Across processes every rank calls this with its own callbacks; ranks stop together when
    ``should_stop()`` holds on any of them."""
    distributed.check_shardable(cfg.algo.days_per_gradient, "algo.days_per_gradient")
    distributed.check_shardable(len(env.scenario.split.validation), "validation days")
    s = init_state(env, cfg) if state is None else state
    while s.iteration < cfg.iterations:
        m = iterate(env, cfg, s)
        if m["train/nonconverged_share"] > cfg.max_nonconverged_share:
            if progress_fn is not None:
                progress_fn(m)
            raise NonConvergenceError(s.iteration, m["train/nonconverged"],
                                      m["train/nonconverged_share"], cfg.max_nonconverged_share)
        last = s.iteration == cfg.iterations
        if s.iteration % cfg.eval_every == 0 or last:
            val = validate(env, s)
            s.history.append(val)
            m.update(val)
        if progress_fn is not None:
            progress_fn(m)
        stop = distributed.any_rank(should_stop is not None and should_stop())
        if checkpoint_fn is not None and (s.iteration % cfg.checkpoint_every == 0 or last or stop):
            checkpoint_fn(s)
        if stop:
            break
    return s
