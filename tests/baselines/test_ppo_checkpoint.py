"""PPO checkpoints: a run resumed from one ends exactly where an uninterrupted run does, and a
checkpoint of another configuration, or not a checkpoint at all, is refused by name."""

import pytest
import torch

from baselines.ppo import PPOConfig, train_ppo
from baselines.ppo_checkpoint import load_ppo, save_ppo
from gradmap_agents.checkpoint import CheckpointError


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_resumed_run_equals_uninterrupted_run(env, tmp_path, variant):
    cfg = PPOConfig(variant=variant, iterations=4, days_per_rollout=4, eval_every=2, seed=1)
    whole = train_ppo(env, cfg)
    half = train_ppo(env, PPOConfig(**{**cfg.__dict__, "iterations": 2}))
    save_ppo(tmp_path / "ckpt.safetensors", half, cfg)
    resumed = train_ppo(env, cfg, state=load_ppo(tmp_path / "ckpt.safetensors", env, cfg))
    assert resumed.iteration == 4 and resumed.env_steps == whole.env_steps
    for a, b in zip(whole.actor.parameters(), resumed.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.log_std, resumed.log_std)
    assert [h["val/cost"] for h in resumed.history] == [h["val/cost"] for h in whole.history]


def test_other_config_or_garbage_is_refused(env, tmp_path):
    cfg = PPOConfig(iterations=1, days_per_rollout=2)
    path = tmp_path / "ckpt.safetensors"
    save_ppo(path, train_ppo(env, cfg), cfg)
    with pytest.raises(CheckpointError, match="differs in actor_lr"):
        load_ppo(path, env, PPOConfig(iterations=1, days_per_rollout=2, actor_lr=0.5))
    longer = load_ppo(path, env, PPOConfig(iterations=5, days_per_rollout=2))  # may run on
    assert longer.iteration == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PPO checkpoint"):
        load_ppo(path, env, cfg)
    with pytest.raises(CheckpointError, match="no PPO checkpoint here"):
        load_ppo(tmp_path / "none.safetensors", env, cfg)
