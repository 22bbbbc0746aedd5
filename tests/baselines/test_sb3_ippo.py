"""The Stable-Baselines3 cross-check: starts from the other learners' normalisation days,
trains through the PettingZoo route, validates with the shared evaluation and counts its
budget, stops on its budget, and its policy acts like SB3's own predict."""

import dataclasses
import json

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("supersuit")

from baselines.compare import Plan, run_one  # noqa: E402
from baselines.resim import policy_of, save_obs_norm  # noqa: E402
from baselines.sb3_ippo import (  # noqa: E402
    SB3Config,
    SB3Policy,
    build_policy_net,
    normalise_from_days,
    train_sb3,
)
from gradmap_agents.evaluate import evaluate  # noqa: E402
from gradmap_agents.train import normalisation_days  # noqa: E402
from gridedge_env.core import reset  # noqa: E402
from gridedge_env.registry import env_params  # noqa: E402
from gridedge_env.rollout import no_control  # noqa: E402
from gridedge_env.wrappers.sb3 import sb3_vec_env  # noqa: E402

pytestmark = pytest.mark.slow


def test_sb3_trains_validates_and_stops_on_budget(tmp_path):
    env = env_params("ieee13-50-v0")
    cfg = SB3Config(days_per_rollout=2, iterations=3, epochs=1, eval_every=2)
    run = train_sb3(env, "ieee13-50-v0", cfg)
    policy, history = run.policy, run.history
    assert run.day_steps == 3 * 2 * env.n_steps and run.iterations == 3
    assert [h["iteration"] for h in history] == [2, 3]
    assert np.isfinite(history[-1]["val/cost"]) and history[-1]["train/env_gradients"] == 0
    # the budget counters, as every learner reports them
    assert [h["train/day_steps"] for h in history] == [2 * 2 * env.n_steps, run.day_steps]
    for k in ("train/wall_seconds", "train/cpu_seconds"):
        assert 0 < history[0][k] < history[1][k], k
    assert (history[-1]["train/wall_seconds"], history[-1]["train/cpu_seconds"]) == (
        run.train_seconds, run.cpu_seconds)
    # the rollout policy is SB3's deterministic predict on normalised observations
    _, obs = reset(env, 2, days=env.scenario.split.test[:2])
    a = policy(obs)
    x = policy.vecnorm.normalize_obs(obs.reshape(-1, env.obs_dim).float().numpy())
    ref, _ = policy.net.predict(x, deterministic=True)
    np.testing.assert_allclose(a.reshape(-1).numpy(), ref.reshape(-1), rtol=0, atol=1e-6)
    assert a.shape == (2, env.n_agents) and bool((a.abs() <= 1).all())
    # saved as a comparison saves it (safetensors and JSON, no pickle) and rebuilt from those
    # files alone: the same architecture, weights and actions
    policy.save(tmp_path)
    save_obs_norm(policy.vecnorm, tmp_path / "vecnormalize.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "policy.safetensors", "sb3_policy.json", "vecnormalize.json"]
    spec = json.loads((tmp_path / "sb3_policy.json").read_text())
    assert spec["sb3_config"] == dataclasses.asdict(cfg) and spec["activation_fn"] == "Tanh"
    assert spec["observation_space"]["shape"] == [env.obs_dim]
    assert spec["action_space"] == {"shape": [1], "dtype": "float32", "low": [-1.0],
                                    "high": [1.0]}
    loaded = SB3Policy.load(tmp_path / "policy.safetensors", tmp_path / "sb3_policy.json",
                            tmp_path / "vecnormalize.json")
    assert type(loaded.net) is type(policy.net) and str(loaded.net) == str(policy.net)
    trained = policy.net.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.net.state_dict().items())
    np.testing.assert_array_equal(loaded(obs).numpy(), a.numpy())
    _, obs2 = reset(env, 3, days=env.scenario.split.validation[:3])
    np.testing.assert_array_equal(loaded(obs2 * 3).numpy(), policy(obs2 * 3).numpy())
    stopped = train_sb3(env, "ieee13-50-v0",
                        SB3Config(days_per_rollout=2, iterations=10 ** 9, eval_every=10 ** 9),
                        should_stop=lambda t: True)
    # stopped after its first rollout (SB3 stops at the next step's callback: one step more),
    # whatever its iteration cap
    assert 2 * env.n_steps <= stopped.day_steps <= 2 * env.n_steps + 2
    assert stopped.iterations == 1 and len(stopped.history) == 0
    assert torch.is_tensor(a)


def test_a_comparison_run_keeps_no_pickle_and_its_policy_is_rebuilt(env, tmp_path):
    plan = Plan(None, (), ("sb3-ippo",), 1, None, tmp_path, logger="none", method_sets=(
        "sb3-ippo:days_per_rollout=1", "sb3-ippo:iterations=1", "sb3-ippo:epochs=1"))
    result = run_one(plan, "sb3-ippo", 0, env, progress=lambda msg: None)
    run_dir = plan.run_dir("sb3-ippo", 0)
    assert not list(run_dir.glob("*.zip")) and not list(run_dir.glob("*.pkl"))
    for name in ("policy.safetensors", "sb3_policy.json", "vecnormalize.json"):
        assert (run_dir / name).is_file(), name
    # rebuilt from the run's files, the policy reproduces the run's test metrics exactly
    m, _ = evaluate(env, policy_of("sb3-ippo", result, run_dir, env), env.scenario.split.test)
    assert m == result["test"]


def test_sb3_normalisation_starts_from_the_normalisation_days():
    """VecNormalize's statistics start as the no-control observations of the normalisation
    days (pooled over agents), the days every learner's normalisation comes from."""
    from stable_baselines3.common.vec_env import VecNormalize

    env = env_params("ieee13-50-v0")
    vec = VecNormalize(sb3_vec_env("ieee13-50-v0", 1, seed=0))
    normalise_from_days(env, vec, 0)
    _, roll = evaluate(env, no_control(env), normalisation_days(env, 0))
    x = roll.obs.reshape(-1, env.obs_dim).double().numpy()
    np.testing.assert_allclose(vec.obs_rms.mean, x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vec.obs_rms.var, x.var(0), rtol=1e-12, atol=1e-12)
    assert vec.obs_rms.count == len(x) == 64 * env.n_steps * env.n_agents


def test_a_spec_names_only_allowed_classes(tmp_path):
    spec = {"format": 1, "policy_class": "ActorCriticPolicy", "features_extractor_class":
            "FlattenExtractor", "activation_fn": "Module"}
    with pytest.raises(ValueError, match="unsupported policy"):
        build_policy_net(spec)
    with pytest.raises(ValueError, match="format"):
        build_policy_net({**spec, "format": 0})


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="days_per_rollout"):
        SB3Config(days_per_rollout=0)
