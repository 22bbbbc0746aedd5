"""PettingZoo ``ParallelEnv`` over the batched core (one day at a time, numpy in and out).

Agents are named ``<kind>_<index>`` (``battery_0``, ``heatpump_17``, ``generator_3``); each
observes a ``Box(obs_dim,)`` (float32, see :mod:`gridedge_env.core`) and acts with a
``Box(-1, 1, (1,))``. An episode is one day (``T`` steps); after the last step every agent is
terminated and ``agents`` is empty. ``reset(seed=s)`` draws the day from the configured split by
``s``; ``options={"day": d}`` picks day ``d`` of the profiles.

Bad input raises: an unknown or missing agent, an action of the wrong shape, NaN/inf, or a step
after the day ended. Out-of-range actions are clipped to ``[-1, 1]`` and counted in every agent's
``info["clipped_actions"]`` (the step's total).

Every agent's info holds numbers only, under the same keys after ``reset`` and after ``step``
(``day``, ``converged``, ``clipped_actions``, ``v_min_pu``, ``v_max_pu``, ``cost_<name>``), so
array-based wrappers (TorchRL's ``PettingZooWrapper``) can build a fixed spec from the reset info.
The calendar date of the day is ``env.date`` (ISO string), not an info entry.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from ..core import EnvParams, device_step, global_state, reset, step


class GridEdgeParallelEnv(ParallelEnv):
    metadata = {"name": "gridedge_v0", "render_modes": ["human", "rgb_array"],
                "is_parallelizable": True, "render_fps": 4}

    def __init__(self, env: EnvParams, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.env, self.render_mode = env, render_mode
        self.possible_agents = env.scenario.placement.names()
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents: list[str] = []
        self._state = None
        self._last = None
        self._rng = np.random.default_rng()
        self._cost_names: tuple[str, ...] | None = None
        self._obs_spaces = {a: spaces.Box(-np.inf, np.inf, (env.obs_dim,), np.float32)
                            for a in self.possible_agents}
        self._act_spaces = {a: spaces.Box(-1.0, 1.0, (1,), np.float32) for a in self.possible_agents}
        n = env.n_agents
        self.state_space = spaces.Box(-np.inf, np.inf, (n * env.obs_dim + n,), np.float32)

    # spaces are built once per agent and cached (PettingZoo asks for them a lot)
    def observation_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._act_spaces[agent]

    def _check_agent(self, agent: str) -> None:
        if agent not in self._index:
            raise KeyError(f"unknown agent {agent!r} (agents are like {self.possible_agents[0]!r})")

    def _obs(self, obs: torch.Tensor) -> dict:
        arr = np.ascontiguousarray(obs[0].detach().cpu().numpy(), dtype=np.float32)
        return {a: arr[i] for i, a in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        days = None
        if options and "day" in options:
            days = torch.tensor([int(options["day"])])
        day_seed = int(self._rng.integers(2**31))
        self._state, obs = reset(self.env, 1, seed=day_seed, days=days)
        self.agents = list(self.possible_agents)
        self._last = None
        if self._cost_names is None:  # once: the cost channels the core reports
            with torch.no_grad():
                zero = torch.zeros(1, self.env.n_agents, dtype=self.env.node_mask.dtype,
                                   device=self.env.agent_node.device)
                self._cost_names = tuple(device_step(self.env, self._state, zero).cost_parts)
        # the step's keys with their values before any step: nothing solved, clipped or paid yet
        info = {"day": self._day(), "converged": True, "clipped_actions": 0,
                **self._v_range(self._state.v_pu[0]),
                **{f"cost_{k}": 0.0 for k in self._cost_names}}
        return self._obs(obs), {a: dict(info) for a in self.agents}

    def _day(self) -> int:
        return int(self._state.day[0])

    @property
    def date(self) -> str | None:
        """ISO date (``YYYY-MM-DD``) of the current day; None before the first ``reset``."""
        if self._state is None:
            return None
        return str(self.env.scenario.profiles.dates[self._day()])

    def _v_range(self, v_pu: torch.Tensor) -> dict:
        v = v_pu[self.env.node_mask > 0]
        return {"v_min_pu": float(v.min()), "v_max_pu": float(v.max())}

    def _actions(self, actions: dict) -> torch.Tensor:
        unknown = set(actions) - set(self._index)
        if unknown:
            raise KeyError(f"actions for unknown agents {sorted(unknown)[:5]}")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise KeyError(f"no action for {len(missing)} agents, e.g. {missing[:5]}")
        out = np.zeros(self.env.n_agents)
        for a, act in actions.items():  # dict -> array: the adapter boundary, not a hot path
            arr = np.asarray(act, dtype=np.float64).reshape(-1)
            if arr.shape != (1,):
                raise ValueError(f"action of {a} must have shape (1,), got {np.shape(act)}")
            if not np.isfinite(arr[0]):
                raise ValueError(f"action of {a} is {arr[0]}")
            out[self._index[a]] = arr[0]
        p = self.env.agent_node
        return torch.as_tensor(out[None], dtype=self.env.node_mask.dtype, device=p.device)

    def step(self, actions: dict):
        if self._state is None or not self.agents:
            raise RuntimeError("step() after the day ended (or before reset()): call reset()")
        self._state, out = step(self.env, self._state, self._actions(actions))
        self._last = out
        obs = self._obs(out.obs)
        rew = out.reward[0].detach().cpu().numpy()
        costs = {k: v[0].detach().cpu().numpy() for k, v in out.costs.items()}
        done = bool(out.terminated[0])
        shared = {"day": self._day(), "converged": bool(out.info["converged"][0]),
                  "clipped_actions": int(out.info["clipped_actions"][0]),
                  **self._v_range(out.info["v_pu"][0])}
        infos = {a: {**shared, **{f"cost_{k}": float(c[i]) for k, c in costs.items()}}
                 for i, a in enumerate(self.possible_agents)}
        rewards = {a: float(rew[i]) for i, a in enumerate(self.possible_agents)}
        terms = dict.fromkeys(self.possible_agents, done)
        truncs = dict.fromkeys(self.possible_agents, False)
        if done:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("call reset() before state()")
        return global_state(self.env, self._state)[0].detach().cpu().numpy().astype(np.float32)

    def render(self):
        if self.render_mode is None:
            return None
        from .render import draw  # matplotlib only when rendering (import time)

        return draw(self.env, self._last, self.render_mode)

    def close(self):
        if self.render_mode == "human":
            import matplotlib.pyplot as plt  # why: optional, heavy; only in human mode

            plt.close("all")
