"""Battery: SoC bounds, energy balance, costs, gradients, batching."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge_env.devices import battery
from gridedge_env.devices.battery import BatteryConfig, BatteryParams, BatteryState
from gridedge_env.devices.params import sample_battery

F64 = torch.float64


def make_params(cap, p_max, eta_c, eta_d, soc_min, soc_max, soc0, signed=True):
    n = len(cap)

    def t(v):
        return torch.as_tensor(v, dtype=F64).expand(n).clone()

    return BatteryParams(
        t(cap), t(p_max), t(eta_c), t(eta_d), t(soc_min), t(soc_max), t(soc0),
        t(0.013), t(1.0), torch.full((n,), signed),
    )


@st.composite
def battery_case(draw, max_agents=3, max_steps=48):
    n = draw(st.integers(1, max_agents))
    f = st.floats
    cap = draw(st.lists(f(0.5, 20.0), min_size=n, max_size=n))
    p_max = draw(st.lists(f(0.0, 10.0), min_size=n, max_size=n))
    eta_c = draw(st.lists(f(0.7, 1.0), min_size=n, max_size=n))
    eta_d = draw(st.lists(f(0.7, 1.0), min_size=n, max_size=n))
    lo = draw(st.lists(f(0.0, 0.45), min_size=n, max_size=n))
    hi = draw(st.lists(f(0.55, 1.0), min_size=n, max_size=n))
    frac = draw(st.lists(f(0.0, 1.0), min_size=n, max_size=n))
    soc0 = [a + u * (b - a) for a, b, u in zip(lo, hi, frac, strict=True)]
    signed = draw(st.booleans())
    t = draw(st.integers(1, max_steps))
    act = st.one_of(f(-1.0, 1.0), st.sampled_from([-1.0, 0.0, 1.0]), f(-5.0, 5.0))
    actions = draw(st.lists(st.lists(act, min_size=n, max_size=n), min_size=t, max_size=t))
    dt_h = draw(st.sampled_from([0.25, 0.5, 1.0]))
    params = make_params(cap, p_max, eta_c, eta_d, lo, hi, soc0, signed)
    return params, torch.tensor(actions, dtype=F64).unsqueeze(1), dt_h  # (T, B=1, N)


@settings(deadline=None, max_examples=150)
@given(battery_case())
def test_soc_never_leaves_bounds(case):
    params, actions, dt_h = case
    state = battery.init_state(params, 1)
    for a in actions:
        raw = battery.next_soc(
            params, state.soc, battery.action_to_power(params, state.soc, a, dt_h), dt_h
        )
        assert (raw >= params.soc_min - 1e-12).all() and (raw <= params.soc_max + 1e-12).all()
        state, (p_kw, q), costs = battery.step(params, state, a, None, dt_h)
        assert (state.soc >= params.soc_min).all() and (state.soc <= params.soc_max).all()
        assert (p_kw.abs() <= params.p_max_kw + 1e-12).all()
        assert (q == 0).all() and (costs["degradation"] >= 0).all()


@settings(deadline=None, max_examples=100)
@given(battery_case())
def test_energy_balance(case):
    """Grid energy in = stored energy gained + conversion losses."""
    params, actions, dt_h = case
    state = battery.init_state(params, 1)
    grid = losses = torch.zeros_like(state.soc)
    for a in actions:
        state, (p_kw, _), _ = battery.step(params, state, a, None, dt_h)
        grid = grid + p_kw * dt_h
        p_in, p_out = torch.relu(p_kw), torch.relu(-p_kw)
        losses = losses + ((1 - params.eta_c) * p_in + (1 / params.eta_d - 1) * p_out) * dt_h
    stored = params.capacity_kwh * (state.soc - params.soc_init)
    torch.testing.assert_close(grid, stored + losses, rtol=0, atol=1e-9)


def test_bounds_and_maps():
    params = make_params([10.0], [5.0], [1.0], [1.0], [0.1], [0.9], [0.85])
    soc = torch.tensor([[0.85]], dtype=F64)
    p_lo, p_hi = battery.power_bounds(params, soc, 0.5)
    assert p_hi.item() == pytest.approx(1.0) and p_lo.item() == pytest.approx(-5.0)
    a = torch.tensor([[-1.0, 0.0, 0.5, 1.0]], dtype=F64).T.expand(4, 1)  # 4 scenarios
    s = soc.expand(4, 1)
    signed = battery.action_to_power(params, s, a, 0.5).flatten().tolist()
    assert signed == pytest.approx([-5.0, 0.0, 0.5, 1.0])
    affine = params._replace(signed_map=torch.tensor([False]))
    affine = battery.action_to_power(affine, s, a, 0.5).flatten().tolist()
    assert affine == pytest.approx([-5.0, -2.0, -0.5, 1.0])


def test_efficiencies_and_costs():
    params = make_params([10.0], [4.0], [0.9], [0.8], [0.0], [1.0], [0.5])
    st0 = BatteryState(torch.tensor([[0.5]], dtype=F64))
    up, (p, _), c = battery.step(params, st0, torch.tensor([[1.0]], dtype=F64), None, 1.0)
    assert p.item() == 4.0 and up.soc.item() == pytest.approx(0.5 + 0.9 * 4 / 10)
    assert c["degradation"].item() == pytest.approx(0.013 * 4.0)
    down, (p, _), _ = battery.step(params, st0, torch.tensor([[-1.0]], dtype=F64), None, 1.0)
    assert p.item() == -4.0 and down.soc.item() == pytest.approx(0.5 - 4 / 0.8 / 10)
    term = battery.terminal_cost(params, st0.soc, torch.tensor([[0.3, 0.7]], dtype=F64))
    assert term.flatten().tolist() == pytest.approx([1.0 * 10 * 0.2, 0.0])


@pytest.mark.parametrize("signed", [True, False])
def test_gradcheck_step(signed):
    g = torch.Generator().manual_seed(3)
    params = sample_battery(BatteryConfig(), 5, generator=g, dtype=F64)
    params = params._replace(signed_map=torch.full((5,), signed))
    soc = (0.2 + 0.6 * torch.rand(2, 5, generator=g, dtype=F64)).requires_grad_(True)
    act = (0.2 + 0.7 * torch.rand(2, 5, generator=g, dtype=F64))
    act = (act * torch.tensor([1.0, -1.0], dtype=F64).repeat(5)[:5]).requires_grad_(True)

    def fn(soc, act):
        state, (p_kw, _), costs = battery.step(params, BatteryState(soc), act, None, 0.5)
        return state.soc, p_kw, costs["degradation"], battery.terminal_cost(params, soc, state.soc)

    assert torch.autograd.gradcheck(fn, (soc, act))


def test_straight_through_keeps_gradient_for_out_of_range_action():
    params = make_params([10.0], [3.0], [0.95], [0.95], [0.1], [0.9], [0.5])
    soc = torch.tensor([[0.5]], dtype=F64)
    grads = []
    for ste in (True, False):
        a = torch.tensor([[1.7]], dtype=F64, requires_grad=True)
        new, _, _ = battery.step(params, BatteryState(soc), a, None, 0.5, straight_through=ste)
        grads.append(torch.autograd.grad(new.soc.sum(), a)[0].item())
    assert grads[0] == pytest.approx(0.5 * 0.95 * 3.0 / 10.0) and grads[1] == 0.0


def test_batch_of_one_equals_slice(device):
    g = torch.Generator().manual_seed(0)
    params = sample_battery(BatteryConfig(), 7, generator=g, dtype=F64, device=device)
    soc = (0.1 + 0.85 * torch.rand(4, 7, generator=g, dtype=F64)).to(device)
    act = (3 * torch.rand(4, 7, generator=g, dtype=F64) - 1.5).to(device)
    full = battery.step(params, BatteryState(soc), act, None, 0.5)
    for b in range(4):
        one = battery.step(params, BatteryState(soc[b : b + 1]), act[b : b + 1], None, 0.5)
        assert torch.equal(one[0].soc, full[0].soc[b : b + 1])
        assert torch.equal(one[1][0], full[1][0][b : b + 1])
        assert torch.equal(one[2]["degradation"], full[2]["degradation"][b : b + 1])


def test_config_validation():
    with pytest.raises(ValueError):
        BatteryConfig(soc_init=(0.05, 0.5))
    with pytest.raises(ValueError):
        BatteryConfig(eta_c=(0.9, 1.2))
    with pytest.raises(ValueError):
        BatteryConfig(action_map="tanh")


def test_day_rollout_backpropagates_finite_gradients(device):
    g = torch.Generator().manual_seed(8)
    params = sample_battery(BatteryConfig(), 50, generator=g, dtype=F64, device=device)
    actions = (3 * torch.rand(48, 4, 50, generator=g, dtype=F64) - 1.5).to(device)
    actions.requires_grad_(True)
    state = battery.init_state(params, 4)
    total = torch.zeros((), dtype=F64, device=device)
    for a in actions:
        state, (p_kw, _), costs = battery.step(params, state, a)
        total = total + (0.2 * p_kw * 0.5 + costs["degradation"]).sum()
    total = total + battery.terminal_cost(params, params.soc_init, state.soc).sum()
    (grad,) = torch.autograd.grad(total, actions)
    assert torch.isfinite(grad).all() and (grad != 0).any()
