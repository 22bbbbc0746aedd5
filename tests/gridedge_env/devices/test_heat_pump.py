"""Heat pump: thermal model against its analytic solution, COP, comfort cost, gradients."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge_env.devices import heat_pump
from gridedge_env.devices.heat_pump import (
    HeatPumpConfig,
    HeatPumpExog,
    HeatPumpParams,
    HeatPumpState,
)
from gridedge_env.devices.params import sample_heat_pump

F64 = torch.float64


def make_params(r=2.0, c=2.0, p_max=4.0, cop=3.0, exact=True, t_low=19.0, t_high=22.0):
    def t(v):
        return torch.tensor([float(v)], dtype=F64)

    return HeatPumpParams(
        t(r), t(c), t(p_max), t(cop), t(0.0), t(0.0), t(45.0), t(t_low), t(t_high), t(20.0),
        t(1.0), t(1.0), torch.tensor([exact]),
    )


def run(params, t0, t_out, action, n, dt_h):
    state = HeatPumpState(torch.tensor([[t0]], dtype=F64))
    exog = HeatPumpExog(torch.tensor([[t_out]], dtype=F64))
    a = torch.tensor([[action]], dtype=F64)
    temps = []
    for _ in range(n):
        state, _, _ = heat_pump.step(params, state, a, exog, dt_h)
        temps.append(state.t_in_c.item())
    return temps


@settings(deadline=None, max_examples=100)
@given(
    st.floats(0.5, 10.0), st.floats(0.5, 20.0), st.floats(-15.0, 35.0), st.floats(-10.0, 30.0),
    st.sampled_from([0.25, 0.5, 1.0]),
)
def test_zero_power_decays_to_outdoor_temperature(r, c, t0, t_out, dt_h):
    params = make_params(r=r, c=c)
    temps = run(params, t0, t_out, -1.0, 48, dt_h)  # action -1: heat pump off
    for k, t in enumerate(temps, start=1):
        expected = t_out + (t0 - t_out) * math.exp(-k * dt_h / (r * c))
        assert t == pytest.approx(expected, abs=1e-9)
    gaps = [abs(t0 - t_out)] + [abs(t - t_out) for t in temps]
    assert all(b <= a + 1e-12 for a, b in zip(gaps, gaps[1:], strict=False))


@settings(deadline=None, max_examples=30)
@given(st.floats(0.5, 5.0), st.floats(0.5, 10.0), st.floats(-1.0, 1.0), st.floats(-10.0, 15.0))
def test_exact_step_matches_analytic_and_fine_integration(r, c, a, t_out):
    params = make_params(r=r, c=c)
    p = (a + 1) / 2 * 4.0
    t_ss = t_out + r * 3.0 * p
    (one,) = run(params, 20.0, t_out, a, 1, 0.5)
    assert one == pytest.approx(t_ss + (20.0 - t_ss) * math.exp(-0.5 / (r * c)), abs=1e-9)
    # semigroup: 10 steps of 0.05 h == 1 step of 0.5 h
    assert run(params, 20.0, t_out, a, 10, 0.05)[-1] == pytest.approx(one, abs=1e-9)
    # fine forward-Euler integration of the ODE converges to the exact step
    fine = run(make_params(r=r, c=c, exact=False), 20.0, t_out, a, 500, 0.5 / 500)[-1]
    assert fine == pytest.approx(one, abs=5e-3 * max(1.0, abs(t_ss - 20.0)))


def test_euler_option_is_first_order():
    params = make_params(exact=False)
    (euler,) = run(params, 20.0, 0.0, -1.0, 1, 0.5)
    assert euler == pytest.approx(20.0 + 0.5 / 2.0 * (0.0 - 20.0) / 2.0)
    (exact,) = run(make_params(), 20.0, 0.0, -1.0, 1, 0.5)
    assert euler < exact  # Euler overshoots the decay


def test_cop_models():
    const = sample_heat_pump(HeatPumpConfig(), 3, seed=0, dtype=F64)
    t_out = torch.tensor([[-10.0], [0.0], [12.0]], dtype=F64)
    c = heat_pump.cop(const, t_out)
    assert torch.equal(c, const.cop_c0.expand(3, 3))
    assert ((c >= 2.35) & (c <= 3.5)).all()
    staff = sample_heat_pump(HeatPumpConfig(cop_model="staffell2012", t_sink_c=45.0), 1, seed=0)
    t = torch.tensor([0.0, 10.0, 40.0, -30.0])
    expect = [6.81 - 0.121 * d + 0.00063 * d * d for d in (45.0, 35.0, 15.0, 60.0)]
    assert heat_pump.cop(staff, t).tolist() == pytest.approx(expect, rel=1e-6)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.floats(-4, 4), min_size=3, max_size=3), st.floats(-10, 20), st.floats(5, 30))
def test_power_in_bounds_and_costs_nonnegative(actions, t_out, t0):
    params = sample_heat_pump(HeatPumpConfig(), 3, seed=1, dtype=F64)
    state = HeatPumpState(torch.full((1, 3), t0, dtype=F64))
    a = torch.tensor([actions], dtype=F64)
    new, (p, q), costs = heat_pump.step(params, state, a, HeatPumpExog(torch.tensor([[t_out]])))
    assert ((p >= 0) & (p <= params.p_max_kw)).all() and (q == 0).all()
    d = costs["discomfort"]
    assert (d >= 0).all()
    inside = (new.t_in_c >= params.t_low_c) & (new.t_in_c <= params.t_high_c)
    assert (d[inside] == 0).all() and (d[~inside] > 0).all()


def test_discomfort_is_per_degree_hour():
    params = make_params(t_low=19.0, t_high=22.0)
    state = HeatPumpState(torch.tensor([[17.0]], dtype=F64))
    exog = HeatPumpExog(torch.tensor([[17.0]], dtype=F64))
    new, _, costs = heat_pump.step(params, state, torch.tensor([[-1.0]], dtype=F64), exog, 0.5)
    assert new.t_in_c.item() == pytest.approx(17.0)
    assert costs["discomfort"].item() == pytest.approx(1.0 * 2.0 * 0.5)


@pytest.mark.parametrize("cfg", [HeatPumpConfig(), HeatPumpConfig(cop_model="staffell2012")])
def test_sizing_holds_comfort_at_design_temperature(cfg):
    params = sample_heat_pump(cfg, 50, seed=2, dtype=F64)
    t_design = torch.full((1, 50), cfg.t_design_c, dtype=F64)
    t_ss = t_design + params.r_k_per_kw * heat_pump.cop(params, t_design) * params.p_max_kw
    assert (t_ss >= params.t_low_c).all()


@pytest.mark.parametrize("cop_model", ["constant", "staffell2012"])
@pytest.mark.parametrize("disc", ["exact", "euler"])
def test_gradcheck_step(cop_model, disc):
    cfg = HeatPumpConfig(cop_model=cop_model, discretisation=disc)
    g = torch.Generator().manual_seed(4)
    params = sample_heat_pump(cfg, 4, generator=g, dtype=F64)
    t_in = (16 + 8 * torch.rand(2, 4, generator=g, dtype=F64)).requires_grad_(True)
    act = (1.8 * torch.rand(2, 4, generator=g, dtype=F64) - 0.9).requires_grad_(True)
    t_out = (-5 + 20 * torch.rand(2, 1, generator=g, dtype=F64)).requires_grad_(True)

    def fn(t_in, act, t_out):
        s, (p, q), c = heat_pump.step(params, HeatPumpState(t_in), act, HeatPumpExog(t_out))
        return s.t_in_c, p, q, c["discomfort"]

    assert torch.autograd.gradcheck(fn, (t_in, act, t_out))


def test_straight_through_gradient_for_out_of_range_action():
    params = make_params()
    grads = []
    for ste in (True, False):
        a = torch.tensor([[-3.0]], dtype=F64, requires_grad=True)
        s, _, _ = heat_pump.step(
            params, HeatPumpState(torch.tensor([[20.0]], dtype=F64)), a,
            HeatPumpExog(torch.tensor([[0.0]], dtype=F64)), straight_through=ste,
        )
        grads.append(torch.autograd.grad(s.t_in_c.sum(), a)[0].item())
    assert grads[0] > 0 and grads[1] == 0.0


def test_batch_of_one_equals_slice_and_exog_broadcast(device):
    g = torch.Generator().manual_seed(5)
    params = sample_heat_pump(HeatPumpConfig(), 6, generator=g, dtype=F64, device=device)
    t_in = (15 + 10 * torch.rand(3, 6, generator=g, dtype=F64)).to(device)
    act = (2 * torch.rand(3, 6, generator=g, dtype=F64) - 1).to(device)
    t_out = (10 * torch.rand(3, 1, generator=g, dtype=F64)).to(device)
    full = heat_pump.step(params, HeatPumpState(t_in), act, HeatPumpExog(t_out))
    wide = heat_pump.step(params, HeatPumpState(t_in), act, HeatPumpExog(t_out.expand(3, 6)))
    assert torch.equal(full[0].t_in_c, wide[0].t_in_c)
    for b in range(3):
        sl = slice(b, b + 1)
        one = heat_pump.step(params, HeatPumpState(t_in[sl]), act[sl], HeatPumpExog(t_out[sl]))
        assert torch.equal(one[0].t_in_c, full[0].t_in_c[sl])
        assert torch.equal(one[1][0], full[1][0][sl])
        assert torch.equal(one[2]["discomfort"], full[2]["discomfort"][sl])


def test_config_validation():
    with pytest.raises(ValueError):
        HeatPumpConfig(cop_model="carnot")
    with pytest.raises(ValueError):
        HeatPumpConfig(r_k_per_kw=(0.0, 1.0))
