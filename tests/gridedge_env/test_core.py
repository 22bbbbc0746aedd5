"""The batched core: a full day's Lagrangian against finite differences, batching, registry."""

import pytest
import torch

from gridedge_env.config import ConfigError
from gridedge_env.core import reset, step
from gridedge_env.costs import lagrangian
from gridedge_env.envs import make_vec
from gridedge_env.registry import env_params, register


@pytest.fixture(scope="module")
def params():
    return env_params("ieee13-50-v0")


@pytest.fixture
def params_on(params, device):
    """``params`` on ``device`` (the module's own object on the CPU)."""
    return params if device.type == "cpu" else env_params("ieee13-50-v0", device=device)


def day_lagrangian(params, actions, days):
    """Cost plus weighted violations of whole days; ``actions`` ``(B, T, N)``."""
    state, _ = reset(params, len(days), days=days)
    total = actions.new_zeros(())
    for t in range(params.n_steps):
        state, out = step(params, state, actions[:, t])
        total = total + lagrangian(out.costs.values(), out.constraints, 50.0, 80.0, 5.0)
    return total


def test_full_day_gradient_matches_finite_differences(params_on):
    params = params_on
    days = torch.tensor([int(params.scenario.split.test[3]), int(params.scenario.split.test[9])])
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(2, params.n_steps, params.n_agents, generator=g, dtype=torch.float64) - 0.5)
    a = (1.6 * a).to(params.node_mask.device).requires_grad_(True)  # in (-0.8, 0.8): no clamp
    (grad,) = torch.autograd.grad(day_lagrangian(params, a, days), a)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    picks = [(0, 0, 0), (0, 18, 5), (1, 36, 12), (1, 40, 30), (0, 47, 49), (1, 20, 7)]
    h = 1e-5
    for idx in picks:
        e = torch.zeros_like(a)
        e[idx] = h
        with torch.no_grad():
            fd = (day_lagrangian(params, a + e, days) - day_lagrangian(params, a - e, days)) / (2 * h)
        assert torch.isclose(grad[idx], fd, rtol=1e-4, atol=1e-6), (idx, grad[idx], fd)


def test_batch_equals_single_days(params_on):
    params = params_on
    days = params.scenario.split.test[:3]
    a = torch.full((3, params.n_agents), 0.2, dtype=torch.float64, device=params.node_mask.device)
    s3, _ = reset(params, 3, days=days)
    outs3 = []
    for _ in range(5):
        s3, out = step(params, s3, a)
        outs3.append(out)
    s1, _ = reset(params, 1, days=days[1:2])
    for t in range(5):
        s1, out1 = step(params, s1, a[1:2])
        torch.testing.assert_close(out1.reward, outs3[t].reward[1:2], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(out1.obs, outs3[t].obs[1:2], rtol=1e-10, atol=1e-10)


def test_observations_are_the_documented_features(params):
    """Columns as in ``docs/env.md`` (time, price, outdoor temperature, device state), stored
    feature-major: each feature one contiguous row over the agents."""
    days = params.scenario.split.test[:2]
    state, _ = reset(params, 2, days=days)
    state, out = step(params, state, torch.full((2, params.n_agents), 0.5, dtype=torch.float64))
    obs, prof, t = out.obs, params.scenario.profiles, 1
    assert obs.shape == (2, params.n_agents, params.obs_dim)
    assert obs.transpose(1, 2).is_contiguous()
    phase = torch.tensor(2 * torch.pi * t / params.n_steps, dtype=torch.float64)
    torch.testing.assert_close(obs[..., 0], torch.sin(phase).expand(2, params.n_agents))
    torch.testing.assert_close(obs[..., 2], (prof.price_gbp_per_kwh[days, t] / 0.5)[:, None]
                               .expand(2, params.n_agents))
    torch.testing.assert_close(obs[..., 5], ((prof.temp_out_c[days, t] - 10) / 10)[:, None]
                               .expand(2, params.n_agents))
    bat = params.kind_slices["battery"]
    torch.testing.assert_close(obs[:, bat, 6], 2 * state.soc - 1)


def test_vec_env_rollout_without_grad():
    env = make_vec("ieee13-50-v0", num_envs=4)
    obs = env.reset(seed=1)
    assert obs.shape == (4, env.n_agents, env.env.obs_dim)
    for _ in range(env.env.n_steps):
        out = env.step(torch.zeros(4, env.n_agents, dtype=torch.float64))
    assert out.terminated.all() and not out.reward.requires_grad
    assert env.global_state().shape == (4, env.n_agents * (env.env.obs_dim + 1))
    with pytest.raises(RuntimeError, match="finished day"):
        env.step(torch.zeros(4, env.n_agents, dtype=torch.float64))


def test_core_bad_input(params):
    state, _ = reset(params, 2, seed=0)
    with pytest.raises(ValueError, match=r"shape \(B, 50\)"):
        step(params, state, torch.zeros(2, 49, dtype=torch.float64))
    bad = torch.zeros(2, 50, dtype=torch.float64)
    bad[1, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        step(params, state, bad)
    with pytest.raises(ValueError, match="out of range"):
        reset(params, 1, days=torch.tensor([10_000]))


def test_registry_errors():
    with pytest.raises(KeyError, match="registered"):
        env_params("ieee999-v0")
    with pytest.raises(ValueError, match="versioned"):
        register("noversion", "ieee13-50")
    with pytest.raises(ConfigError, match="unknown key 'batery'"):
        env_params("ieee13-50-v0", batery={})
    with pytest.raises(ConfigError, match="split"):
        env_params("ieee13-50-v0", split="holdout")
    with pytest.raises(ConfigError, match="kind"):
        env_params("ieee13-50-v0", reward={"kind": "selfish"})


def test_cost_channels_widen_kind_blocks_and_sum_to_the_reward(params):
    state, _ = reset(params, 2, seed=4)
    a = torch.linspace(-1, 1, params.n_agents, dtype=torch.float64).expand(2, -1).contiguous()
    for _ in range(params.n_steps):  # to the last step, where the terminal cost appears
        state, out = step(params, state, a)
    costs = out.costs
    assert set(costs) == {"energy", "degradation", "fuel", "discomfort", "terminal"}
    for name, (block, sl) in costs.blocks.items():
        full = costs[name]
        assert full.shape == (2, params.n_agents)
        if sl is not None:  # zero outside the kind's block, the block inside
            torch.testing.assert_close(full[:, sl], block, rtol=0, atol=0)
            assert (full[:, : sl.start] == 0).all() and (full[:, sl.stop:] == 0).all()
    assert (costs["terminal"] != 0).any()
    total = sum(costs.values())  # team reward: minus the feeder total (cost + penalties)
    pen = params.config.reward.voltage_weight_gbp_per_pu * (
        out.constraints.v_over_pu + out.constraints.v_under_pu).sum(-1)
    pen = pen + params.config.reward.line_weight_gbp * out.constraints.line_over.sum(-1)
    torch.testing.assert_close(out.reward[:, 0], -(total.sum(-1) + pen), rtol=1e-12, atol=1e-9)


@pytest.mark.slow
def test_compiled_stages_match_eager_forward_and_gradient():
    """``compile=True`` (torch.compile of the element-wise stages) changes speed, not results."""
    eager, comp = env_params("ieee13-50-v0"), env_params("ieee13-50-v0", compile=True)
    days = eager.scenario.split.test[:3]
    g = torch.Generator().manual_seed(1)
    a = (1.8 * torch.rand(3, 4, eager.n_agents, generator=g, dtype=torch.float64) - 0.9)
    grads = []
    for params in (eager, comp):
        x = a.clone().requires_grad_(True)
        state, _ = reset(params, 3, days=days)
        total, outs = x.new_zeros(()), []
        for t in range(4):
            state, out = step(params, state, x[:, t])
            outs.append(out)
            total = total + lagrangian(out.costs.values(), out.constraints, 50.0, 80.0, 5.0)
        grads.append((torch.autograd.grad(total, x)[0], outs))
    (g_e, o_e), (g_c, o_c) = grads
    for e, c in zip(o_e, o_c, strict=True):
        torch.testing.assert_close(c.obs, e.obs, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.reward, e.reward, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.info["v_pu"], e.info["v_pu"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_c, g_e, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("tol", [1e-8, 1e-14])
def test_fused_no_grad_step_matches_eager(tol):
    """Without gradients ``compile=True`` runs the whole step fused, the power flow unrolled
    (:func:`unrolled_solve`). A day whose flow it leaves unconverged sends the step down the
    regular path and raises the unrolled count to what that needed; at 1e-14 every early step
    does. Either way the outcome equals the eager step's to the power-flow tolerance."""
    eager = env_params("ieee13-50-v0", pf_tol_pu=tol)
    fused = env_params("ieee13-50-v0", pf_tol_pu=tol, compile=True)
    days = eager.scenario.split.test[:3]
    g = torch.Generator().manual_seed(2)
    a = 2.2 * torch.rand(6, 3, eager.n_agents, generator=g, dtype=torch.float64) - 1.1
    (s_e, _), (s_f, _) = reset(eager, 3, days=days), reset(fused, 3, days=days)
    close = {"rtol": 1e-9, "atol": max(10 * tol, 1e-11)}  # either side may be tol away
    fused_steps = 0
    with torch.no_grad():
        for t in range(6):
            s_e, o_e = step(eager, s_e, a[t])
            s_f, o_f = step(fused, s_f, a[t])
            fused_steps += bool((o_f.info["pf_iterations"] == fused.compiled["unroll"]).all())
            for x, y in [(o_f.info["v_pu"], o_e.info["v_pu"]),
                         (o_f.info["line_loading"], o_e.info["line_loading"]),
                         (o_f.constraints.unbalance, o_e.constraints.unbalance)]:
                torch.testing.assert_close(x, y, **close)
            for x, y in [(o_f.obs, o_e.obs), (s_f.soc, s_e.soc),
                         (o_f.costs["terminal"], o_e.costs["terminal"]),
                         (o_f.info["clipped_actions"], o_e.info["clipped_actions"])]:
                torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
            # the reward carries 100 GBP per p.u. of exceedance at each of 29 nodes
            torch.testing.assert_close(o_f.reward, o_e.reward, rtol=1e-9, atol=3e3 * close["atol"])
            assert o_f.info["converged"].all()
    assert fused_steps >= 1 and fused.compiled["unroll"] >= fused.powerflow.settings.unroll
