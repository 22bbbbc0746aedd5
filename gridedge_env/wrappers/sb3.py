"""Stable-Baselines3 with parameter sharing, through SuperSuit's PettingZoo vectorisation.

Every agent of every day is one sub-environment of an SB3 ``VecEnv``, so one policy (``PPO(
"MlpPolicy", ...)``) acts for all agents from their local observations:

* ``observations``: ``(num_envs, obs_dim)`` float32 with ``num_envs = num_vec_envs * N``
  (copy ``j``'s agent ``i`` at row ``j * N + i``);
* ``actions``: ``(num_envs, 1)`` in ``[-1, 1]``; ``rewards``: ``(num_envs,)`` float32, each
  agent's own reward (the feeder total for every agent under the default ``"team"`` reward);
* ``dones``: all ``True`` after the last step of a day, when every copy resets itself (the last
  observation is in ``infos[k]["terminal_observation"]``).

This is SuperSuit's ``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1(...,
base_class="stable_baselines3")`` with two differences. Each copy is built by a fresh
:func:`gridedge_env.make` instead of ``cloudpickle``-copying one env. And SB3's
``VecEnv.seed`` works (SuperSuit's wrapper forwards it to a Gymnasium ``VectorEnv``, which has no
``seed``, so ``PPO(..., seed=s)`` would raise): as in SB3 the seed applies at the next ``reset``,
copy ``j`` gets ``seed + j``. The copies step in this process: SuperSuit's worker processes
(``num_cpus > 1``) are forked and hang in torch's OpenMP pool once the parent has used it.

Needs ``pip install supersuit`` (and ``stable-baselines3``); both are imported lazily.
"""

from __future__ import annotations

import functools

from ..registry import env_params
from .parallel import GridEdgeParallelEnv


def _import_supersuit():
    try:
        import supersuit  # noqa: F401
        from supersuit.vector import ConcatVecEnv  # optional dependency (gridedge[rl])
        from supersuit.vector.sb3_vector_wrapper import SB3VecEnvWrapper  # optional dependency (gridedge[rl])
    except ImportError as exc:
        raise ImportError("gridedge_env.wrappers.sb3 needs SuperSuit and Stable-Baselines3: "
                          "pip install 'supersuit>=3.11' 'stable-baselines3>=2.3'") from exc
    return ConcatVecEnv, SB3VecEnvWrapper


class _MakeMarkovEnv:
    """Factory: a fresh ParallelEnv as a SuperSuit ``MarkovVectorEnv`` (one row per agent)."""

    def __init__(self, env_id: str, overrides: dict):
        self.env_id, self.overrides = env_id, overrides

    def __call__(self):
        from supersuit import pettingzoo_env_to_vec_env_v1  # optional dependency (gridedge[rl])

        return pettingzoo_env_to_vec_env_v1(
            GridEdgeParallelEnv(env_params(self.env_id, **self.overrides)))


@functools.cache
def _sb3_wrapper_class():
    """SuperSuit's ``SB3VecEnvWrapper`` with SB3's ``seed`` semantics (built on first use)."""
    _, wrapper = _import_supersuit()

    class GridEdgeSB3VecEnv(wrapper):
        """SB3 ``VecEnv`` over SuperSuit's ``ConcatVecEnv``; ``seed(s)`` applies at the next reset."""

        _pending_seed: int | None = None

        def seed(self, seed: int | None = None):
            self._pending_seed = seed
            return [None if seed is None else seed + i for i in range(self.num_envs)]

        def reset(self, seed=None, options=None):
            """Reset every copy; returns observations ``(num_envs, obs_dim)``."""
            if seed is not None:
                self._pending_seed = seed
            seed, self._pending_seed = self._pending_seed, None
            observations, self.reset_infos = self.venv.reset(seed=seed, options=options)
            return observations

    return GridEdgeSB3VecEnv


def sb3_vec_env(env_id: str, num_vec_envs: int = 1, seed: int | None = None, **overrides):
    """An SB3 ``VecEnv`` over ``num_vec_envs`` copies (days) of registered environment ``env_id``,
    one sub-environment per agent: ``num_envs = num_vec_envs * N``, observations
    ``(num_envs, obs_dim)``, actions ``(num_envs, 1)``.

    ``seed`` seeds the first ``reset`` (copy ``j``: ``seed + j``; ``PPO(seed=...)`` reseeds it);
    ``overrides`` as in :func:`gridedge_env.make` (``split="test"``,
    ``reward={"scale": 0.01}``, ...).
    """
    if num_vec_envs < 1:
        raise ValueError(f"num_vec_envs must be >= 1, got {num_vec_envs}")
    concat, _ = _import_supersuit()
    fns = [_MakeMarkovEnv(env_id, dict(overrides))] * num_vec_envs
    vec = _sb3_wrapper_class()(concat(fns))
    if seed is not None:
        vec.seed(seed)
    return vec
