"""GradMAP's pieces: the surrogate's first gradient is GradMA's, the clipped trust region, the
dual ascent at every granularity, and an update that lowers the Lagrangian."""

from types import SimpleNamespace

import pytest
import torch

from gradmap_agents.dual import SCHEMES, Duals, dual_ascent, init_duals, penalty, tightened
from gradmap_agents.gradmap import (
    environment_gradient,
    gradma_update,
    gradmap_update,
    lagrangian,
    surrogate,
)
from gradmap_agents.policy import StackedPolicy, kind_groups
from gridedge_env.costs import Constraints
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout


@pytest.fixture(scope="module")
def env():
    return env_params("ieee13-50-v0")


@pytest.fixture
def env_on(env, device):
    """``env`` on ``device`` (the module's own object on the CPU)."""
    return env if device.type == "cpu" else env_params("ieee13-50-v0", device=device)


def _policy(env, seed=0, dtype=torch.float64):
    return StackedPolicy(env.n_agents, env.obs_dim, kind_groups(env.kind_slices, (16,)), seed=seed,
                         out_scale=1.0, dtype=dtype, device=env.node_mask.device)


def _sized(n_steps, n_nodes, n_line_phases):
    """Just the sizes init_duals reads of an environment."""
    return SimpleNamespace(n_steps=n_steps, node_mask=torch.ones(n_nodes, dtype=torch.float64),
                           scenario=SimpleNamespace(feeder=SimpleNamespace(n_nodes=n_nodes)),
                           powerflow=SimpleNamespace(line_phase_names=[""] * n_line_phases))


def _duals(env, gran="node_time"):
    return init_duals(env, gran, 300.0, 30.0)


def test_surrogate_first_gradient_equals_gradma(env_on):
    env = env_on
    pol = _policy(env)
    days = env.scenario.split.train[[1, 12, 50]]
    duals = _duals(env)
    eg = environment_gradient(env, pol, days, duals, param_grad=True)
    gradma = [p.grad.clone() for p in pol.parameters()]
    pol.zero_grad()
    for form in ("clipped", "proximal"):
        x = pol.agent_major(eg.obs)
        a0, g = (v.flatten(0, 1).T for v in (eg.a0, eg.g))
        s = surrogate(pol, x, a0, g, eta=0.1, eps=0.05, form=form)
        grads = torch.autograd.grad(s, list(pol.parameters()))
        for a, b in zip(grads, gradma, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert sum(float(g.abs().sum()) for g in gradma) > 0
    assert eg.loss == pytest.approx(float(lagrangian(eg.roll, duals)))


def test_clipped_surrogate_stops_beyond_the_trust_region():
    pol = StackedPolicy(1, 2, [(slice(0, 1), ())], seed=0, dtype=torch.float64)  # tanh(w.o+b)
    obs = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)  # (N=1, S=1, F=2): agent-major
    a = pol.forward_agent_major(obs).detach()
    g = torch.ones_like(a)  # improving direction: decreasing the action
    for d, expect_pull in ((-0.2, False), (-0.01, True), (0.2, True)):
        a0 = a - d  # so that pi(o) - a0 = d
        s = surrogate(pol, obs, a0, g, eta=float("inf"), eps=0.1, form="clipped")  # no pull
        grad = torch.autograd.grad(s, pol.nets[0].b0)[0]
        assert (grad.abs().sum() > 0) == expect_pull, d
    s = surrogate(pol, obs, a + 0.2, g, eta=float("inf"), eps=0.1, form="proximal")
    assert torch.autograd.grad(s, pol.nets[0].b0)[0].abs().sum() > 0  # no clip: keeps pushing
    with pytest.raises(ValueError, match="surrogate form"):
        surrogate(pol, obs, a, g, 1.0, 0.1, form="trust")


@pytest.mark.parametrize("gran,shape", [("node_time", (48, 41)), ("node", (1, 41)),
                                        ("time", (48, 1)), ("global", (1, 1))])
def test_dual_ascent_granularities(gran, shape):
    d = init_duals(_sized(48, 41, 30), gran, 100.0, 10.0)
    assert d.v_over_pu.shape == shape and d.line_over.shape == (shape[0], 30 if shape[1] > 1 else 1)
    g = torch.zeros(4, 48, 41, dtype=torch.float64)
    g[:, 10, 7] = 0.02  # one node-step violated on every day
    cons = Constraints(g, torch.zeros_like(g), torch.zeros(4, 48, 30, dtype=torch.float64), None)
    new = dual_ascent(d, cons, rho_v=1000.0, rho_line=1.0, mu_max=1e6)
    moved = new.v_over_pu - d.v_over_pu
    assert float(moved.max()) == pytest.approx(20.0) and float(moved.min()) >= 0
    assert int((moved > 0).sum()) == 1  # only the multiplier that weighs (10, 7) moves
    assert torch.equal(new.v_under_pu, d.v_under_pu)  # no undervoltage: the projection keeps it
    down = dual_ascent(Duals(d.v_over_pu, torch.full_like(d.v_under_pu, -5.0), d.line_over), cons,
                       1.0, 1.0, 1e6)
    assert float(down.v_under_pu.min()) == 0.0  # projected onto mu >= 0
    assert penalty(new, cons).shape == (4,)
    with pytest.raises(ValueError, match="granularity"):
        init_duals(_sized(48, 41, 30), "bus", 1.0, 1.0)


def test_signed_multipliers_fall_where_limits_hold_and_rising_ones_never_do(env):
    """The issue's point 3: with exceedances (``relu``) a multiplier can only grow; with the
    signed constraint functions it falls where the limit holds with slack."""
    days = torch.arange(4)
    roll = rollout(env, days, no_control(env))
    d0 = init_duals(env, "node_time", 100.0, 10.0)
    cons = {s: tightened(env, roll.v_pu, roll.line_loading, 0.003, 0.03, scheme=s)
            for s in SCHEMES}
    # signed terms are the constraint functions: exceedance where positive, slack below zero
    over = env.scenario.config.limits.v_max_pu - 0.003
    node = env.node_mask.bool()
    torch.testing.assert_close(cons["signed"].v_over_pu[..., node], roll.v_pu[..., node] - over)
    torch.testing.assert_close(cons["rising"].v_over_pu, cons["signed"].v_over_pu.clamp_min(0))
    new = {s: dual_ascent(d0, c, 1e3, 1e3, 1e6) for s, c in cons.items()}
    assert float((new["rising"].v_over_pu - d0.v_over_pu).min()) >= 0
    fell = new["signed"].v_over_pu < d0.v_over_pu
    slack = (cons["signed"].v_over_pu.mean(0) < 0) & node  # on average inside the limit
    assert bool(fell[slack].all()) and int(fell.sum()) > 0
    assert float(new["signed"].v_under_pu.min()) >= 0  # projected onto mu >= 0
    # the Lagrangian weighs the signed terms: at the same multipliers slack lowers it
    assert bool((penalty(d0, cons["signed"]) < penalty(d0, cons["rising"])).all())
    with pytest.raises(ValueError, match="scheme"):
        tightened(env, roll.v_pu, roll.line_loading, scheme="falling")


def test_gradma_rms_normalisation_scales_its_step_not_its_direction(env):
    duals = init_duals(env, "node_time", 100.0, 10.0)
    grads = {}
    for scale in ("none", "rms"):
        pol = _policy(env, seed=3)
        opt = torch.optim.SGD(pol.parameters(), lr=0.0)  # keep the parameters: read .grad
        eg = gradma_update(env, pol, opt, torch.arange(2), duals, grad_scale=scale)
        grads[scale] = torch.cat([p.grad.flatten() for p in pol.parameters()])
    rms = float(eg.g.pow(2).mean().sqrt())
    torch.testing.assert_close(grads["rms"] * rms, grads["none"])


@pytest.mark.parametrize("method", ["gradma", "gradmap"])
def test_one_update_lowers_the_lagrangian_of_its_days(env_on, method):
    env = env_on
    pol = _policy(env, seed=1, dtype=torch.float32)  # the trainer's default precision
    opt = torch.optim.Adam(pol.parameters(), lr=3e-3)
    days = env.scenario.split.train[:4]
    duals = _duals(env)
    before = environment_gradient(env, pol, days, duals).loss
    if method == "gradma":
        for _ in range(3):
            gradma_update(env, pol, opt, days, duals)
    else:
        gradmap_update(env, pol, opt, days, duals, epochs=4, minibatches=4, eta=0.05, eps=0.1,
                       generator=torch.Generator().manual_seed(0))
    assert environment_gradient(env, pol, days, duals).loss < before


def test_float32_environment_trains():
    env32 = env_params("ieee13-50-v0", dtype=torch.float32)
    pol = _policy(env32, seed=2, dtype=torch.float32)
    opt = torch.optim.Adam(pol.parameters(), lr=3e-3)
    duals = init_duals(env32, "node_time", 300.0, 30.0)
    days = env32.scenario.split.train[:4]
    before = environment_gradient(env32, pol, days, duals)
    assert before.g.dtype == torch.float32 and torch.isfinite(before.g).all()
    gradmap_update(env32, pol, opt, days, duals, epochs=4, minibatches=4, eta=0.05, eps=0.1,
                   generator=torch.Generator().manual_seed(0))
    assert environment_gradient(env32, pol, days, duals).loss < before.loss
