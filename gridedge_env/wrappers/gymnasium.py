"""Centralised single-agent Gymnasium view over the batched core (``B = 1``, numpy in and out).

One controller sees the global state and sets every agent's action at once:

* observation: :func:`gridedge_env.core.global_state` as ``float32``, shape ``(N * obs_dim + N,)``
  (every agent's local observation, agent-major, then the previous step's voltage at every agent's
  node as ``(v - 1) / 0.05``), in an unbounded ``Box`` (heat-pump temperatures and voltages have
  no hard bound);
* action: ``Box(-1, 1, (N,), float32)``, agent ``i``'s action at index ``i`` (the order of
  ``env.scenario.placement.names()``, as in the PettingZoo env); values outside are clipped
  by the core and counted in ``info["clipped_actions"]``;
* reward: the team reward. Under ``reward.kind == "team"`` (the default) every agent already gets
  the feeder total, which is returned once; under ``"local"`` the per-agent rewards are summed;
* ``terminated`` after the last step of the day (``T`` steps), never ``truncated``;
* ``info``: ``converged``, ``pf_iterations``, ``clipped_actions``, ``v_min_pu`` / ``v_max_pu``
  over the constrained nodes, ``cost_<name>`` summed over agents (GBP) and ``cost_total``.

``reset(seed=s)`` seeds ``self.np_random`` and draws the day from the configured split with it
(deterministic by ``s``; a later ``reset()`` without a seed continues the sequence);
``options={"day": d}`` picks day ``d`` of the profiles. Steps run under ``torch.no_grad``.

Importing this module registers ``gridedge/IEEE13-50-v0`` and ``gridedge/IEEE123-1000-v0`` with
Gymnasium (:func:`register_gymnasium`); keyword arguments of ``gymnasium.make`` are the overrides
of :func:`gridedge_env.registry.env_params`::

    import gymnasium
    import gridedge_env.wrappers.gymnasium  # noqa: F401  (registers the ids)

    env = gymnasium.make("gridedge/IEEE13-50-v0", observe_voltage=True)
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from ..core import EnvParams, global_state, reset, step
from ..registry import env_params

GYM_IDS = {
    "gridedge/IEEE13-50-v0": "ieee13-50-v0",
    "gridedge/IEEE123-1000-v0": "ieee123-1000-v0",
    "gridedge/IEEE13-50-v1": "ieee13-50-v1",
    "gridedge/IEEE123-1000-v1": "ieee123-1000-v1",
}
"""Gymnasium id -> :mod:`gridedge_env.registry` id."""


class GridEdgeCentralEnv(gymnasium.Env):
    """All ``N`` agents of one day as a single Gymnasium agent (see the module docstring)."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 4}

    def __init__(self, env: EnvParams, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.env, self.render_mode = env, render_mode
        n, d = env.n_agents, env.obs_dim
        self.agent_names: list[str] = env.scenario.placement.names()
        self.observation_space = spaces.Box(-np.inf, np.inf, (n * d + n,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        self._state = None
        self._last = None

    @property
    def n_agents(self) -> int:
        return self.env.n_agents

    def _global_obs(self) -> np.ndarray:
        """The global state ``(N * obs_dim + N,)`` float32 (a new array on every call)."""
        return global_state(self.env, self._state)[0].detach().cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a day; returns ``(obs (N * obs_dim + N,), {"day": int, "date": str})``."""
        super().reset(seed=seed)
        days = None
        if options and "day" in options:
            days = torch.tensor([int(options["day"])])
        day_seed = int(self.np_random.integers(2**31))
        with torch.no_grad():
            self._state, _ = reset(self.env, 1, seed=day_seed, days=days)
        self._last = None
        day = int(self._state.day[0])
        return self._global_obs(), {"day": day, "date": str(self.env.scenario.profiles.dates[day])}

    def _action(self, action) -> torch.Tensor:
        """``(N,)`` array-like -> ``(1, N)`` tensor in the core's dtype and device."""
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (self.n_agents,):
            raise ValueError(f"action must have shape ({self.n_agents},), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("action has NaN/inf entries")
        p = self.env
        return torch.as_tensor(arr[None], dtype=p.node_mask.dtype, device=p.agent_node.device)

    def step(self, action):
        """One step for every agent: ``action (N,)`` -> ``(obs, reward, terminated, False, info)``."""
        if self._state is None or bool(self._state.done[0]):
            raise RuntimeError("step() after the day ended (or before reset()): call reset()")
        with torch.no_grad():
            self._state, out = step(self.env, self._state, self._action(action))
        self._last = out
        rew = out.reward[0]
        team = self.env.config.reward.kind == "team"
        reward = float(rew[0] if team else rew.sum())
        mask = self.env.node_mask > 0
        v = out.info["v_pu"][0][mask]
        costs = {f"cost_{k}": float(c[0].sum()) for k, c in out.costs.items()}
        info = {"converged": bool(out.info["converged"][0]),
                "pf_iterations": int(out.info["pf_iterations"][0]),
                "clipped_actions": int(out.info["clipped_actions"][0]),
                "v_min_pu": float(v.min()), "v_max_pu": float(v.max()),
                **costs, "cost_total": float(sum(costs.values()))}
        terminated = bool(out.terminated[0])
        if self.render_mode == "human":
            self.render()
        return self._global_obs(), reward, terminated, False, info

    def render(self):
        """``rgb_array``: an ``(H, W, 3)`` uint8 feeder map of the last step; ``human``: a window."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode= to make")
            return None
        from .render import draw  # matplotlib only when rendering (import time)

        return draw(self.env, self._last, self.render_mode)

    def close(self):
        if self.render_mode == "human":
            import matplotlib.pyplot as plt  # matplotlib only when rendering

            plt.close("all")


def make_central_env(env_id: str, render_mode: str | None = None, **overrides) -> GridEdgeCentralEnv:
    """Build the centralised view of registered environment ``env_id`` (``"ieee13-50-v0"``);
    ``overrides`` (and ``device``/``dtype``) go to :func:`gridedge_env.registry.env_params`."""
    return GridEdgeCentralEnv(env_params(env_id, **overrides), render_mode=render_mode)


def register_gymnasium() -> None:
    """Register :data:`GYM_IDS` with Gymnasium (idempotent; run when this module is imported)."""
    for gym_id, env_id in GYM_IDS.items():
        if gym_id not in gymnasium.registry:
            gymnasium.register(id=gym_id, entry_point=make_central_env, kwargs={"env_id": env_id})


register_gymnasium()
