"""Generator: output and reactive capability bounds, fuel cost, gradients, batching."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge_env.devices import generator
from gridedge_env.devices.generator import GeneratorConfig
from gridedge_env.devices.params import sample_generator

F64 = torch.float64
N = 4


@settings(deadline=None, max_examples=150)
@given(
    st.lists(st.floats(-5, 5), min_size=2 * N, max_size=2 * N),
    st.floats(0.3, 1.0),
    st.floats(1.01, 2.0),
)
def test_output_within_bounds_and_cost_nonnegative(acts, pf_min, s_over_p):
    cfg = GeneratorConfig(pf_min=pf_min, s_over_p=s_over_p)
    params = sample_generator(cfg, N, seed=0, dtype=F64)
    a = torch.tensor(acts, dtype=F64).reshape(1, N, 2)
    _, (p_kw, q_kvar), costs = generator.step(params, None, a)
    p_gen = -p_kw
    assert ((p_gen >= 0) & (p_gen <= params.p_max_kw)).all()
    s2 = p_gen**2 + q_kvar**2
    assert (s2 <= params.s_max_kva**2 * (1 + 1e-12)).all()
    assert (q_kvar.abs() <= p_gen * math.tan(math.acos(pf_min)) + 1e-12).all()
    assert (costs["fuel"] >= 0).all()
    _, (p_only, q_zero), _ = generator.step(params, None, a[..., 0])
    assert torch.equal(p_only, p_kw) and (q_zero == 0).all()


def test_fuel_cost_and_limits():
    params = sample_generator(GeneratorConfig(pf_min=0.8), 1, seed=0, dtype=F64)
    a = torch.tensor([[[1.0, 1.0]]], dtype=F64)
    _, (p, q), c = generator.step(params, None, a, None, 0.5)
    pm, s = params.p_max_kw.item(), params.s_max_kva.item()
    assert p.item() == pytest.approx(-pm)
    assert q.item() == pytest.approx(min(math.sqrt(s * s - pm * pm), 0.75 * pm))
    aa, bb = params.a_gbp_per_kw2h.item(), params.b_gbp_per_kwh.item()
    assert c["fuel"].item() == pytest.approx((aa * pm * pm + bb * pm) * 0.5)
    _, (p0, q0), c0 = generator.step(params, None, torch.tensor([[[-1.0, 1.0]]], dtype=F64))
    assert p0.item() == 0.0 and q0.item() == 0.0 and c0["fuel"].item() == 0.0


def test_gradcheck_step():
    g = torch.Generator().manual_seed(6)
    params = sample_generator(GeneratorConfig(), N, generator=g, dtype=F64)
    act = (1.8 * torch.rand(3, N, 2, generator=g, dtype=F64) - 0.9).requires_grad_(True)

    def fn(act):
        _, (p, q), c = generator.step(params, None, act, None, 0.5)
        return p, q, c["fuel"]

    assert torch.autograd.gradcheck(fn, (act,))


def test_straight_through_gradient_for_out_of_range_action():
    params = sample_generator(GeneratorConfig(), 1, seed=0, dtype=F64)
    grads = []
    for ste in (True, False):
        a = torch.tensor([[2.0]], dtype=F64, requires_grad=True)
        _, (p, _), _ = generator.step(params, None, a, straight_through=ste)
        grads.append(torch.autograd.grad(p.sum(), a)[0].item())
    assert grads[0] == pytest.approx(-params.p_max_kw.item() / 2) and grads[1] == 0.0


def test_batch_of_one_equals_slice(device):
    g = torch.Generator().manual_seed(7)
    params = sample_generator(GeneratorConfig(), N, generator=g, dtype=F64, device=device)
    act = (2.4 * torch.rand(3, N, 2, generator=g, dtype=F64) - 1.2).to(device)
    full = generator.step(params, None, act)
    for b in range(3):
        one = generator.step(params, None, act[b : b + 1])
        for x, y in zip(one[1], full[1], strict=True):
            assert torch.equal(x, y[b : b + 1])
        assert torch.equal(one[2]["fuel"], full[2]["fuel"][b : b + 1])


def test_config_validation():
    with pytest.raises(ValueError):
        GeneratorConfig(s_over_p=1.0)
    with pytest.raises(ValueError):
        GeneratorConfig(b_gbp_per_kwh=(-0.1, 0.2))
