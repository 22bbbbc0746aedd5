"""The Stable-Baselines3 cross-check: trains through the PettingZoo route, validates with the
shared evaluation, stops on its budget, and its policy acts like SB3's own predict."""

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("supersuit")

from baselines.resim import save_obs_norm  # noqa: E402
from baselines.sb3_ippo import SB3Config, SB3Policy, train_sb3  # noqa: E402
from gridedge_env.core import reset  # noqa: E402
from gridedge_env.registry import env_params  # noqa: E402

pytestmark = pytest.mark.slow


def test_sb3_trains_validates_and_stops_on_budget(tmp_path):
    env = env_params("ieee13-50-v0")
    cfg = SB3Config(days_per_rollout=2, iterations=3, epochs=1, eval_every=2)
    policy, history, seconds, steps = train_sb3(env, "ieee13-50-v0", cfg)
    assert steps == 3 * 2 * env.n_steps and seconds > 0
    assert [h["iteration"] for h in history] == [2, 3]
    assert np.isfinite(history[-1]["val/cost"]) and history[-1]["train/env_gradients"] == 0
    # the rollout policy is SB3's deterministic predict on normalised observations
    _, obs = reset(env, 2, days=env.scenario.split.test[:2])
    a = policy(obs)
    x = policy.vecnorm.normalize_obs(obs.reshape(-1, env.obs_dim).float().numpy())
    ref, _ = policy.model.predict(x, deterministic=True)
    np.testing.assert_allclose(a.reshape(-1).numpy(), ref.reshape(-1), rtol=0, atol=1e-6)
    assert a.shape == (2, env.n_agents) and bool((a.abs() <= 1).all())
    # saved as a comparison saves it (no pickle) and loaded back: the same actions
    policy.model.save(tmp_path / "model.zip")
    save_obs_norm(policy.vecnorm, tmp_path / "vecnormalize.json")
    loaded = SB3Policy.load(tmp_path / "model.zip", tmp_path / "vecnormalize.json")
    np.testing.assert_array_equal(loaded(obs).numpy(), a.numpy())
    _, h2, _, steps2 = train_sb3(env, "ieee13-50-v0", SB3Config(days_per_rollout=2, iterations=50),
                                 should_stop=lambda t: True)
    # stopped after its first rollout (SB3 stops at the next step's callback: one step more)
    assert 2 * env.n_steps <= steps2 <= 2 * env.n_steps + 2 and len(h2) == 0
    assert torch.is_tensor(a)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="days_per_rollout"):
        SB3Config(days_per_rollout=0)
