"""Whole days under a policy: the whole-day and stepwise paths agree, and the closed-loop
action gradient matches finite differences."""

from functools import partial

import pytest
import torch

from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout


@pytest.fixture(scope="module")
def params():
    return env_params("ieee13-50-v0", pf_tol_pu=1e-12)


@pytest.fixture
def params_on(params, device):
    """``params`` on ``device`` (the module's own object on the CPU)."""
    return params if device.type == "cpu" else env_params("ieee13-50-v0", pf_tol_pu=1e-12,
                                                           device=device)


def linear_policy(params, seed=0):
    """An independent per-agent linear-tanh policy of the local observation."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.rand(params.n_agents, params.obs_dim, generator=g, dtype=torch.float64) - 0.5)
    w = w.to(params.node_mask.device).requires_grad_(True)
    return w, lambda obs, t, state: torch.tanh((obs * w).sum(-1) + 0.1)


def lagrangian(r):
    c = r.constraints
    return r.cost.sum() + 300 * (c.v_over_pu.sum() + c.v_under_pu.sum()) + 20 * c.line_over.sum()


def test_whole_day_and_stepwise_paths_agree_with_the_same_gradient(params_on):
    params = params_on
    w, pol = linear_policy(params)
    days = params.scenario.split.train[[1, 40, 100]]  # line overload, overvoltage, none
    out = {}
    for path in ("whole_day", "stepwise"):
        r = rollout(params, days, pol, perturb=True, path=path)
        g_delta, g_w = torch.autograd.grad(lagrangian(r), [r.delta, w])
        out[path] = (r, g_delta, g_w)
    (a, ga, wa), (b, gb, wb) = out["whole_day"], out["stepwise"]
    for field in ("obs", "actions", "cost", "cost_agent", "v_pu", "line_loading", "p_agent_kw"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=1e-9, atol=1e-9)
    for k in a.cost_parts:
        torch.testing.assert_close(a.cost_parts[k], b.cost_parts[k], rtol=1e-9, atol=1e-9)
    for x, y in zip(a.constraints[:3], b.constraints[:3], strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(wa, wb, rtol=1e-7, atol=1e-9)
    assert a.v_pu.shape == (3, params.n_steps, params.scenario.feeder.n_nodes)
    assert bool(a.converged.all())
    assert sum(c.sum() for c in a.constraints[:3]) > 0  # something binds


def test_closed_loop_action_gradient_matches_finite_differences(params_on):
    """``dL/d delta`` includes what an action changes in later observations and actions."""
    params = params_on
    w, pol = linear_policy(params, seed=3)
    days = params.scenario.split.train[[12, 60]]
    r = rollout(params, days, pol, perturb=True)
    (g,) = torch.autograd.grad(lagrangian(r), r.delta)
    h = 1e-6
    sl = params.kind_slices
    picks = [(0, 5, sl["battery"].start), (1, 30, sl["battery"].start + 3),
             (0, 17, sl["heatpump"].start + 2), (1, 40, sl["generator"].start + 1)]
    for idx in picks:
        e = torch.zeros_like(r.delta)
        e[idx] = h
        with torch.no_grad():
            def shifted(d):
                return lagrangian(rollout(params, days, lambda o, t, s: pol(o, t, s) + d[:, t]))
            fd = (shifted(e) - shifted(-e)) / (2 * h)
        assert torch.isclose(g[idx], fd, rtol=1e-4, atol=1e-6), (idx, g[idx], fd)
    # closed loop: the battery's action at step 5 moves its later state and so later actions
    assert (r.obs[0, 6:, sl["battery"].start, -1] != r.obs[0, 5, sl["battery"].start, -1]).any()


def test_observe_voltage_takes_the_stepwise_path():
    p = env_params("ieee13-50-v0", observe_voltage=True)
    _, pol = linear_policy(p)
    r = rollout(p, p.scenario.split.train[:2], pol)  # auto: stepwise
    assert r.obs.shape[-1] == p.obs_dim == 8
    with pytest.raises(ValueError, match="observe_voltage"):
        rollout(p, p.scenario.split.train[:2], pol, path="whole_day")
    with pytest.raises(ValueError, match="path must be"):
        rollout(p, p.scenario.split.train[:2], pol, path="sideways")


def test_nan_actions_are_an_error(params):
    with pytest.raises(ValueError, match="NaN/inf actions at step 0"):
        rollout(params, params.scenario.split.train[:1],
                lambda o, t, s: torch.full(o.shape[:2], float("nan"), dtype=o.dtype))


def test_power_flow_iterations_and_contraction_of_every_day_step():
    """Both paths carry each (day, step)'s power-flow record, equal to a direct solve of the
    same injections, detached even when the rollout is differentiated."""
    env = env_params("ieee13-50-v0")
    days = env.scenario.split.test[:2]
    with torch.no_grad():
        a = rollout(env, days, no_control(env))
        b = rollout(env, days, no_control(env), path="stepwise")
    n_t = env.n_steps
    assert a.pf_iterations.shape == a.pf_contraction.shape == (2, n_t)
    assert torch.equal(a.pf_iterations, b.pf_iterations)
    torch.testing.assert_close(a.pf_contraction, b.pf_contraction, rtol=1e-6, atol=0)
    s = torch.complex(a.p_agent_kw, a.q_agent_kvar).reshape(2 * n_t, -1)
    r = env.powerflow.solve(s, load_scale=0.0, at=env.agent_node)
    assert torch.equal(r.iterations.reshape(2, n_t), a.pf_iterations)
    torch.testing.assert_close(r.contraction.reshape(2, n_t), a.pf_contraction, rtol=1e-6, atol=0)
    assert bool(((a.pf_contraction > 0) & (a.pf_contraction < 1)).all())
    w, pol = linear_policy(env)
    for path in ("whole_day", "stepwise"):
        g = rollout(env, days[:1], pol, perturb=True, path=path)
        assert g.cost.requires_grad and g.p_agent_kw.requires_grad
        assert not (g.pf_iterations.requires_grad or g.pf_contraction.requires_grad
                    or g.q_agent_kvar.requires_grad)


@pytest.mark.slow
def test_fused_step_reports_its_unrolled_iterations_and_last_rate():
    """A compiled environment's stepwise rollout takes the fused step: it reports the
    iterations it unrolled and the rate at the last; where that is the iteration the eager
    solve stopped at, the rate is the eager one."""
    eager, fused = env_params("ieee13-50-v0"), env_params("ieee13-50-v0", compile=True)
    days = eager.scenario.split.test[:2]
    with torch.no_grad():
        e = rollout(eager, days, no_control(eager), path="stepwise")
        f = rollout(fused, days, no_control(fused), path="stepwise")
    assert bool((f.pf_iterations >= e.pf_iterations).all())
    assert bool((f.pf_iterations == fused.compiled["unroll"]).any())  # fused steps happened
    assert bool(torch.isfinite(f.pf_contraction).all())
    same = f.pf_iterations == e.pf_iterations
    assert bool(same.any())
    torch.testing.assert_close(f.pf_contraction[same], e.pf_contraction[same], rtol=1e-5, atol=0)


def _saved_bytes(fn):
    """Bytes of the tensors autograd keeps for the backward while ``fn()`` runs (storage counted
    once), and ``fn()``'s result."""
    seen: dict = {}

    def pack(x):
        seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    return sum(seen.values()), out


def test_recompute_gives_the_same_gradient_and_keeps_less_for_the_backward(params):
    w, pol = linear_policy(params)
    days = params.scenario.split.train[[1, 40, 100]]
    out = {}
    for recompute in (False, True):
        kept, r = _saved_bytes(partial(rollout, params, days, pol, perturb=True,
                                       path="whole_day", recompute=recompute))
        out[recompute] = (kept, r, *torch.autograd.grad(lagrangian(r), [r.delta, w]))
    (kept_a, a, ga, wa), (kept_b, b, gb, wb) = out[False], out[True]
    torch.testing.assert_close(a.cost, b.cost, rtol=0, atol=0)
    torch.testing.assert_close(b.obs, a.obs, rtol=0, atol=0)  # observed inside the checkpoint
    torch.testing.assert_close(gb, ga, rtol=1e-12, atol=0)
    torch.testing.assert_close(wb, wa, rtol=1e-12, atol=0)
    # neither the steps' policy and device tensors nor their observations are kept (measured:
    # 0.42 of the bytes on this case, 0.64 while the observations were kept; the power flow's
    # and the constraints' tensors, kept either way, are most of the rest)
    assert kept_b < 0.5 * kept_a
    with pytest.raises(ValueError, match="whole-day path"):
        rollout(params, days, pol, path="stepwise", recompute=True)
