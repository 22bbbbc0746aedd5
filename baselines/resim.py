"""Policies of a comparison's finished runs, rebuilt from their files, and their OpenDSS
re-simulation (``gradmap-compare --opendss``).

Every run directory keeps what its policy needs: ``checkpoint.safetensors`` (GradMAP,
GradMA), ``actor.safetensors`` and the ``ppo_config`` in ``result.json`` (MAPPO, IPPO),
``policy.safetensors``, ``sb3_policy.json`` and ``vecnormalize.json`` (SB3). Nothing is
unpickled: SB3's ``model.zip``, which an older run may hold, is never loaded (a crafted one
would run code), and a run with nothing else is reported to be rerun. Rule and no control are
rebuilt from the
environment. The re-simulation steps the test days with OpenDSS solving every power flow
(:func:`gradmap_agents.opendss_check.opendss_check`, the check of ``gradmap-eval --opendss``), so a
comparison's numbers do not rest on our solver alone. The oracle is not re-simulated: its
result is an optimised action sequence per day, not a policy of observations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from gradmap_agents import checkpoint
from gradmap_agents.checkpoint import atomic_write
from gradmap_agents.opendss_check import opendss_check
from gradmap_agents.runs import CHECKPOINT
from gridedge_env.config import from_dict
from gridedge_env.rollout import no_control

from .ppo import PPOConfig, make_actor
from .rule import rule_based
from .sb3_ippo import POLICY_SPEC, POLICY_WEIGHTS, SB3Policy

RESIMULATED = ("gradmap", "gradma", "mappo", "ippo", "sb3-ippo", "rule", "no-control")


class MissingPolicy(RuntimeError):
    """A run directory lacks the file its policy is rebuilt from."""


def policy_of(method: str, result: dict, run_dir: Path, env):
    """The rollout policy of a finished run of ``method`` (``result``: its ``result.json``)."""
    if method in ("gradmap", "gradma"):
        ckpt = _need(run_dir / CHECKPOINT)
        return checkpoint.load(ckpt, env, checkpoint.config_of(ckpt)).policy
    if method in ("mappo", "ippo"):
        return _ppo_actor(result, _need(run_dir / "actor.safetensors"), env)
    if method == "sb3-ippo":
        return _sb3_policy(run_dir)
    if method == "rule":
        return rule_based(env)
    if method == "no-control":
        return no_control(env)
    raise ValueError(f"{method}: no policy to re-simulate (re-simulated: {', '.join(RESIMULATED)})")


def _need(path: Path) -> Path:
    if not path.is_file():
        raise MissingPolicy(f"{path} is missing: rerun this (method, seed) to re-simulate it")
    return path


def _sb3_policy(run_dir: Path) -> SB3Policy:
    weights = run_dir / POLICY_WEIGHTS
    if not weights.is_file() and (run_dir / "model.zip").exists():
        raise MissingPolicy(f"{weights} is missing: this run kept only SB3's model.zip, which is "
                            "not loaded (unpickling it could run code); rerun this (method, seed) "
                            "to re-simulate it")
    return SB3Policy.load(_need(weights), _need(run_dir / POLICY_SPEC),
                          _need(run_dir / "vecnormalize.json"))


def _ppo_actor(result: dict, weights: Path, env):
    cfg = from_dict(PPOConfig, result["ppo_config"], f"{weights.parent}/result.json ppo_config")
    actor = make_actor(env, cfg)
    actor.load_state_dict(load_file(weights), strict=True)
    return actor


def resimulate(method: str, result: dict, run_dir: Path, env) -> dict:
    """OpenDSS metrics of a finished run's policy on the test days (keys without a prefix,
    plus ``max_v_diff_pu``, ``max_action_diff`` and ``seconds``)."""
    policy = policy_of(method, result, run_dir, env)
    t0 = time.perf_counter()
    out = opendss_check(env, policy, env.scenario.split.test)
    out = {k.removeprefix("opendss/"): v for k, v in out.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def save_obs_norm(vecnorm, path: Path) -> None:
    """``VecNormalize``'s observation statistics as JSON (what :class:`SB3Policy` needs to act;
    SB3's own ``save`` pickles, and loading a pickle executes code)."""
    stats = {"mean": np.asarray(vecnorm.obs_rms.mean).tolist(),
             "var": np.asarray(vecnorm.obs_rms.var).tolist(),
             "clip_obs": float(vecnorm.clip_obs), "epsilon": float(vecnorm.epsilon)}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(stats)))
