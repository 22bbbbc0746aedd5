"""TorchRL ``EnvBase`` over the batched core: ``B`` days at once, one ``"agents"`` group.

Keys (``B = num_envs``, ``N`` agents, ``S = N * obs_dim + N``), the layout of TorchRL's
multi-agent environments (VMAS, PettingZoo):

* ``("agents", "observation")``: ``(B, N, obs_dim)`` local observations (:mod:`gridedge_env.core`);
* ``"state"``: ``(B, S)`` the global state for centralised critics
  (:func:`gridedge_env.core.global_state`); ``"converged"``: ``(B, 1)`` bool, the power flow of
  the last step converged (``True`` after a reset);
* ``("agents", "action")``: ``(B, N, 1)`` in ``[-1, 1]`` (outside: clipped by the core);
* ``("agents", "reward")``: ``(B, N, 1)`` per-agent rewards;
* ``"done"`` / ``"terminated"`` / ``"truncated"``: ``(B, 1)`` bool, done after the ``T``-th step
  of the day (never truncated).

Observations, state and rewards are in ``dtype`` (``float32`` by default); the core itself keeps
the dtype of its :class:`~gridedge_env.core.EnvParams` (float64 by default) and runs under
``torch.no_grad``. ``set_seed(s)`` seeds the draw of days from the configured split; a reset
whose input holds ``"day"`` ``(B,)`` starts those days; ``"_reset"`` ``(B, 1)`` resets only the
marked days (the others keep their state).

Needs ``pip install torchrl`` (which brings ``tensordict``); this module imports it, and nothing
else in :mod:`gridedge_env` imports this module.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from tensordict import TensorDict, TensorDictBase
    from torchrl.data import Bounded, Categorical, Composite, Unbounded
    from torchrl.envs import EnvBase
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("gridedge_env.wrappers.torchrl needs TorchRL: pip install 'torchrl>=0.14'") from exc

from ..core import EnvParams, EnvState, global_state, observe, reset, step
from ..registry import env_params


class GridEdgeTorchRLEnv(EnvBase):
    """``num_envs`` parallel days of one environment as a TorchRL multi-agent env (see module)."""

    batch_locked = True

    def __init__(self, env: EnvParams, num_envs: int = 1, *, seed: int | None = None,
                 dtype: torch.dtype = torch.float32, group: str = "agents"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        super().__init__(device=env.agent_node.device, batch_size=torch.Size([num_envs]))
        self.env, self.group, self.out_dtype = env, group, dtype
        self.agent_names: list[str] = env.scenario.placement.names()
        self._state: EnvState | None = None
        self._rng = np.random.default_rng(seed)
        self._make_specs()

    @property
    def n_agents(self) -> int:
        return self.env.n_agents

    def _make_specs(self) -> None:
        b, n, d, dev = self.batch_size[0], self.n_agents, self.env.obs_dim, self.device
        dt, g = self.out_dtype, self.group
        self.observation_spec = Composite(
            {g: Composite({"observation": Unbounded((b, n, d), dtype=dt, device=dev)}, shape=(b, n)),
             "state": Unbounded((b, n * d + n), dtype=dt, device=dev),
             "converged": Categorical(2, (b, 1), dtype=torch.bool, device=dev)},
            shape=(b,), device=dev)
        self.action_spec = Composite(
            {g: Composite({"action": Bounded(-1.0, 1.0, (b, n, 1), dtype=dt, device=dev)},
                          shape=(b, n))}, shape=(b,), device=dev)
        self.reward_spec = Composite(
            {g: Composite({"reward": Unbounded((b, n, 1), dtype=dt, device=dev)}, shape=(b, n))},
            shape=(b,), device=dev)
        self.done_spec = Composite(
            {k: Categorical(2, (b, 1), dtype=torch.bool, device=dev)
             for k in ("done", "terminated", "truncated")}, shape=(b,), device=dev)

    def _output(self, state: EnvState, obs: torch.Tensor, converged: torch.Tensor,
                reward: torch.Tensor | None = None, truncated: torch.Tensor | None = None) -> TensorDict:
        """The reset/step output: ``obs (B, N, obs_dim)``, ``converged (B,)``, ``reward (B, N)``."""
        b, n, dt = self.batch_size[0], self.n_agents, self.out_dtype
        group = {"observation": obs.to(dt)}
        if reward is not None:
            group["reward"] = reward.unsqueeze(-1).to(dt)
        done = state.done.reshape(b, 1)
        trunc = torch.zeros_like(done) if truncated is None else truncated.reshape(b, 1)
        return TensorDict(
            {self.group: TensorDict(group, batch_size=(b, n), device=self.device),
             "state": global_state(self.env, state).to(dt),
             "converged": converged.reshape(b, 1).to(torch.bool),
             "done": done | trunc, "terminated": done.clone(), "truncated": trunc},
            batch_size=self.batch_size, device=self.device)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        b = self.batch_size[0]
        days = None
        if tensordict is not None and "day" in tensordict.keys():
            days = tensordict.get("day").reshape(b).to(torch.long)
        mask = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(b).to(self.device)
        with torch.no_grad():
            fresh, _ = reset(self.env, b, seed=int(self._rng.integers(2**31)), days=days)
            if self._state is not None and mask is not None and not bool(mask.all()):
                fresh = _where(mask, fresh, self._state)
            self._state = fresh
            return self._output(fresh, observe(self.env, fresh),
                                torch.ones(b, dtype=torch.bool, device=self.device))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        b, n = self.batch_size[0], self.n_agents
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        action = tensordict.get((self.group, "action")).reshape(b, n)
        action = action.to(device=self.device, dtype=self.env.node_mask.dtype)
        with torch.no_grad():
            self._state, out = step(self.env, self._state, action)
            return self._output(self._state, out.obs, out.info["converged"], out.reward, out.truncated)

    def _set_seed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)


def _where(mask: torch.Tensor, new, old):
    """Per day ``mask (B,)``: ``new`` where set, else ``old``, through (named) tuples of
    tensors whose first dimension is ``B``."""
    if isinstance(new, torch.Tensor):
        return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)
    merged = [_where(mask, a, b) for a, b in zip(new, old, strict=True)]
    return type(new)(*merged) if hasattr(new, "_fields") else type(new)(merged)


def make_torchrl_env(env_id: str, num_envs: int = 1, *, seed: int | None = None,
                     dtype: torch.dtype = torch.float32, device="cpu", **overrides) -> GridEdgeTorchRLEnv:
    """:class:`GridEdgeTorchRLEnv` over ``num_envs`` days of registered environment ``env_id``;
    ``overrides`` as in :func:`gridedge_env.registry.env_params` (the core stays float64)."""
    return GridEdgeTorchRLEnv(env_params(env_id, device=device, **overrides), num_envs, seed=seed,
                              dtype=dtype)
