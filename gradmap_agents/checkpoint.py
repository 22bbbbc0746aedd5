"""Checkpoints: one safetensors file per run, written atomically, loaded without executing code.

The file holds every tensor of a :class:`~.train.TrainState` (policy parameters and
normalisation, Adam moments, duals, the generators' states as bytes) and, in the safetensors
header's string metadata, the counters, the validation history, the no-control reference and the
run's configuration with its fingerprint. ``save`` writes a temporary file in the same folder,
flushes it to disk and renames it over the old one (``os.replace``), so a crash or ``kill -9``
leaves either the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import TrainConfig
from .dual import Duals
from .train import TrainState, make_optimizer, make_policy

FORMAT = "gridedge-gradmap-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or belongs to another run (message says which)."""


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)``, then flush it to disk and rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optim") -> dict:
    """An optimiser's per-parameter state as flat tensors ``{prefix}.{i}.{name}`` (its
    ``param_groups`` go to the metadata)."""
    return {f"{prefix}.{i}.{k}": torch.as_tensor(v).detach().contiguous()
            for i, st in optimizer.state_dict()["state"].items() for k, v in st.items()}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list, device,
                   prefix: str = "optim") -> None:
    """Restore what :func:`optimizer_tensors` flattened (``step`` counters stay on the CPU)."""
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith(f"{prefix}."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v.to(device) if name != "step" else v
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save(path: Path, s: TrainState, cfg: TrainConfig) -> None:
    """Write the state to ``path`` atomically."""
    tensors = {f"policy.{k}": v.detach().contiguous() for k, v in s.policy.state_dict().items()}
    opt = s.optimizer.state_dict()
    tensors.update(optimizer_tensors(s.optimizer))
    for k, v in s.duals._asdict().items():
        tensors[f"duals.{k}"] = v.detach().contiguous()
    tensors["rng.day"] = s.day_generator.get_state()
    tensors["rng.minibatch"] = s.minibatch_generator.get_state()
    meta = {"format": FORMAT, "iteration": s.iteration, "env_gradients": s.env_gradients,
            "train_seconds": s.train_seconds, "history": s.history,
            "no_control_val": s.no_control_val, "optim_groups": opt["param_groups"],
            "config": cfg.as_dict(), "fingerprint": cfg.fingerprint()}
    cpu = {k: v.cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata={"gradmap": json.dumps(meta)}))


def read(path: Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a checkpoint file, with clear errors when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header["gradmap"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable gradmap checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return tensors, meta


def config_of(path: Path) -> TrainConfig:
    """The configuration a checkpoint was written with."""
    from .config import load_config

    return load_config(None, read(path)[1]["config"])


def load(path: Path, env, cfg: TrainConfig) -> TrainState:
    """Rebuild the state saved at ``path`` for ``env`` and ``cfg``; a checkpoint of another
    configuration (anything but ``iterations`` and logging) is an error naming both."""
    tensors, meta = read(path)
    if meta["fingerprint"] != cfg.fingerprint():
        saved = meta["config"]
        diff = sorted(k for k in set(saved) | set(cfg.as_dict())
                      if k not in ("iterations", "logging") and saved.get(k) != cfg.as_dict().get(k))
        raise CheckpointError(f"{path}: written by another configuration (differs in "
                              f"{', '.join(diff) or 'nested values'}; saved env {saved['env']!r}, "
                              f"now {cfg.env!r}); resume with the run's own config")
    dev = env.node_mask.device
    policy = make_policy(env, cfg)
    sd = {k[len("policy."):]: v.to(dev) for k, v in tensors.items() if k.startswith("policy.")}
    try:
        policy.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: policy does not fit this environment ({exc})") from None
    optimizer = make_optimizer(policy, cfg)
    load_optimizer(optimizer, tensors, meta["optim_groups"], dev)
    duals = Duals(**{k: tensors[f"duals.{k}"].to(dev) for k in Duals._fields})
    day_gen, mb_gen = torch.Generator(), torch.Generator()
    day_gen.set_state(tensors["rng.day"])
    mb_gen.set_state(tensors["rng.minibatch"])
    return TrainState(policy=policy, optimizer=optimizer, duals=duals, day_generator=day_gen,
                      minibatch_generator=mb_gen, iteration=meta["iteration"],
                      env_gradients=meta["env_gradients"], train_seconds=meta["train_seconds"],
                      history=meta["history"], no_control_val=meta["no_control_val"])
