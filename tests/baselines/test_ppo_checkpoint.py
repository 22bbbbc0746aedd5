"""PPO checkpoints: a run resumed from one ends exactly where an uninterrupted run does, with
its budget counters carried on; a checkpoint of another configuration or other multipliers, of
an older format, or not a checkpoint at all, is refused by name."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from baselines.ppo import PPOConfig, train_ppo
from baselines.ppo_checkpoint import load_ppo, save_ppo
from gradmap_agents.checkpoint import CheckpointError
from gradmap_agents.config import DualConfig

DUAL = DualConfig()


@pytest.mark.parametrize("variant,scheme", [("ippo", "rising"), ("mappo", "signed")])
def test_resumed_run_equals_uninterrupted_run(env, tmp_path, variant, scheme):
    dual = DualConfig(scheme=scheme)
    cfg = PPOConfig(variant=variant, iterations=4, days_per_rollout=2, epochs=1, eval_every=2,
                    seed=1)
    whole = train_ppo(env, cfg, dual)
    half = train_ppo(env, dataclasses.replace(cfg, iterations=2), dual)
    save_ppo(tmp_path / "ckpt.safetensors", half, cfg, dual)
    loaded = load_ppo(tmp_path / "ckpt.safetensors", env, cfg, dual)
    # the counters come back as saved, then keep counting
    for k in ("iteration", "train_seconds", "cpu_seconds", "day_steps"):
        assert getattr(loaded, k) == getattr(half, k), k
    resumed = train_ppo(env, cfg, dual, state=loaded)
    assert resumed.iteration == 4 and resumed.day_steps == whole.day_steps
    assert resumed.train_seconds > half.train_seconds and resumed.cpu_seconds > half.cpu_seconds
    for a, b in zip(whole.actor.parameters(), resumed.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.duals, resumed.duals, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.log_std, resumed.log_std)
    assert [h["val/cost"] for h in resumed.history] == [h["val/cost"] for h in whole.history]
    walls = [h["train/wall_seconds"] for h in resumed.history]
    assert walls == sorted(walls) and resumed.history[0] == half.history[0]


def test_other_config_or_garbage_is_refused(env, tmp_path):
    cfg = PPOConfig(iterations=1, days_per_rollout=2, epochs=1)
    path = tmp_path / "ckpt.safetensors"
    save_ppo(path, train_ppo(env, cfg, DUAL), cfg, DUAL)
    with pytest.raises(CheckpointError, match="differs in actor_lr"):
        load_ppo(path, env, dataclasses.replace(cfg, actor_lr=0.5), DUAL)
    with pytest.raises(CheckpointError, match=r"differs in dual\.init_voltage_gbp_per_pu, "
                                              r"dual\.scheme"):
        load_ppo(path, env, cfg, DualConfig(scheme="signed", init_voltage_gbp_per_pu=1e4))
    longer = load_ppo(path, env, dataclasses.replace(cfg, iterations=5), DUAL)  # may run on
    assert longer.iteration == 1
    # a version-1 file (PPO's own multipliers) is refused by its format, not misread
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["ppo"])
    old = tmp_path / "v1.safetensors"
    save_file(load_file(str(path)), str(old),
              metadata={"ppo": json.dumps({**meta, "format": "gridedge-ppo-checkpoint-1"})})
    with pytest.raises(CheckpointError, match="format 'gridedge-ppo-checkpoint-1'"):
        load_ppo(old, env, cfg, DUAL)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PPO checkpoint"):
        load_ppo(path, env, cfg, DUAL)
    with pytest.raises(CheckpointError, match="no PPO checkpoint here"):
        load_ppo(tmp_path / "none.safetensors", env, cfg, DUAL)
