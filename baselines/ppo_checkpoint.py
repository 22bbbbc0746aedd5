"""MAPPO/IPPO checkpoints: one safetensors file, written atomically, loaded without running code.

The file holds every tensor of a :class:`~.ppo.PPOState` (actor and critic parameters and
normalisation, ``log σ``, the value normaliser, both optimisers' Adam moments, the duals and
the sampling generator's state) and, in the header's metadata, the counters, the validation
history, the no-control reference, the ``PPOConfig`` and the ``DualConfig``. The budget counters
(wall and CPU seconds, day-steps) continue from their saved values. Resuming continues the same
run: the generator state makes the remaining days, noise and minibatches those of an
uninterrupted run (tested). It is :mod:`gradmap_agents.checkpoint`'s format idea for PPO's
state.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from gradmap_agents.checkpoint import (
    CheckpointError,
    atomic_write,
    load_optimizer,
    optimizer_tensors,
)
from gradmap_agents.config import DualConfig
from gradmap_agents.dual import Duals

from .ppo import PPOConfig, PPOState, init_ppo

FORMAT = "gridedge-ppo-checkpoint-2"
"""Version 2: the multipliers follow the training config's ``DualConfig`` (saved with it) and
the state counts CPU seconds and day-steps; version 1 files are refused by name."""
COUNTERS = ("iteration", "train_seconds", "cpu_seconds", "day_steps")
"""``PPOState`` counters kept in the header."""
RESUMABLE = ("iterations", "eval_every")
"""``PPOConfig`` fields a resumed run may change (a longer run, other validation points)."""


def save_ppo(path: Path, s: PPOState, cfg: PPOConfig, dual: DualConfig) -> None:
    """Write the state of a run of ``cfg`` and ``dual`` to ``path`` atomically."""
    tensors = {f"actor.{k}": v for k, v in s.actor.state_dict().items()}
    tensors.update({f"critic.{k}": v for k, v in s.critic.state_dict().items()})
    tensors.update({f"value_norm.{k}": v for k, v in s.value_norm.state_dict().items()})
    tensors["log_std"] = s.log_std
    tensors.update(optimizer_tensors(s.actor_opt, "actor_opt"))
    tensors.update(optimizer_tensors(s.critic_opt, "critic_opt"))
    tensors.update({f"duals.{k}": v for k, v in s.duals._asdict().items()})
    tensors["rng"] = s.generator.get_state()
    meta = {"format": FORMAT, **{k: getattr(s, k) for k in COUNTERS}, "history": s.history,
            "no_control_val": s.no_control_val, "config": dataclasses.asdict(cfg),
            "dual": dataclasses.asdict(dual),
            "actor_opt_groups": s.actor_opt.state_dict()["param_groups"],
            "critic_opt_groups": s.critic_opt.state_dict()["param_groups"]}
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata={"ppo": json.dumps(meta)}))


def load_ppo(path: Path, env, cfg: PPOConfig, dual: DualConfig) -> PPOState:
    """The state saved at ``path``, for ``env``, ``cfg`` and ``dual``; a checkpoint of another
    configuration (other than :data:`RESUMABLE` fields) or other multipliers is an error naming
    the fields (``dual.<field>`` for the multipliers')."""
    tensors, meta = _read(Path(path))
    diff = _differing(meta["config"], cfg, "") + _differing(meta["dual"], dual, "dual.")
    if diff:
        raise CheckpointError(f"{path}: written by another PPO configuration (differs in "
                              f"{', '.join(diff)}); resume with the run's own settings")
    s = init_ppo(env, cfg, dual)
    try:
        for name, module in (("actor", s.actor), ("critic", s.critic), ("value_norm", s.value_norm)):
            module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items()
                                    if k.startswith(f"{name}.")}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit this environment ({exc})") from None
    with torch.no_grad():
        s.log_std.copy_(tensors["log_std"])
    load_optimizer(s.actor_opt, tensors, meta["actor_opt_groups"], "cpu", "actor_opt")
    load_optimizer(s.critic_opt, tensors, meta["critic_opt_groups"], "cpu", "critic_opt")
    s.duals = Duals(**{k: tensors[f"duals.{k}"] for k in Duals._fields})
    s.generator.set_state(tensors["rng"])
    for k in COUNTERS:
        setattr(s, k, meta[k])
    s.history, s.no_control_val = meta["history"], meta["no_control_val"]
    return s


def _differing(saved: dict, config, prefix: str) -> list[str]:
    """Fields (``prefix`` + name) where ``config`` differs from the ``saved`` dict, as JSON."""
    now = json.loads(json.dumps(dataclasses.asdict(config)))
    return sorted(prefix + k for k in set(saved) | set(now)
                  if k not in RESUMABLE and saved.get(k) != now.get(k))


def _read(path: Path) -> tuple[dict, dict]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no PPO checkpoint here")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["ppo"])
        tensors = load_file(str(path))
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PPO checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return tensors, meta
