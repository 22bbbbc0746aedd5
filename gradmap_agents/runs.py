"""The run API: one training run in one directory, for the commands and for orchestration.

A run directory holds ``config.yaml`` (the resolved configuration), ``checkpoint.safetensors``
(:data:`CHECKPOINT`), ``train.csv``, ``validation.csv``, and after evaluation ``eval.json`` and
the PNG plots. :func:`train_run` trains (or resumes) a run with callbacks, as
:func:`.train.train` does, and owns its files; :func:`evaluate_run` evaluates a run's policies on
the test days; :func:`load_run` rebuilds a finished run. ``gradmap-train``/``-eval``/``-export``
(:mod:`.cli`) and ``gradmap-compare`` (:mod:`baselines.compare`) are thin callers of these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import yaml

from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control

from . import checkpoint, distributed, plots, protocol
from .checkpoint import atomic_write
from .config import TrainConfig
from .evaluate import evaluate, per_day
from .loggers import RunLogger
from .opendss_check import opendss_check
from .train import TrainState, train

CHECKPOINT = "checkpoint.safetensors"
"""The checkpoint's file name inside a run directory."""


def build_env(cfg: TrainConfig):
    """The environment (``EnvParams``) a training config names, with its dtype, device and
    ``env_overrides``."""
    dtype = {"fp64": torch.float64, "fp32": torch.float32}[cfg.dtype]
    return env_params(cfg.env, device=cfg.device, dtype=dtype, **dict(cfg.env_overrides))


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    """``config.yaml``: the resolved configuration of the run."""
    text = "# resolved configuration of this run (gradmap-train)\n" + yaml.safe_dump(
        cfg.as_dict(), sort_keys=False)
    atomic_write(Path(run_dir) / "config.yaml", lambda tmp: Path(tmp).write_text(text))


class RunResult(NamedTuple):
    """What :func:`train_run` leaves: the final state, the environment it trained on, and the
    test-day report (``eval.json``; ``None`` when not evaluated or stopped early)."""

    state: TrainState
    env: object
    report: dict | None


def train_run(run_dir: Path, cfg: TrainConfig, *, env=None, resume: bool = False,
              logger: str = "csv", max_seconds: float | None = None, evaluate: bool = True,
              progress_fn: Callable[[dict], None] | None = None,
              max_train_seconds: float | None = None) -> RunResult:
    """Train (``resume``: continue from the run's checkpoint) in ``run_dir``, then evaluate.

    ``env``: the environment to train on (default :func:`build_env` of ``cfg``); ``logger``:
    ``"csv"``, ``"none"`` (CSV only) or ``"wandb"`` (and CSV); ``max_seconds``: stop after a
    checkpoint once this much wall time has passed (everything: validation, checkpoints);
    ``max_train_seconds``: stop after a checkpoint once the run's training seconds (validation
    excluded, across resumes: ``TrainState.train_seconds``) pass this, the budget every method
    of a comparison gets; ``evaluate``: on finishing, evaluate on the
    test days (:func:`evaluate_run`) and log the report as the run's summary;
    ``progress_fn(metrics)`` after every iteration. The environment is built (and so its
    ``env_overrides`` validated: ``ConfigError``) before ``run_dir`` is created, so a bad
    config leaves no directory behind. Raises ``FloatingPointError`` when the run diverges and
    :class:`~.train.NonConvergenceError` when too many power flows fail to converge (either
    way the last checkpoint written before it is kept).

    Across processes (``torchrun``, :mod:`.distributed`) every rank calls this with the same
    arguments and loads the same checkpoint to resume; rank 0 alone writes to ``run_dir``
    (configuration, logs, checkpoints, ``eval.json``, plots) and evaluates on the test days,
    the other ranks return ``report=None``."""
    run_dir = Path(run_dir)
    env = build_env(cfg) if env is None else env
    main = distributed.is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    state = checkpoint.load(run_dir / CHECKPOINT, env, cfg) if resume else None
    if main:
        write_config(run_dir, cfg)
    log = RunLogger(run_dir, logger, cfg, resume_from=state.iteration if state else None,
                    name=run_dir.name) if main else None
    t_start = time.monotonic()

    trained = [state.train_seconds if state else 0.0]  # training seconds after the last iteration

    def progress(m):
        trained[0] = m["train/wall_seconds"]
        if log is not None:
            log.log(m)
        if progress_fn is not None:
            progress_fn(m)

    def should_stop():
        return ((max_seconds is not None and time.monotonic() - t_start > max_seconds)
                or (max_train_seconds is not None and trained[0] > max_train_seconds))

    def save(st):
        checkpoint.save(run_dir / CHECKPOINT, st, cfg)

    try:
        s = train(env, cfg, state=state, progress_fn=progress, should_stop=should_stop,
                  checkpoint_fn=save if main else None)
        report = None
        if main and evaluate and s.iteration >= cfg.iterations:
            report = evaluate_run(run_dir, env, cfg, s)
            log.summary({k: v for k, v in report.items() if isinstance(v, (int, float))})
        return RunResult(s, env, report)
    finally:
        if log is not None:
            log.close()


def load_run(run_dir: Path):
    """``(cfg, env, state)`` of the run in ``run_dir``, rebuilt from its checkpoint."""
    ckpt = Path(run_dir) / CHECKPOINT
    cfg = checkpoint.config_of(ckpt)
    env = build_env(cfg)
    return cfg, env, checkpoint.load(ckpt, env, cfg)


def evaluate_run(run_dir: Path, env, cfg: TrainConfig, s: TrainState, *,
                 opendss: bool = False) -> dict:
    """Test-day metrics of the run's policies and of no control into ``eval.json``, and the
    plots. ``opendss``: also re-simulate the test days with OpenDSS solving every power flow
    (:func:`.opendss_check.opendss_check`)."""
    run_dir = Path(run_dir)
    test = env.scenario.split.test
    m, roll = evaluate(env, s.policy, test)
    m_nc, roll_nc = evaluate(env, no_control(env), test)
    lv = protocol.levels(env)
    report = {"env": cfg.env, "method": cfg.algo.method, "seed": cfg.seed,
              "n_test_days": len(test), "n_agents": env.n_agents,
              **{f"test/{k}": v for k, v in m.items()},
              **{f"no_control/{k}": v for k, v in m_nc.items()},
              **{f"test/{k}_cut": 1 - m[k] / m_nc[k] if m_nc[k] else None
                 for k in ("violation_magnitude", "violation_frequency")},
              "train/wall_seconds": s.train_seconds, "train/env_gradients": s.env_gradients,
              "train/cpu_seconds": s.cpu_seconds, "train/day_steps": s.day_steps,
              "train/iterations": s.iteration, "levels": lv.as_dict(),
              **{f"train/{k}": v for k, v in protocol.score(s.history, lv, None).items()},
              "test_per_day": {k: [None if x != x else x for x in v.tolist()]  # NaN: None
                               for k, v in per_day(env, roll).items()},
              **({k: v for k, v in s.history[-1].items() if k.startswith("val/")}
                 if s.history else {})}
    if opendss:
        report.update(opendss_check(env, s.policy, test))
    atomic_write(run_dir / "eval.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    title = f"{cfg.env} {cfg.algo.method}"
    day = 0
    plots.agents_power(roll.p_agent_kw[day], env.kind_slices, env.dt_h, run_dir / "agents_power.png",
                       f"{title}: all agents, test day {int(test[day])}")
    node = env.node_mask.bool()
    plots.voltage_envelope(roll.v_pu[..., node], roll_nc.v_pu[..., node], env.scenario.config.limits,
                           env.dt_h, run_dir / "voltage_envelope.png", f"{title}: test days")
    if s.history:
        plots.learning_curves(s.history, s.no_control_val, run_dir / "learning_curves.png", title)
    return report
