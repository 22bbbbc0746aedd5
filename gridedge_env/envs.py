"""The two ways in: :func:`make` (a PettingZoo ``ParallelEnv``, one day per episode) and
:func:`make_vec` (the batched core over parallel days), for any registered environment id
(:mod:`.registry`)."""

from __future__ import annotations

import torch

from .registry import env_params
from .wrappers.parallel import GridEdgeParallelEnv
from .wrappers.vector import VecEnv


def make(env_id: str, render_mode: str | None = None, **overrides):
    """A PettingZoo ``ParallelEnv`` (one day at a time) for a registered environment."""
    return GridEdgeParallelEnv(env_params(env_id, **overrides), render_mode=render_mode)


def make_vec(env_id: str, num_envs: int, device="cpu", dtype=torch.float64, **overrides):
    """The batched core over ``num_envs`` parallel days (:class:`~.wrappers.vector.VecEnv`)."""
    return VecEnv(env_params(env_id, device=device, dtype=dtype, **overrides), num_envs)
