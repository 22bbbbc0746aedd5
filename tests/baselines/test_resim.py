"""Policies rebuilt from a comparison's run files act as the trained ones did, and the OpenDSS
re-simulation of a policy reports our test metrics to the power flows' agreement."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from baselines.ppo import PPOConfig, init_ppo
from baselines.resim import MissingPolicy, policy_of, resimulate
from baselines.rule import rule_based
from gradmap_agents.evaluate import evaluate
from gridedge_env.core import reset


@pytest.mark.parametrize("shared", [False, True])
def test_ppo_actor_is_rebuilt_from_its_weights_and_config(env, tmp_path, shared):
    cfg = PPOConfig(variant="ippo", shared_actor=shared, hidden=(8,), seed=3)
    actor = init_ppo(env, cfg).actor
    with torch.no_grad():  # trained weights, not the initial ones a seed would rebuild
        for p in actor.parameters():
            p.add_(torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in actor.state_dict().items()},
              tmp_path / "actor.safetensors")
    result = json.loads(json.dumps({"ppo_config": dataclasses.asdict(cfg)}))  # as on disk
    rebuilt = policy_of("ippo", result, tmp_path, env)
    _, obs = reset(env, 3, days=env.scenario.split.test[:3])
    assert torch.equal(rebuilt(obs), actor(obs))


def test_a_missing_policy_file_is_named(env, tmp_path):
    with pytest.raises(MissingPolicy, match="actor.safetensors is missing"):
        policy_of("mappo", {"ppo_config": {}}, tmp_path, env)
    with pytest.raises(ValueError, match="no policy to re-simulate"):
        policy_of("oracle", {}, tmp_path, env)


@pytest.mark.opendss
def test_opendss_resimulation_reproduces_our_test_metrics(env, tmp_path):
    ours, _ = evaluate(env, rule_based(env), env.scenario.split.test)
    theirs = resimulate("rule", {}, tmp_path, env)
    # actions do not see voltages here: the same actions, so the same cost to rounding
    assert theirs["max_action_diff"] == 0.0
    assert theirs["cost"] == pytest.approx(ours["cost"], rel=1e-12)
    # the solvers agree to ~1e-8 p.u. per node-step (docs/powerflow.md error budget): the
    # summed exceedance over a day's ~2,000 node-steps moves by far less than 1e-4
    assert theirs["max_v_diff_pu"] < 1e-7
    assert theirs["violation_magnitude"] == pytest.approx(ours["violation_magnitude"], abs=1e-4)
    assert theirs["violation_frequency"] == pytest.approx(ours["violation_frequency"], abs=1e-3)
    assert theirs["nonconverged"] == 0 and theirs["seconds"] > 0
