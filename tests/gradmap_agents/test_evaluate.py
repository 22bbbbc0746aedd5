"""Evaluation metrics in their own units, checked against the rollout they come from."""

import torch

from gradmap_agents.evaluate import metrics
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout


def test_voltage_and_line_metrics_in_their_own_units():
    env = env_params("ieee13-50-v0")
    days = env.scenario.split.test[:3]
    with torch.no_grad():
        roll = rollout(env, days, no_control(env))
        step = rollout(env, days, no_control(env), path="stepwise")
    m = metrics(env, roll)
    node = env.node_mask.bool()
    c = roll.constraints
    v_exc = torch.maximum(c.v_over_pu, c.v_under_pu)[..., node].flatten(1).amax(1)
    l_exc = c.line_over.flatten(1).amax(1)
    assert m["voltage_worst_pu"] == float(v_exc.mean())
    assert m["voltage_worst_pu_max"] == float(v_exc.max())
    assert m["line_worst_overload_max"] == float(l_exc.max())
    assert m["voltage_violation_days"] == float((v_exc > 0).double().mean())
    assert m["line_violation_days"] == float((l_exc > 0).double().mean())
    assert m["voltage_violation_frequency"] == m["violation_frequency"]
    # the parts add up to the combined magnitude the existing target uses
    assert abs(m["voltage_violation_magnitude"] + m["line_violation_magnitude"]
               - m["violation_magnitude"]) <= 1e-12 * max(1.0, m["violation_magnitude"])
    # no control violates on this scenario: the metrics see it (docs/scenarios.md)
    assert m["voltage_violation_days"] > 0 or m["line_violation_days"] > 0
    # the whole-day rollout reports the same voltage unbalance as stepping the core, up to the
    # two solves' tolerance: each path solves to 1e-8 p.u., so |V-|/|V+| (|V+| ~ 1 p.u.) may
    # differ by ~2e-8 (measured 1.5e-10)
    assert c.unbalance.shape == step.constraints.unbalance.shape and c.unbalance.shape[-1] > 0
    torch.testing.assert_close(c.unbalance, step.constraints.unbalance, rtol=0, atol=2e-8)
    assert 0 < m["vuf_mean"] <= m["vuf_max"] < 0.2


def test_power_flow_conditioning_metrics_over_converged_day_steps():
    env = env_params("ieee13-50-v0")
    with torch.no_grad():
        roll = rollout(env, env.scenario.split.test[:2], no_control(env))
    m = metrics(env, roll)
    keys = ("pf_iterations_mean", "pf_iterations_max", "pf_contraction_mean", "pf_contraction_max")
    assert all(isinstance(m[k], float) and m[k] == m[k] and abs(m[k]) < float("inf") for k in keys)
    assert m["pf_iterations_mean"] == float(roll.pf_iterations.double().mean())
    assert m["pf_iterations_max"] == float(roll.pf_iterations.max())
    assert m["pf_contraction_max"] == float(roll.pf_contraction.max())
    assert 0 < m["pf_contraction_mean"] <= m["pf_contraction_max"] < 1
    # a day-step flagged non-converged leaves the record, a NaN rate is skipped
    bad = roll.converged.clone()
    bad[0, 5] = False
    it, rate = roll.pf_iterations.clone(), roll.pf_contraction.clone()
    it[0, 5], rate[0, 5], rate[1, 7] = 999, 50.0, float("nan")
    m2 = metrics(env, roll._replace(converged=bad, pf_iterations=it, pf_contraction=rate))
    keep = bad.clone()
    keep[1, 7] = False
    assert m2["pf_iterations_max"] == float(roll.pf_iterations[bad].max())
    assert m2["pf_contraction_max"] == float(roll.pf_contraction[keep].max())
    assert m2["pf_contraction_mean"] == float(roll.pf_contraction[keep].double().mean())
