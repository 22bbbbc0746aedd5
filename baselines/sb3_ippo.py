"""External cross-check: Stable-Baselines3 PPO with parameter sharing through the standard
PettingZoo route (SuperSuit's vectorisation, :func:`gridedge_env.wrappers.sb3.sb3_vec_env`).

One SB3 ``MlpPolicy`` acts for every agent of every day from its local observation (each
agent of each of ``days_per_rollout`` day copies is one sub-environment). Rewards are the
environment's ``"team"`` reward scaled by ``1 / N``, i.e. minus the feeder's mean cost plus
violation penalty per agent, the same for every agent; SB3's ``VecNormalize`` normalises
observations and rewards, as its documentation recommends for PPO. Our own IPPO
(:mod:`.ppo`) is the same algorithm family on the batched core; this run is there to show that
it is not an artefact of our implementation. It reports the same history keys as the other
learning methods (validation every ``eval_every`` rollouts, on the deterministic policy, with
the budget counters of :func:`gradmap_agents.train.counters`).

**Normalisation** (:func:`normalise_from_days`). ``VecNormalize``'s observation statistics
start from the no-control rollouts of :func:`gradmap_agents.train.normalisation_days`, as the
other learners' normalisation does (pooled over agents: one network acts for all). The policy
keeps SB3's own initialisation (mean action 0): one network for every agent, whose observations
do not name its device kind, cannot start each agent at its own no-control action (measured in
``docs/baselines.md``).

A trained policy is kept without pickle: the network's weights as safetensors and its
architecture as JSON (:meth:`SB3Policy.save`, :meth:`SB3Policy.load`), never SB3's ``model.zip``
(whose loading unpickles, so a crafted file would run code).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from safetensors.torch import load_file, save_file

from gradmap_agents.checkpoint import atomic_write
from gradmap_agents.evaluate import evaluate
from gradmap_agents.train import counters, normalisation_days
from gridedge_env.config import check_fields
from gridedge_env.rollout import no_control
from gridedge_env.wrappers.sb3 import sb3_vec_env

POLICY_WEIGHTS = "policy.safetensors"
"""A run's SB3 policy network weights (``model.policy.state_dict()``)."""
POLICY_SPEC = "sb3_policy.json"
"""What rebuilds that network without pickle (:func:`policy_spec`)."""
SPEC_FORMAT = 1
POLICY_CLASSES = ("ActorCriticPolicy",)
"""SB3 policy classes rebuilt from a spec (``"MlpPolicy"`` is ``ActorCriticPolicy``)."""
EXTRACTORS = ("FlattenExtractor",)
ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class SB3Config:
    days_per_rollout: int = 32
    """Day copies stepped together (``n_steps`` = one day each)."""
    iterations: int = 100
    """PPO rollouts and updates (a cap: a wall-time budget, ``should_stop``, may end the run
    first; SB3's learning rate and clip range are constant, so nothing else depends on it)."""
    epochs: int = 5
    minibatches: int = 4
    lr: float = 1e-3
    gamma: float = 0.99
    """Discount per half-hour step: 0.99 or 1.0 (SB3 ends the day's episode at its last
    step: no bootstrap past it)."""
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
    """A trained SB3 policy network (``model.policy``, an ``ActorCriticPolicy``) and its
    ``VecNormalize`` as a rollout policy: observations ``(B, N, F)`` -> deterministic actions
    ``(B, N)``. ``spec``: what :meth:`load` rebuilds the network from (:func:`policy_spec`)."""

    def __init__(self, net, vecnorm, spec: dict | None = None):
        self.net, self.vecnorm, self.spec = net, vecnorm, spec

    def __call__(self, obs, t=None, state=None):
        x = self.vecnorm.normalize_obs(obs.reshape(-1, obs.shape[-1]).float().cpu().numpy())
        a, _ = self.net.predict(x.astype(np.float32), deterministic=True)
        return torch.as_tensor(a, dtype=obs.dtype, device=obs.device).reshape(obs.shape[:-1])

    def save(self, run_dir: Path) -> None:
        """The network's weights in ``policy.safetensors`` and its :func:`policy_spec` in
        ``sb3_policy.json`` (SB3's own ``save`` pickles, and loading a pickle runs code). The
        observation statistics go separately (:func:`baselines.resim.save_obs_norm`)."""
        if self.spec is None:
            raise ValueError("SB3Policy.save: no policy spec (build it with policy_spec)")
        run_dir = Path(run_dir)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        atomic_write(run_dir / POLICY_WEIGHTS, lambda tmp: save_file(tensors, tmp))
        text = json.dumps(self.spec, indent=1, allow_nan=False)
        atomic_write(run_dir / POLICY_SPEC, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, weights, spec_json, obs_norm_json) -> SB3Policy:
        """A saved run's policy from ``policy.safetensors``, ``sb3_policy.json`` and the
        observation statistics written by :func:`baselines.resim.save_obs_norm`; nothing of it
        is unpickled."""
        spec = json.loads(Path(spec_json).read_text())
        net = build_policy_net(spec, where=str(spec_json))
        net.load_state_dict(load_file(weights, device="cpu"), strict=True)
        net.set_training_mode(False)
        return cls(net, ObsNorm(**json.loads(Path(obs_norm_json).read_text())), spec)


def policy_spec(net, cfg: SB3Config) -> dict:
    """What rebuilds ``net`` (an SB3 ``ActorCriticPolicy``) without pickle: the policy class,
    the observation and action spaces (shapes, bounds, dtypes), its constructor arguments
    (``net_arch``, activation by name, ...) and the :class:`SB3Config` that trained it."""
    params = net._get_constructor_parameters()  # what SB3's own save stores (pickled there)
    extractor = params["features_extractor_class"].__name__
    activation = params["activation_fn"].__name__
    if type(net).__name__ not in POLICY_CLASSES or extractor not in EXTRACTORS or \
            activation not in ACTIVATIONS or params["features_extractor_kwargs"]:
        raise ValueError(f"sb3-ippo: cannot save a {type(net).__name__} with {extractor}"
                         f"({params['features_extractor_kwargs']}) and {activation} without pickle")
    return {"format": SPEC_FORMAT, "policy_class": type(net).__name__,
            "observation_space": _box_json(params["observation_space"]),
            "action_space": _box_json(params["action_space"]),
            "net_arch": params["net_arch"], "activation_fn": activation,
            "features_extractor_class": extractor,
            "share_features_extractor": bool(net.share_features_extractor),
            **{k: params[k] for k in ("ortho_init", "use_sde", "log_std_init", "full_std",
                                      "use_expln", "squash_output", "normalize_images")},
            "sb3_config": dataclasses.asdict(cfg)}


def build_policy_net(spec: dict, where: str = "sb3_policy.json"):
    """An SB3 ``ActorCriticPolicy`` of the architecture ``spec`` (:func:`policy_spec`) on the
    CPU, with fresh weights. Only the allow-listed classes are looked up by name."""
    from stable_baselines3.common import policies, torch_layers  # optional (gridedge[rl])

    if spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{where}: format {spec.get('format')!r}, expected {SPEC_FORMAT}")
    names = (spec["policy_class"], spec["features_extractor_class"], spec["activation_fn"])
    if names[0] not in POLICY_CLASSES or names[1] not in EXTRACTORS or names[2] not in ACTIVATIONS:
        raise ValueError(f"{where}: unsupported policy {names} (supported: {POLICY_CLASSES}, "
                         f"{EXTRACTORS}, {ACTIVATIONS})")
    return getattr(policies, names[0])(
        _box(spec["observation_space"]), _box(spec["action_space"]), lambda _: 0.0,
        net_arch=spec["net_arch"], activation_fn=getattr(torch.nn, names[2]),
        features_extractor_class=getattr(torch_layers, names[1]),
        share_features_extractor=spec["share_features_extractor"],
        **{k: spec[k] for k in ("ortho_init", "use_sde", "log_std_init", "full_std", "use_expln",
                                "squash_output", "normalize_images")}).to("cpu")


def _box_json(box) -> dict:
    """A ``gymnasium.spaces.Box`` as JSON (infinite bounds as ``"inf"``/``"-inf"``)."""
    def floats(a):
        return [float(v) if np.isfinite(v) else str(float(v)) for v in np.asarray(a).reshape(-1)]

    if not isinstance(box, spaces.Box):
        raise ValueError(f"sb3-ippo: cannot save a {type(box).__name__} space without pickle")
    return {"shape": list(box.shape), "dtype": np.dtype(box.dtype).name, "low": floats(box.low),
            "high": floats(box.high)}


def _box(d: dict) -> spaces.Box:
    if d["dtype"] not in DTYPES:
        raise ValueError(f"sb3_policy.json: space dtype {d['dtype']!r}, expected one of {DTYPES}")
    dtype = np.dtype(d["dtype"])
    shape = tuple(d["shape"])

    def array(values):
        return np.array([float(v) for v in values], dtype=dtype).reshape(shape)

    return spaces.Box(array(d["low"]), array(d["high"]), shape, dtype)


class ObsNorm:
    """``VecNormalize.normalize_obs`` from saved statistics (per feature ``mean``, ``var``)."""

    def __init__(self, mean, var, clip_obs: float, epsilon: float):
        self.mean, self.var = np.asarray(mean), np.asarray(var)
        self.clip_obs, self.epsilon = clip_obs, epsilon

    def normalize_obs(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs,
                       self.clip_obs)


class SB3Run(NamedTuple):
    """What :func:`train_sb3` returns: the policy, the validation history and the budget
    counters (``train_seconds`` wall and ``cpu_seconds`` process CPU of training, validation
    excluded; ``day_steps`` simulated; SB3 differentiates no environment)."""

    policy: SB3Policy
    history: list
    train_seconds: float
    cpu_seconds: float
    day_steps: int
    iterations: int
    env_gradients: int = 0


def normalise_from_days(env, vecnorm, seed: int) -> None:
    """Start ``vecnorm``'s observation statistics where the other learners' normalisation comes
    from: the no-control rollouts of ``normalisation_days(env, seed)``, pooled over agents (one
    network acts for all); ``VecNormalize`` then updates them from the rollouts as usual."""
    _, roll = evaluate(env, no_control(env), normalisation_days(env, seed))
    x = roll.obs.reshape(-1, env.obs_dim).double().cpu().numpy()  # (S N, F), every agent
    vecnorm.obs_rms.mean, vecnorm.obs_rms.var = x.mean(0), x.var(0)
    vecnorm.obs_rms.count = float(len(x))


def train_sb3(env, env_id: str, cfg: SB3Config, *, progress_fn: Callable[[dict], None] | None = None,
              should_stop: Callable[[float], bool] | None = None) -> SB3Run:
    """Train (normalisation from :func:`normalise_from_days`); ``should_stop(train_seconds)`` ends the run
    after a rollout. Every record carries the budget counters (``train/day_steps``, also as
    ``train/env_steps``: day-steps, as MAPPO/IPPO count them)."""
    from stable_baselines3 import PPO  # optional (gridedge[rl])
    from stable_baselines3.common.callbacks import BaseCallback  # optional (gridedge[rl])
    from stable_baselines3.common.vec_env import VecNormalize  # optional (gridedge[rl])

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
    normalise_from_days(env, vec, cfg.seed)
    policy = SB3Policy(model.policy, vec, policy_spec(model.policy, cfg))
    history: list = []
    clock = _Clock()

    class Hook(BaseCallback):
        """Validation every ``eval_every`` rollouts (its time excluded from the training
        time); stops ``learn`` at the next step once ``should_stop`` says so."""

        stop = False

        def _on_step(self) -> bool:
            return not self.stop

        def _on_rollout_end(self) -> None:
            clock.pause(self.model.num_timesteps // n)
            rec = {"iteration": clock.iteration, **counters(clock),
                   "train/env_steps": clock.day_steps}
            if clock.iteration % cfg.eval_every == 0 or clock.iteration == cfg.iterations:
                vec.training = False
                val, _ = evaluate(env, policy, env.scenario.split.validation)
                vec.training = True
                rec.update({f"val/{key}": v for key, v in val.items()})
                history.append(rec)
            if progress_fn is not None:
                progress_fn(rec)
            self.stop = should_stop is not None and should_stop(clock.train_seconds)
            clock.resume()

    clock.resume()
    model.learn(total_timesteps=cfg.iterations * batch, callback=Hook())
    vec.training = False
    return SB3Run(policy, history, clock.train_seconds, clock.cpu_seconds,
                  model.num_timesteps // n, clock.iteration)


class _Clock:
    """SB3's budget counters (the attributes :func:`gradmap_agents.train.counters` reads):
    wall and CPU seconds between :meth:`resume` and :meth:`pause`, rollouts, day-steps."""

    env_gradients = 0

    def __init__(self):
        self.train_seconds = self.cpu_seconds = 0.0
        self.iteration = self.day_steps = 0
        self._since = (0.0, 0.0)

    def resume(self) -> None:
        self._since = (time.perf_counter(), time.process_time())

    def pause(self, day_steps: int) -> None:
        self.train_seconds += time.perf_counter() - self._since[0]
        self.cpu_seconds += time.process_time() - self._since[1]
        self.iteration += 1
        self.day_steps = day_steps
