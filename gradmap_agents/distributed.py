"""Training across processes and GPUs: ``torchrun --nproc_per_node K gradmap-train ...``.

Data parallel over days (``docs/gradmap.md``, training across processes and GPUs). Every rank
builds the environment, draws the same batch of ``B`` training days from the same seeded
generator and rolls out its own contiguous block of them (:func:`shard`); the update all-reduces
what it needs, so that the result equals one process's up to the order of floating-point sums:
the environment gradient's Lagrangian, ``sum G^2`` of the RMS normalisation, every optimiser
step's parameter gradients, the dual step's constraint means and the metrics' sums and extremes.

Without a process group (one process, or ``WORLD_SIZE=1``) every helper here returns its input
or does nothing: no collective runs. The backend is ``gloo`` for CPU training and ``nccl`` for
CUDA (one GPU per rank, ``cuda:LOCAL_RANK``). torch.distributed is the field's maintained
library for this; nothing here replaces it, the helpers only name what the trainer reduces.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

import torch
import torch.distributed as dist

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Environment variables ``torchrun`` sets for every rank, read by :func:`init_from_env`."""


class LaunchError(RuntimeError):
    """A multi-process launch that cannot work (the message names the variable, the GPU count or
    the config key)."""


def init_from_env(device: str) -> int:
    """Join the process group ``torchrun`` describes in :data:`TORCHRUN_VARS`; returns the world
    size (1, and nothing joined, without ``WORLD_SIZE`` or with ``WORLD_SIZE=1``).

    ``device``: the run's device (``TrainConfig.device``): ``"cpu"`` uses ``gloo``; ``"cuda"``
    uses ``nccl`` and makes ``cuda:LOCAL_RANK`` the current device, so that every ``"cuda"``
    tensor of this rank lands on its own GPU. Raises :class:`LaunchError` naming the variable or
    the GPU count when the launch cannot work."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or active():
        return world_size()
    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise LaunchError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with "
                           f"torchrun --nproc_per_node {world} gradmap-train ...")
    if torch.device(device).type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise LaunchError(f"LOCAL_RANK={local} but this node has "
                               f"{torch.cuda.device_count()} GPUs: use --nproc_per_node <= "
                               f"{torch.cuda.device_count()}")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    else:
        dist.init_process_group("gloo")
    return world_size()


def close() -> None:
    """Leave the process group together (nothing without one): a barrier first, so that no rank
    tears its connections down while a peer still uses them (without it, 2 in 10 launches here
    ended with a rank aborting at exit; see ``docs/gradmap.md``, known issue)."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def finish(code: int) -> int:
    """Leave the process group (:func:`close`) and, if this process trained with others, end it
    at once with exit status ``code`` (``os._exit`` after flushing stdout and stderr); ``code``
    is returned in one process.

    Why not a normal exit: gloo's C++ worker threads can still hold tensors with Python
    references when the interpreter finalises, and releasing them then needs the GIL of an
    interpreter being torn down: std::terminate, SIGABRT (pytorch/pytorch PR 179291 describes
    the race). Here about 1 launch in 50 ended so, after the run's files were complete. Every
    file of the run is written and closed before this is called, so skipping the interpreter's
    finalisation loses nothing."""
    was_active = active()
    close()
    if not was_active:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def active() -> bool:
    """Whether this process trains with others (a process group of more than one rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def shard_bounds(n: int, rank: int, world: int) -> slice:
    """The contiguous block of ``n`` items (days) of ``rank`` among ``world``: sizes differ by at
    most one, the first ``n % world`` ranks taking one more; the blocks in rank order are
    ``range(n)``."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def shard(n: int) -> slice:
    """This rank's block of ``n`` items (:func:`shard_bounds`); ``slice(0, n)`` in one process."""
    return shard_bounds(n, rank(), world_size())


def check_shardable(n: int, what: str) -> None:
    """Raise :class:`LaunchError` naming ``what`` when ``n`` items leave a rank without one."""
    if n < world_size():
        raise LaunchError(f"{what}={n} is fewer than the {world_size()} processes of this run "
                         f"(torchrun --nproc_per_node): every process needs at least one day")


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of ``x`` over the ranks, in place (``x`` itself in one process)."""
    if active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_max(x: torch.Tensor) -> torch.Tensor:
    """The elementwise maximum of ``x`` over the ranks, in place (``x`` itself in one process)."""
    if active():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of all elements of ``x`` over every rank's ``x`` (0-d tensor): ``x.mean()`` in
    one process, else the all-reduced sum over the all-reduced count."""
    if not active():
        return x.mean()
    total = torch.stack([x.sum().to(torch.float64),
                         torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)])
    all_sum(total)
    return (total[0] / total[1]).to(x.dtype)


def all_sum_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum every parameter's ``.grad`` over the ranks (one all-reduce of the flattened
    gradients; a missing ``.grad`` counts as zeros and is created). Nothing in one process."""
    if not active():
        return
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = all_sum(torch.cat([p.grad.reshape(-1) for p in params]))
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p))


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (every rank gets the same answer, e.g. to stop
    together); ``flag`` itself in one process."""
    if not active():
        return flag
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")
    return bool(all_max(torch.tensor([float(flag)], device=dev)))
