"""PettingZoo's own API, seed and state checks for every registered id, plus bad input."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test
from pettingzoo.test.state_test import test_parallel_env as pz_state_parallel
from pettingzoo.test.state_test import test_state_space as pz_state_space

from gridedge_env.envs import make
from gridedge_env.registry import registry


@pytest.fixture(scope="module")
def env13():
    return make("ieee13-50-v0")


@pytest.mark.parametrize("env_id", sorted(registry))
def test_pettingzoo_api_seed_and_state(env_id):
    env = make(env_id)
    parallel_api_test(env, num_cycles=50 if "13" in env_id else 3)
    parallel_seed_test(lambda: make(env_id), num_cycles=5)
    pz_state_space(env)
    pz_state_parallel(env)
    assert env.state().shape == env.state_space.shape


def test_agent_names_and_cached_spaces(env13):
    names = env13.possible_agents
    assert names[:1] and all(n.rsplit("_", 1)[0] in ("battery", "heatpump", "generator")
                             for n in names)
    assert {n.rsplit("_", 1)[0] for n in names} == {"battery", "heatpump", "generator"}
    assert env13.action_space(names[0]) is env13.action_space(names[0])


def test_full_day_and_determinism(env13):
    def run(seed):
        obs, _ = env13.reset(seed=seed)
        total, steps = 0.0, 0
        while env13.agents:
            acts = {a: np.array([0.3], dtype=np.float32) for a in env13.agents}
            obs, rew, term, trunc, info = env13.step(acts)
            total += sum(rew.values())
            steps += 1
        return total, steps, info

    t1, n1, info = run(7)
    t2, n2, _ = run(7)
    assert n1 == 48 and t1 == t2 and np.isfinite(t1)
    assert info[env13.possible_agents[0]]["converged"] is True


class TestBadInput:
    def test_unknown_agent(self, env13):
        env13.reset(seed=0)
        acts = {a: [0.0] for a in env13.agents}
        acts["battery_999"] = [0.0]
        with pytest.raises(KeyError, match="battery_999"):
            env13.step(acts)
        with pytest.raises(KeyError, match="nobody"):
            env13.action_space("nobody")

    def test_missing_agent(self, env13):
        env13.reset(seed=0)
        acts = {a: [0.0] for a in env13.agents[1:]}
        with pytest.raises(KeyError, match=env13.agents[0]):
            env13.step(acts)

    def test_wrong_shape_and_nan(self, env13):
        env13.reset(seed=0)
        acts = {a: [0.0] for a in env13.agents}
        acts[env13.agents[3]] = [0.0, 1.0]
        with pytest.raises(ValueError, match=r"shape \(1,\)"):
            env13.step(acts)
        acts[env13.agents[3]] = [float("nan")]
        with pytest.raises(ValueError, match="nan"):
            env13.step(acts)

    def test_out_of_range_is_clipped_and_counted(self, env13):
        env13.reset(seed=0)
        acts = {a: [0.0] for a in env13.agents}
        acts[env13.agents[0]] = [3.0]
        acts[env13.agents[1]] = [-2.0]
        _, _, _, _, info = env13.step(acts)
        assert info[env13.agents[0]]["clipped_actions"] == 2

    def test_step_after_end(self, env13):
        env13.reset(seed=0)
        while env13.agents:
            env13.step({a: [0.0] for a in env13.agents})
        with pytest.raises(RuntimeError, match="after the day ended"):
            env13.step({a: [0.0] for a in env13.possible_agents})


def test_render_rgb_array():
    env = make("ieee13-50-v0", render_mode="rgb_array")
    env.reset(seed=0)
    env.step({a: [0.5] for a in env.agents})
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 0
    with pytest.raises(ValueError, match="render_mode"):
        make("ieee13-50-v0", render_mode="video")


def test_render_human_reuses_one_window():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    env = make("ieee13-50-v0", render_mode="human")
    env.reset(seed=0)
    for _ in range(3):
        env.step({a: [0.1] for a in env.agents})
    assert len(plt.get_fignums()) == 1
    env.close()
    assert not plt.get_fignums()


def test_infos_are_numeric_with_the_same_keys_after_reset_and_step(env13):
    _, infos = env13.reset(seed=1, options={"day": 3})
    a = env13.agents[0]
    assert infos[a]["day"] == 3 and env13.date == env13.env.scenario.profiles.dates[3]
    assert infos[a]["converged"] is True and infos[a]["clipped_actions"] == 0
    _, _, _, _, step_infos = env13.step({b: [0.0] for b in env13.agents})
    assert set(infos[a]) == set(step_infos[a]) and "date" not in infos[a]
    assert {"cost_energy", "v_min_pu", "v_max_pu"} <= set(infos[a])
    for info in (infos[a], step_infos[a]):
        assert all(isinstance(v, (bool, int, float)) for v in info.values()), info
    assert step_infos[a]["day"] == 3
