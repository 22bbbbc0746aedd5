"""Policies rebuilt from a comparison's run files act as the trained ones did, and the OpenDSS
re-simulation of a policy reports our test metrics to the power flows' agreement."""

import base64
import dataclasses
import json
import os
import pickle
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from safetensors.torch import save_file

from baselines.ppo import PPOConfig, init_ppo
from baselines.resim import MissingPolicy, policy_of, resimulate, save_obs_norm
from baselines.rule import rule_based
from baselines.sb3_ippo import ObsNorm, SB3Config, SB3Policy, policy_spec
from gradmap_agents.config import DualConfig
from gradmap_agents.evaluate import evaluate
from gridedge_env.core import reset


@pytest.mark.parametrize("shared", [False, True])
def test_ppo_actor_is_rebuilt_from_its_weights_and_config(env, tmp_path, shared):
    cfg = PPOConfig(variant="ippo", shared_actor=shared, hidden=(8,), seed=3)
    actor = init_ppo(env, cfg, DualConfig()).actor
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


class _Armed:
    """Unpickled, it creates the directory ``marker``: what a crafted file could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _crafted_model_zip(path, marker):
    """An SB3 ``model.zip`` whose loading runs code: SB3 unpickles (cloudpickle) the
    ``:serialized:`` entries of its ``data``, and the ``.pth`` members are pickles too."""
    payload = pickle.dumps(_Armed(marker))
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>",
                             ":serialized:": base64.b64encode(payload).decode()}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", payload)
        z.writestr("_stable_baselines3_version", "2.9.2")


def _trained_sb3_policy(env, seed=0):
    """An SB3 ``MlpPolicy`` network with weights no seed rebuilds, and observation statistics."""
    policies = pytest.importorskip("stable_baselines3.common.policies")
    torch.manual_seed(seed)
    net = policies.ActorCriticPolicy(spaces.Box(-np.inf, np.inf, (env.obs_dim,), np.float32),
                                     spaces.Box(-1.0, 1.0, (1,), np.float32), lambda _: 0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    rng = np.random.default_rng(seed)
    rms = SimpleNamespace(mean=rng.normal(size=env.obs_dim), var=rng.uniform(0.5, 2, env.obs_dim))
    vecnorm = SimpleNamespace(obs_rms=rms, clip_obs=10.0, epsilon=1e-8)
    norm = ObsNorm(rms.mean, rms.var, vecnorm.clip_obs, vecnorm.epsilon)
    return SB3Policy(net, norm, policy_spec(net, SB3Config(iterations=7))), vecnorm


def _no_unpickling(monkeypatch):
    """Every pickle and zip loader on the way fails the test if called."""
    stable_baselines3 = pytest.importorskip("stable_baselines3")
    save_util = pytest.importorskip("stable_baselines3.common.save_util")
    cloudpickle = pytest.importorskip("cloudpickle")

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle or zip loader was called")

    for owner, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                        (cloudpickle, "load"), (cloudpickle, "loads"), (torch, "load"),
                        (zipfile, "ZipFile"), (save_util, "load_from_zip_file"),
                        (stable_baselines3.PPO, "load")]:
        monkeypatch.setattr(owner, name, refuse)


def test_sb3_policy_is_rebuilt_from_safetensors_and_json_never_from_model_zip(
        env, tmp_path, monkeypatch):
    trained, vecnorm = _trained_sb3_policy(env)
    trained.save(tmp_path)
    save_obs_norm(vecnorm, tmp_path / "vecnormalize.json")
    # the crafted file is armed: unpickling its payload runs code
    _crafted_model_zip(tmp_path / "armed.zip", tmp_path / "armed")
    with zipfile.ZipFile(tmp_path / "armed.zip") as z:
        pickle.loads(z.read("policy.pth"))
    assert (tmp_path / "armed").is_dir()
    marker = tmp_path / "pwned"
    _crafted_model_zip(tmp_path / "model.zip", marker)
    _, obs = reset(env, 3, days=env.scenario.split.test[:3])
    with monkeypatch.context() as m:
        _no_unpickling(m)
        rebuilt = policy_of("sb3-ippo", {}, tmp_path, env)
        a = rebuilt(obs)
    assert not marker.exists()
    assert torch.equal(a, trained(obs)) and a.shape == (3, env.n_agents)
    assert rebuilt.spec["sb3_config"]["iterations"] == 7


def test_a_sb3_run_with_only_model_zip_is_named_to_rerun(env, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    _crafted_model_zip(tmp_path / "model.zip", marker)
    (tmp_path / "vecnormalize.json").write_text("{}")
    with monkeypatch.context() as m:
        _no_unpickling(m)
        with pytest.raises(MissingPolicy, match=r"policy\.safetensors is missing: this run kept "
                           r"only SB3's model\.zip.*rerun this \(method, seed\)"):
            policy_of("sb3-ippo", {}, tmp_path, env)
    assert not marker.exists()
    (tmp_path / "model.zip").unlink()
    with pytest.raises(MissingPolicy, match="policy.safetensors is missing"):
        policy_of("sb3-ippo", {}, tmp_path, env)


@pytest.mark.opendss
def test_opendss_resimulation_of_an_sb3_run_loads_no_pickle(env, tmp_path, monkeypatch):
    trained, vecnorm = _trained_sb3_policy(env, seed=1)
    trained.save(tmp_path)
    save_obs_norm(vecnorm, tmp_path / "vecnormalize.json")
    marker = tmp_path / "pwned"
    _crafted_model_zip(tmp_path / "model.zip", marker)
    ours, _ = evaluate(env, trained, env.scenario.split.test)
    with monkeypatch.context() as m:
        _no_unpickling(m)
        theirs = resimulate("sb3-ippo", {}, tmp_path, env)
    assert not marker.exists()
    assert theirs["cost"] == pytest.approx(ours["cost"], rel=1e-9) and theirs["nonconverged"] == 0
