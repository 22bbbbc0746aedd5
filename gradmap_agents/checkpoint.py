"""Checkpoints: one safetensors file per run, written atomically, loaded without executing code.

The file holds every tensor of a :class:`~.train.TrainState` (policy parameters and
normalisation, Adam moments, duals, the generators' states as bytes) and, in the safetensors
header's string metadata, the counters, the validation history, the no-control reference and the
run's configuration with its fingerprint. ``save`` writes a temporary file in the same folder,
flushes it to disk and renames it over the old one (``os.replace``), so a crash or ``kill -9``
leaves either the previous checkpoint or the new one, never a torn file. A process killed
mid-write leaves its temporary file (``.<name>.tmp-<PID>``); the next write of the same file, and
the next ``save`` in the folder, delete those of processes no longer alive
(:func:`remove_stale_temps`).

Integrity: ``save`` stores a SHA-256 digest of the tensors (names, dtypes, shapes, bytes) and of
the ``gradmap`` metadata in the header (key ``sha256``); :func:`read` recomputes it, so flipped
bytes are a :class:`CheckpointError` naming the file. Checkpoints written before the digest
existed load unchecked. A header that is not this program's (no ``gradmap`` key, bad JSON,
missing or mistyped keys, missing tensors) is a :class:`CheckpointError` naming the file and
the key, never a ``KeyError`` or ``JSONDecodeError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from gridedge_env.config import ConfigError

from .config import TrainConfig, load_config
from .dual import Duals
from .train import TrainState, make_optimizer, make_policy

FORMAT = "gridedge-gradmap-checkpoint-1"
DIGEST_KEY = "sha256"
"""Header metadata key of the checkpoint's digest (:func:`digest`)."""
META_TYPES = {"iteration": int, "env_gradients": int, "train_seconds": (int, float),
              "history": list, "no_control_val": dict, "optim_groups": list, "config": dict,
              "fingerprint": str}
"""Keys the ``gradmap`` metadata must hold, with their JSON types."""
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or belongs to another run (message says which)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (``True`` when it cannot be told)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would signal the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Delete the temporary files (and folders) that killed writers left in ``folder``:
    ``.<name>.tmp-<PID>`` (:func:`atomic_write`) and ``.<name>.old-<PID>``
    (:func:`gradmap_agents.export.replace_folder`) whose process is no longer alive; only
    those of target ``name`` when given. Returns what was deleted."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)``, then flush it to disk and rename it to ``path`` (first deleting the
    temporary files of ``path`` that killed writers left, :func:`remove_stale_temps`)."""
    path = Path(path)
    remove_stale_temps(path.parent, path.name)
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


def digest(tensors: dict, meta_json: str) -> str:
    """SHA-256 (hex) of the tensors (sorted by name: name, dtype, shape, bytes) and of the
    ``gradmap`` metadata string, as stored under :data:`DIGEST_KEY`."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(b"meta|" + meta_json.encode())
    return h.hexdigest()


def save(path: Path, s: TrainState, cfg: TrainConfig) -> None:
    """Write the state to ``path`` atomically, with its digest; first delete the temporary
    files killed writers left in the run directory (:func:`remove_stale_temps`)."""
    tensors = {f"policy.{k}": v.detach().contiguous() for k, v in s.policy.state_dict().items()}
    opt = s.optimizer.state_dict()
    tensors.update(optimizer_tensors(s.optimizer))
    for k, v in s.duals._asdict().items():
        tensors[f"duals.{k}"] = v.detach().contiguous()
    tensors["rng.day"] = s.day_generator.get_state()
    tensors["rng.minibatch"] = s.minibatch_generator.get_state()
    meta = {"format": FORMAT, "iteration": s.iteration, "env_gradients": s.env_gradients,
            "train_seconds": s.train_seconds, "cpu_seconds": s.cpu_seconds,
            "day_steps": s.day_steps, "history": s.history,
            "no_control_val": s.no_control_val, "optim_groups": opt["param_groups"],
            "config": cfg.as_dict(), "fingerprint": cfg.fingerprint()}
    cpu = {k: v.cpu() for k, v in tensors.items()}
    meta_json = json.dumps(meta)
    header = {"gradmap": meta_json, DIGEST_KEY: digest(cpu, meta_json)}
    remove_stale_temps(Path(path).parent)
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=header))


def read(path: Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a checkpoint file, with clear errors when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if "gradmap" not in header:
        raise CheckpointError(f"{path}: not a gradmap checkpoint: its safetensors header has no "
                              f"'gradmap' metadata key (keys: {sorted(header) or 'none'})")
    try:
        meta = json.loads(header["gradmap"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: metadata key 'gradmap' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata key 'gradmap' is not a JSON object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    for key, types in META_TYPES.items():
        if key not in meta:
            raise CheckpointError(f"{path}: metadata 'gradmap' lacks key {key!r}")
        if isinstance(meta[key], bool) or not isinstance(meta[key], types):
            raise CheckpointError(f"{path}: metadata 'gradmap' key {key!r} has a bad value "
                                  f"{meta[key]!r:.80}")
    missing = [k for k in (*(f"duals.{d}" for d in Duals._fields), "rng.day", "rng.minibatch")
               if k not in tensors]
    if missing:
        raise CheckpointError(f"{path}: lacks tensor {missing[0]!r}")
    if DIGEST_KEY in header and digest(tensors, header["gradmap"]) != header[DIGEST_KEY]:
        raise CheckpointError(f"{path}: corrupted: its contents do not match the '{DIGEST_KEY}' "
                              f"digest saved with it (flipped bytes on disk or in transfer, or "
                              f"a hand-edited header)")
    return tensors, meta


def config_of(path: Path) -> TrainConfig:
    """The configuration a checkpoint was written with."""
    try:
        return load_config(None, read(path)[1]["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: metadata 'gradmap' key 'config' is bad ({exc})") from None


def load(path: Path, env, cfg: TrainConfig) -> TrainState:
    """Rebuild the state saved at ``path`` for ``env`` and ``cfg``; a checkpoint of another
    configuration (anything but ``iterations`` and logging) is an error naming both."""
    tensors, meta = read(path)
    if meta["fingerprint"] != cfg.fingerprint():
        saved = meta["config"]
        diff = sorted(k for k in set(saved) | set(cfg.as_dict())
                      if k not in ("iterations", "logging") and saved.get(k) != cfg.as_dict().get(k))
        raise CheckpointError(f"{path}: written by another configuration (differs in "
                              f"{', '.join(diff) or 'nested values'}; saved env {saved.get('env')!r}, "
                              f"now {cfg.env!r}); resume with the run's own config")
    dev = env.node_mask.device
    policy = make_policy(env, cfg)
    sd = {k[len("policy."):]: v.to(dev) for k, v in tensors.items() if k.startswith("policy.")}
    try:
        policy.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: policy does not fit this environment ({exc})") from None
    optimizer = make_optimizer(policy, cfg)
    try:
        load_optimizer(optimizer, tensors, meta["optim_groups"], dev)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: optimiser state does not fit (metadata key "
                              f"'optim_groups' or tensors 'optim.*': {exc!r})") from None
    duals = Duals(**{k: tensors[f"duals.{k}"].to(dev) for k in Duals._fields})
    day_gen, mb_gen = torch.Generator(), torch.Generator()
    try:
        day_gen.set_state(tensors["rng.day"])
        mb_gen.set_state(tensors["rng.minibatch"])
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad generator state in tensor 'rng.day' or "
                              f"'rng.minibatch' ({exc})") from None
    return TrainState(policy=policy, optimizer=optimizer, duals=duals, day_generator=day_gen,
                      minibatch_generator=mb_gen, iteration=meta["iteration"],
                      env_gradients=meta["env_gradients"], train_seconds=meta["train_seconds"],
                      # checkpoints written before CPU seconds and day-steps were counted
                      cpu_seconds=float(meta.get("cpu_seconds", 0.0)),
                      day_steps=int(meta.get("day_steps", 0)),
                      history=meta["history"], no_control_val=meta["no_control_val"])
