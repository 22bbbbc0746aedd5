"""TorchRL adapter: specs, rollouts, seeding, partial resets, agreement with the core."""

import pytest
import torch

pytest.importorskip("torchrl")

from tensordict import TensorDict  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from gridedge_env.core import reset, step  # noqa: E402
from gridedge_env.wrappers.torchrl import make_torchrl_env  # noqa: E402

ENV, N, T, D = "ieee13-50-v0", 50, 48, 7


@pytest.fixture(scope="module")
def env():
    return make_torchrl_env(ENV, num_envs=3, seed=0)


def test_specs_and_rollout(env):
    check_env_specs(env)
    td = env.rollout(max_steps=5)
    assert td.batch_size == (3, 5)
    assert td["agents", "observation"].shape == (3, 5, N, D)
    assert td["agents", "action"].shape == (3, 5, N, 1)
    assert td["next", "agents", "reward"].shape == (3, 5, N, 1)
    assert td["next", "state"].shape == (3, 5, N * D + N)
    assert td["next", "agents", "reward"].dtype == torch.float32
    assert torch.isfinite(td["next", "agents", "reward"]).all()
    assert not td["next", "done"].any() and td["next", "converged"].all()
    # the group's local observations are the first N * D entries of the global state
    assert torch.equal(td["next", "state"][..., : N * D], td["next", "agents", "observation"].flatten(-2))


def test_matches_core_and_ends_the_day(env):
    env.set_seed(3)
    td0 = env.reset()
    days = env._state.day.clone()
    state, obs = reset(env.env, 3, days=days)
    assert torch.equal(td0["agents", "observation"], obs.float())
    act = torch.linspace(-1, 1, N).expand(3, N)
    for k in range(T):
        td = env.step(td0.set(("agents", "action"), act.unsqueeze(-1).float())).get("next")
        state, out = step(env.env, state, act.double())
        assert td["done"].all() == (k == T - 1) and td["done"].any() == (k == T - 1)
    torch.testing.assert_close(td["agents", "reward"].squeeze(-1), out.reward.float())
    with pytest.raises(RuntimeError, match="finished day"):
        env.step(td0)


def test_auto_reset_across_days():
    env = make_torchrl_env(ENV, num_envs=2, seed=1)
    td = env.rollout(max_steps=T + 3, break_when_any_done=False)
    assert td.batch_size == (2, T + 3)
    assert td["next", "done"].sum() == 2 and td["next", "done"][:, T - 1].all()
    assert (td["agents", "observation"][:, T, :, 1] == 1).all()  # cos(0): first step of a new day


def test_seed_day_and_partial_reset(env):
    env.set_seed(5)
    a = env.reset()
    env.set_seed(5)
    assert torch.equal(env.reset()["state"], a["state"])
    env.reset(TensorDict({"day": torch.tensor([3, 5, 7])}, batch_size=[3]))
    assert env._state.day.tolist() == [3, 5, 7]
    env.rand_step()
    env.reset(TensorDict({"_reset": torch.tensor([[True], [False], [True]])}, batch_size=[3]))
    assert env._state.t.tolist() == [0, 1, 0] and env._state.day[1] == 5


def test_float64_output_option():
    env = make_torchrl_env(ENV, num_envs=1, dtype=torch.float64)
    td = env.rollout(max_steps=2)
    assert td["agents", "observation"].dtype == torch.float64
    check_env_specs(env)
