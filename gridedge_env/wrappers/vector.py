"""``VecEnv``: the batched core with its state held, for RL rollouts and GradMAP.

A thin stateful shell over :func:`gridedge_env.core.reset` / :func:`~gridedge_env.core.step`:
tensors stay on the core's device, actions ``(num_envs, n_agents)``. With ``grad=False`` (the
default for RL rollouts) steps run under ``torch.no_grad``; GradMAP passes ``grad=True`` and
backpropagates through a whole day.

``step`` checks its actions at the boundary: a ``torch.Tensor`` or a numpy array of real numbers
(floating or integer) of shape ``(num_envs, n_agents)``. Numpy arrays are copied onto the env's
device; both are cast to the env's dtype (``.to``: differentiable, so GradMAP's leaves may be
float32). Anything else is a ``TypeError`` (other types, bool or complex) or a ``ValueError``
(shape, a tensor on another device) naming what was expected and what was given.
"""

from __future__ import annotations

import numpy as np
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

    @property
    def dtype(self) -> torch.dtype:
        return self.env.node_mask.dtype

    @property
    def device(self) -> torch.device:
        return self.env.node_mask.device

    def _actions(self, actions) -> torch.Tensor:
        """``actions`` as a ``(num_envs, n_agents)`` tensor of the env's dtype on its device."""
        want = f"(num_envs, n_agents) = ({self.num_envs}, {self.n_agents})"
        if isinstance(actions, np.ndarray):
            if actions.dtype.kind not in "fiu":
                raise TypeError(f"actions must be real numbers {want} ({self.dtype}), got a "
                                f"numpy array of dtype {actions.dtype}")
            actions = torch.as_tensor(actions, device=self.device)
        elif not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor or numpy array of shape {want}, "
                            f"got {type(actions).__name__}")
        if actions.dtype == torch.bool or actions.is_complex():
            raise TypeError(f"actions must be real numbers {want} ({self.dtype}), got dtype "
                            f"{actions.dtype}")
        shape = tuple(actions.shape)
        if shape != (self.num_envs, self.n_agents):
            what = []
            if len(shape) != 2:
                what.append(f"{len(shape)} dimensions, not 2")
            else:
                if shape[0] != self.num_envs:
                    what.append(f"{shape[0]} days, not num_envs={self.num_envs}")
                if shape[1] != self.n_agents:
                    what.append(f"{shape[1]} agents, not n_agents={self.n_agents}")
            raise ValueError(f"actions must have shape {want}, got {shape} ({'; '.join(what)})")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device}, the env on {self.device}: move "
                             f"them with .to({str(self.device)!r})")
        return actions.to(self.dtype)

    def step(self, actions, grad: bool = False) -> StepOut:
        """One step of every day; ``actions``: ``(num_envs, n_agents)`` tensor or numpy array in
        ``[-1, 1]`` (checked and cast to the env's dtype, see the module docstring)."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        actions = self._actions(actions)
        with torch.set_grad_enabled(grad):
            self.state, out = step(self.env, self.state, actions)
        return out

    def global_state(self) -> torch.Tensor:
        return global_state(self.env, self.state)
