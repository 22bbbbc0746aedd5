"""External cross-check: Stable-Baselines3 PPO with parameter sharing through the standard
PettingZoo route (SuperSuit's vectorisation, :func:`gridedge_env.wrappers.sb3.sb3_vec_env`).

One SB3 ``MlpPolicy`` acts for every agent of every day from its local observation (each
agent of each of ``days_per_rollout`` day copies is one sub-environment). Rewards are the
environment's ``"team"`` reward scaled by ``1 / N``, i.e. minus the feeder's mean cost plus
violation penalty per agent, the same for every agent; SB3's ``VecNormalize`` normalises
observations and rewards, as its documentation recommends for PPO. Our own IPPO
(:mod:`.ppo`) is the same algorithm family on the batched core; this run is there to show that
it is not an artefact of our implementation. It reports the same history keys as the other
learning methods (validation every ``eval_every`` rollouts, on the deterministic policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gradmap_agents.evaluate import evaluate
from gridedge_env.config import check_fields


@dataclass(frozen=True)
class SB3Config:
    days_per_rollout: int = 32
    """Day copies stepped together (``n_steps`` = one day each)."""
    iterations: int = 100
    """PPO rollouts and updates."""
    epochs: int = 5
    minibatches: int = 4
    lr: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    voltage_weight_gbp_per_pu: float = 1e4
    line_weight_gbp: float = 1e3
    eval_every: int = 10
    seed: int = 0

    def __post_init__(self):
        check_fields(self, "sb3-ippo: ", at_least_one=(
            "days_per_rollout", "iterations", "epochs", "minibatches", "eval_every"))


class SB3Policy:
    """A trained SB3 model (and its ``VecNormalize``) as a rollout policy: observations
    ``(B, N, F)`` -> deterministic actions ``(B, N)``."""

    def __init__(self, model, vecnorm):
        self.model, self.vecnorm = model, vecnorm

    def __call__(self, obs, t=None, state=None):
        x = self.vecnorm.normalize_obs(obs.reshape(-1, obs.shape[-1]).float().cpu().numpy())
        a, _ = self.model.predict(x.astype(np.float32), deterministic=True)
        return torch.as_tensor(a, dtype=obs.dtype, device=obs.device).reshape(obs.shape[:-1])

    @classmethod
    def load(cls, model_zip, obs_norm_json) -> SB3Policy:
        """A saved run's policy: SB3's ``model.zip`` and the observation statistics written by
        :func:`baselines.resim.save_obs_norm`."""
        import json
        from pathlib import Path

        from stable_baselines3 import PPO

        return cls(PPO.load(model_zip, device="cpu"),
                   ObsNorm(**json.loads(Path(obs_norm_json).read_text())))


class ObsNorm:
    """``VecNormalize.normalize_obs`` from saved statistics (per feature ``mean``, ``var``)."""

    def __init__(self, mean, var, clip_obs: float, epsilon: float):
        self.mean, self.var = np.asarray(mean), np.asarray(var)
        self.clip_obs, self.epsilon = clip_obs, epsilon

    def normalize_obs(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs,
                       self.clip_obs)


def train_sb3(env, env_id: str, cfg: SB3Config, *, progress_fn: Callable[[dict], None] | None = None,
              should_stop: Callable[[float], bool] | None = None):
    """Train; returns ``(policy, history, train_seconds, env_steps)`` (``env_steps``: day-steps,
    as MAPPO/IPPO count them). ``should_stop(train_seconds)`` ends the run after a rollout."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    from gridedge_env.wrappers.sb3 import sb3_vec_env

    n = env.n_agents
    reward = {"kind": "team", "scale": 1.0 / n, "voltage_weight_gbp_per_pu": cfg.voltage_weight_gbp_per_pu,
              "line_weight_gbp": cfg.line_weight_gbp}
    vec = VecNormalize(sb3_vec_env(env_id, cfg.days_per_rollout, seed=cfg.seed, reward=reward),
                       gamma=cfg.gamma)
    batch = env.n_steps * cfg.days_per_rollout * n
    model = PPO("MlpPolicy", vec, n_steps=env.n_steps, batch_size=batch // cfg.minibatches,
                n_epochs=cfg.epochs, learning_rate=cfg.lr, gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda, clip_range=cfg.clip, seed=cfg.seed, device="cpu",
                verbose=0)
    policy = SB3Policy(model, vec)
    history: list = []
    clock = {"train": 0.0, "since": time.perf_counter(), "rollouts": 0}

    class Hook(BaseCallback):
        """Validation every ``eval_every`` rollouts (its time excluded from the training
        time); stops ``learn`` at the next step once ``should_stop`` says so."""

        stop = False

        def _on_step(self) -> bool:
            return not self.stop

        def _on_rollout_end(self) -> None:
            clock["train"] += time.perf_counter() - clock["since"]
            clock["rollouts"] += 1
            k = clock["rollouts"]
            rec = {"iteration": k, "train/env_gradients": 0,
                   "train/env_steps": self.model.num_timesteps // n,
                   "train/wall_seconds": clock["train"]}
            if k % cfg.eval_every == 0 or k == cfg.iterations:
                vec.training = False
                val, _ = evaluate(env, policy, env.scenario.split.validation)
                vec.training = True
                rec.update({f"val/{key}": v for key, v in val.items()})
                history.append(rec)
            if progress_fn is not None:
                progress_fn(rec)
            self.stop = should_stop is not None and should_stop(clock["train"])
            clock["since"] = time.perf_counter()

    model.learn(total_timesteps=cfg.iterations * batch, callback=Hook())
    vec.training = False
    return policy, history, clock["train"], model.num_timesteps // n
