"""SB3 through SuperSuit's PettingZoo vectorisation: the VecEnv, seeding and a short PPO run."""

import numpy as np
import pytest
import torch

pytest.importorskip("supersuit")
pytest.importorskip("stable_baselines3")

from gridedge_env.envs import make  # noqa: E402
from gridedge_env.wrappers.sb3 import sb3_vec_env  # noqa: E402

ENV = "ieee13-50-v0"
N, T = 50, 48


def test_vec_env_layout_and_day_end():
    vec = sb3_vec_env(ENV, num_vec_envs=2, seed=3)
    assert vec.num_envs == 2 * N and vec.observation_space.shape == (7,)
    assert vec.action_space.shape == (1,) and vec.action_space.low[0] == -1
    obs = vec.reset()
    assert obs.shape == (2 * N, 7) and obs.dtype == np.float32
    # rows j * N + i are copy j's agent i, each copy matching a seeded ParallelEnv
    par = make(ENV)
    ref, _ = par.reset(seed=3 + 1)
    np.testing.assert_array_equal(obs[N:], np.stack([ref[a] for a in par.possible_agents]))
    act = np.full((2 * N, 1), 0.2, np.float32)
    for k in range(T):
        obs, rew, done, infos = vec.step(act)
        assert rew.shape == (2 * N,) and np.isfinite(rew).all()
        assert done.all() == (k == T - 1) and done.any() == (k == T - 1)
    assert infos[0]["terminal_observation"].shape == (7,)
    assert obs.shape == (2 * N, 7)  # already the next day's first observation
    vec.close()


def test_seed_applies_at_next_reset():
    vec = sb3_vec_env(ENV)
    vec.seed(11)
    a = vec.reset()
    vec.reset()  # no seed: continues the sequence
    vec.seed(11)
    np.testing.assert_array_equal(vec.reset(), a)
    assert vec.seed(5) == list(range(5, 5 + N))


def test_missing_supersuit_message(monkeypatch):
    import builtins

    from gridedge_env.wrappers import sb3

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("supersuit"):
            raise ImportError("No module named 'supersuit'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install 'supersuit"):
        sb3._import_supersuit()


def test_supersuit_standard_route():
    """SuperSuit's own concat route pickle-copies the env: it must pickle and step."""
    import supersuit as ss

    vec = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(make(ENV)), 2,
                                base_class="stable_baselines3")
    obs = vec.reset()
    assert obs.shape == (2 * N, 7)
    obs, rew, done, _ = vec.step(np.zeros((2 * N, 1), dtype=np.float32))
    assert obs.shape == (2 * N, 7) and np.isfinite(rew).all() and not done.any()


@pytest.fixture
def one_thread():
    """Tiny MLPs: one intra-op thread is fastest and immune to a loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(seed: int, rollouts: int):
    """PPO with one shared policy over all agents; returns the model, the probe observations
    ``(N, obs_dim)`` of the first (seeded) reset, and the probe's actions before training."""
    from stable_baselines3 import PPO

    vec = sb3_vec_env(ENV, reward={"scale": 0.01})
    model = PPO("MlpPolicy", vec, n_steps=T, batch_size=T * N // 4, n_epochs=2, seed=seed,
                device="cpu", verbose=0)
    probe = vec.reset()  # consumes PPO's seed: the same day in every run
    before, _ = model.predict(probe, deterministic=True)
    model.learn(total_timesteps=rollouts * T * N)  # each rollout: one day of all N agents
    assert model.num_timesteps == rollouts * T * N
    return model, probe, before


@pytest.mark.slow
def test_ppo_parameter_sharing_trains(one_thread):
    model, probe, before = _train(seed=0, rollouts=3)
    after, _ = model.predict(probe, deterministic=True)
    assert after.shape == (N, 1) and not np.allclose(before, after)  # the shared policy moved

    # one held-out day from the test split, every agent acting with the shared policy
    env = make(ENV, split="test", reward={"scale": 0.01})
    obs, _ = env.reset(seed=0)
    team = []
    while env.agents:
        stacked = np.stack([obs[a] for a in env.possible_agents])
        act, _ = model.predict(stacked, deterministic=True)
        obs, rew, _, _, _ = env.step({a: act[i] for i, a in enumerate(env.possible_agents)})
        team.append(np.mean(list(rew.values())))
    assert len(team) == T and np.isfinite(team).all() and np.sum(team) < 0

    # seeded training is reproducible
    model2, probe2, _ = _train(seed=0, rollouts=3)
    np.testing.assert_array_equal(probe2, probe)
    np.testing.assert_array_equal(model2.predict(probe, deterministic=True)[0], after)
