"""TorchRL's own ``PettingZooWrapper`` around our PettingZoo env (beside the native adapter of
``test_torchrl.py``): it builds its info spec from the reset infos, so those must be numeric and
carry the same keys as the step infos."""

import pytest
import torch

pytest.importorskip("torchrl")

from torchrl.envs import PettingZooWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

from gridedge_env.envs import make  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested")


def test_pettingzoo_wrapper_specs_and_rollout():
    pz = make("ieee13-50-v0")
    env = PettingZooWrapper(env=pz, return_state=False, use_mask=False, categorical_actions=False,
                            seed=0)
    check_env_specs(env)
    td = env.rollout(max_steps=4)
    assert td.batch_size == (4,)
    n = 0
    for group, agents in env.group_map.items():
        n += len(agents)
        obs = td["next", group, "observation"]
        assert obs.shape == (4, len(agents), pz.env.obs_dim) and torch.isfinite(obs).all()
        info = td["next", group, "info"]
        assert info["converged"].all() and (info["day"] == info["day"][0, 0]).all()
        assert torch.isfinite(td["next", group, "reward"]).all()
    assert n == pz.env.n_agents
    assert not td["next", "done"].any()
