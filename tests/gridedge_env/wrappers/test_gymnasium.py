"""Centralised Gymnasium view: Gymnasium's checker, registration, agreement with the core."""

import warnings

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import gridedge_env.wrappers.gymnasium as gg
from gridedge_env.core import reset, step
from gridedge_env.envs import make
from gridedge_env.registry import env_params

GYM_ID, N, T, D = "gridedge/IEEE13-50-v0", 50, 48, 7


@pytest.fixture(scope="module")
def env():
    return gymnasium.make(GYM_ID)


def test_check_env_warns_only_about_unbounded_observations(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)  # also builds it in both render modes through its spec
    messages = {str(w.message) for w in caught}
    assert all("observation space m" in m and "infinity" in m for m in messages), messages


def test_registered_ids_and_overrides():
    assert set(gg.GYM_IDS) <= set(gymnasium.registry)
    gg.register_gymnasium()  # idempotent
    spec = gymnasium.spec("gridedge/IEEE123-1000-v0")
    assert spec.kwargs == {"env_id": "ieee123-1000-v0"}
    e = gymnasium.make(GYM_ID, observe_voltage=True).unwrapped
    assert isinstance(e, gg.GridEdgeCentralEnv)
    assert e.observation_space.shape == (N * (D + 1) + N,) and e.action_space.shape == (N,)


def test_spaces_and_full_day(env):
    assert env.observation_space.shape == (N * D + N,) and env.observation_space.dtype == np.float32
    assert env.action_space == gymnasium.spaces.Box(-1, 1, (N,), np.float32)
    obs, info = env.reset(seed=4)
    assert obs.shape == (N * D + N,) and obs.dtype == np.float32 and set(info) == {"day", "date"}
    total, steps, terminated = 0.0, 0, False
    while not terminated:
        obs, rew, terminated, truncated, info = env.step(np.full(N, 0.3, np.float32))
        total += rew
        steps += 1
        assert not truncated and isinstance(rew, float)
    assert steps == T and np.isfinite(total) and info["converged"] is True
    assert {"cost_energy", "cost_total", "pf_iterations", "v_min_pu"} <= set(info)
    with pytest.raises(RuntimeError, match="after the day ended"):
        env.unwrapped.step(np.zeros(N, np.float32))


def test_matches_core_and_parallel_env(env):
    """Observation is the core's global state; the team reward is agent 0's team reward;
    costs are the agents' sum; the day is the one the PettingZoo env draws with the same seed."""
    obs, info = env.reset(seed=9)
    par = make("ieee13-50-v0")
    _, pinfo = par.reset(seed=9)
    assert info["day"] == pinfo[par.possible_agents[0]]["day"]
    p = env.unwrapped.env
    state, _ = reset(p, 1, days=torch.tensor([info["day"]]))
    from gridedge_env.core import global_state

    np.testing.assert_array_equal(obs, global_state(p, state)[0].numpy().astype(np.float32))
    act = np.linspace(-1, 1, N).astype(np.float32)
    obs, rew, _, _, info = env.step(act)
    state, out = step(p, state, torch.as_tensor(act[None], dtype=torch.float64))
    assert rew == pytest.approx(float(out.reward[0, 0]))  # team: every agent has the total
    assert info["cost_energy"] == pytest.approx(float(out.costs["energy"].sum()))
    _, prew, _, _, _ = par.step({a: act[i:i + 1] for i, a in enumerate(par.possible_agents)})
    assert rew == pytest.approx(prew[par.possible_agents[0]])


def test_local_reward_is_summed():
    e = gg.GridEdgeCentralEnv(env_params("ieee13-50-v0", reward={"kind": "local"}))
    _, info = e.reset(seed=0)
    _, rew, _, _, _ = e.step(np.zeros(N, np.float32))
    state, _ = reset(e.env, 1, days=torch.tensor([info["day"]]))
    _, out = step(e.env, state, torch.zeros(1, N, dtype=torch.float64))
    assert rew == pytest.approx(float(out.reward.sum()))


def test_reset_seed_and_day_option(env):
    a, ia = env.reset(seed=1)
    b, ib = env.reset(seed=1)
    np.testing.assert_array_equal(a, b)
    assert ia == ib
    _, i5 = env.reset(seed=1, options={"day": 5})
    assert i5["day"] == 5


def test_bad_actions(env):
    env.reset(seed=0)
    u = env.unwrapped
    with pytest.raises(ValueError, match=r"shape \(50,\)"):
        u.step(np.zeros(N + 1, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        u.step(np.full(N, np.nan, np.float32))
    _, _, _, _, info = u.step(np.full(N, 2.0, np.float32))
    assert info["clipped_actions"] == N


def test_render_rgb_array():
    e = gymnasium.make(GYM_ID, render_mode="rgb_array")
    e.reset(seed=0)
    e.step(np.full(N, 0.5, np.float32))
    img = e.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 0
    with pytest.raises(ValueError, match="render_mode"):
        gg.make_central_env("ieee13-50-v0", render_mode="video")
