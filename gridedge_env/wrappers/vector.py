"""``VecEnv``: the batched core with its state held, for RL rollouts and GradMAP.

A thin stateful shell over :func:`gridedge_env.core.reset` / :func:`~gridedge_env.core.step`:
tensors stay on the core's device, actions ``(num_envs, n_agents)``. With ``grad=False`` (the
default for RL rollouts) steps run under ``torch.no_grad``; GradMAP passes ``grad=True`` and
backpropagates through a whole day.
"""

from __future__ import annotations

import torch

from ..core import EnvParams, StepOut, global_state, reset, step


class VecEnv:
    def __init__(self, env: EnvParams, num_envs: int):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env, self.num_envs = env, num_envs
        self.state = None

    @property
    def n_agents(self) -> int:
        return self.env.n_agents

    def reset(self, seed: int | None = None, days=None) -> torch.Tensor:
        """Start ``num_envs`` days; returns observations ``(num_envs, N, obs_dim)``."""
        self.state, obs = reset(self.env, self.num_envs, seed=seed, days=days)
        return obs

    def step(self, actions: torch.Tensor, grad: bool = False) -> StepOut:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        with torch.set_grad_enabled(grad):
            self.state, out = step(self.env, self.state, actions)
        return out

    def global_state(self) -> torch.Tensor:
        return global_state(self.env, self.state)
