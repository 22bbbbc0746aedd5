"""The trainer's guards: non-converged power flows are counted, left out of the metrics and stop
a run above ``max_nonconverged_share``; non-finite duals count as divergence."""

import math

import pytest
import torch

from gradmap_agents import train as train_mod
from gradmap_agents.config import load_config
from gradmap_agents.evaluate import evaluate, metrics
from gradmap_agents.runs import build_env, train_run
from gradmap_agents.train import NonConvergenceError, init_state, iterate, train
from gridedge_env.rollout import no_control

TINY = {"iterations": 2, "eval_every": 1, "checkpoint_every": 1,
        "algo": {"days_per_gradient": 2, "epochs": 1, "minibatches": 1},
        "policy": {"hidden": [4]}}
HEAVY = {"env_overrides": {"households_per_agent": 200}}  # power flows fail to converge


def _cfg(**extra):
    return load_config("ieee13-50", {**TINY, **extra})


@pytest.fixture(scope="module")
def env():
    return build_env(_cfg())


@pytest.fixture(scope="module")
def heavy_env():
    return build_env(_cfg(**HEAVY))


def test_metrics_leave_nonconverged_day_steps_out(env):
    days = env.scenario.split.test[:4]
    m_all, roll = evaluate(env, no_control(env), days)
    assert m_all["nonconverged"] == 0 and m_all["nonconverged_share"] == 0.0
    conv = torch.ones_like(roll.converged)
    conv[1, 5] = False  # day 1 loses a step: its per-day sums must not count
    conv[3, :] = False
    v = roll.v_pu.clone()
    v[~conv] = 18.7  # what a diverged power flow may leave
    m = metrics(env, roll._replace(converged=conv, v_pu=v))
    assert m["nonconverged"] == 1 + roll.converged.shape[1]
    assert m["nonconverged_share"] == pytest.approx(m["nonconverged"] / conv.numel())
    assert m["v_max_pu"] < 1.2
    node = env.node_mask.bool()
    assert m["v_max_pu"] == pytest.approx(float(roll.v_pu[..., node][conv].max()))
    m_ok, _ = evaluate(env, no_control(env), days[[0, 2]])  # the fully converged days
    for k in ("cost", "violation_magnitude", "voltage_violation_magnitude", "cost_energy"):
        assert m[k] == pytest.approx(m_ok[k], rel=1e-12), k
    none = metrics(env, roll._replace(converged=torch.zeros_like(conv)))
    assert none["nonconverged_share"] == 1.0
    assert all(math.isnan(none[k]) for k in ("cost", "v_min_pu", "v_max_pu", "violation_frequency"))


def test_heavy_load_is_reported_not_hidden(heavy_env):
    m, _ = evaluate(heavy_env, no_control(heavy_env), heavy_env.scenario.split.test[:8])
    assert m["nonconverged"] > 0 and 0 < m["nonconverged_share"] < 1
    assert 0.0 < m["v_min_pu"] and m["v_max_pu"] < 2.0  # not the 18.7 of diverged flows


def test_too_many_nonconverged_steps_stop_training(heavy_env):
    seen = []
    with pytest.raises(NonConvergenceError, match=r"at iteration 1 did not converge, above "
                                                  r"max_nonconverged_share=0.01") as err:
        train(heavy_env, _cfg(**HEAVY), progress_fn=seen.append,
              checkpoint_fn=lambda s: pytest.fail("no checkpoint of a failed iteration"))
    e = err.value
    assert e.iteration == 1 and e.count > 0 and e.share > 0.01
    assert f"{e.count} day-steps" in str(e)
    assert seen[-1]["train/nonconverged"] == e.count  # logged before stopping


def test_nonconverged_counts_reach_the_metrics(heavy_env):
    seen = []
    s = train(heavy_env, _cfg(**HEAVY, iterations=1, max_nonconverged_share=1.0),
              progress_fn=seen.append)
    assert s.iteration == 1
    m = seen[0]
    for k in ("train/nonconverged", "train/nonconverged_share", "val/nonconverged",
              "val/nonconverged_share"):
        assert k in m, k
    assert m["val/nonconverged"] > 0


def test_nonfinite_duals_are_divergence(env, monkeypatch):
    cfg = _cfg()
    s = init_state(env, cfg)
    real = train_mod.dual_ascent

    def poisoned(*a, **k):
        d = real(*a, **k)
        return d._replace(line_over=d.line_over * float("nan"))

    monkeypatch.setattr(train_mod, "dual_ascent", poisoned)
    with pytest.raises(FloatingPointError, match="duals line_over became non-finite at iteration 1"):
        iterate(env, cfg, s)


def test_a_training_budget_counts_training_seconds_only(env, tmp_path):
    """The comparison's budget: validation, checkpoints and start-up are not counted, so every
    method gets the same training seconds (PPO's budget counts the same)."""
    cfg = _cfg(iterations=10**9, eval_every=1, checkpoint_every=1)
    s = train_run(tmp_path / "r", cfg, env=env, logger="none", max_train_seconds=1.0,
                  evaluate=False).state
    assert 1.0 < s.train_seconds < 1.0 + 2 * s.train_seconds / s.iteration + 0.5
    # every iteration here is validated and checkpointed, so far more wall time went by
    assert s.history[-1]["train/wall_seconds"] == s.train_seconds
