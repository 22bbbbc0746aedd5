"""Straight-through clamp, action maps, helpers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge_env.devices.common import (
    check_range,
    out_of_range,
    scale_action,
    scale_action_signed,
    ste_clamp,
    tan_phi,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(deadline=None, max_examples=200)
@given(st.lists(finite, min_size=1, max_size=20), st.floats(-5, 0), st.floats(0, 5))
def test_ste_forward_is_exactly_the_clamp(xs, lo, hi):
    x = torch.tensor(xs, dtype=torch.float64)
    assert torch.equal(ste_clamp(x, lo, hi), torch.clamp(x, lo, hi))
    assert torch.equal(ste_clamp(x, lo, hi, straight_through=False), torch.clamp(x, lo, hi))


def test_ste_forward_exact_for_huge_inputs():
    x = torch.tensor([1e20, -1e20, 0.3], dtype=torch.float64)
    assert ste_clamp(x, -1.0, 1.0).tolist() == [1.0, -1.0, 0.3]


def test_ste_passes_gradient_where_plain_clamp_gives_zero():
    x = torch.tensor([-3.0, -0.5, 0.2, 2.0], requires_grad=True)
    (g_ste,) = torch.autograd.grad((ste_clamp(x, -1.0, 1.0) * 2).sum(), x)
    (g_plain,) = torch.autograd.grad((ste_clamp(x, -1.0, 1.0, straight_through=False) * 2).sum(), x)
    assert g_ste.tolist() == [2.0, 2.0, 2.0, 2.0]
    assert g_plain.tolist() == [0.0, 2.0, 2.0, 0.0]


def test_ste_with_tensor_bounds_broadcasts():
    x = torch.tensor([[0.5, 3.0], [-2.0, 0.25]], requires_grad=True)
    lo, hi = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 2.0])
    y = ste_clamp(x, lo, hi)
    assert y.tolist() == [[0.5, 2.0], [0.0, 0.25]]
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.ones_like(x))


def test_gradcheck_ste_is_identity_jacobian():
    x = torch.tensor([-2.0, 0.3, 4.0], dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda t: ste_clamp(t, -1.0, 1.0), x)
    assert torch.equal(jac, torch.eye(3, dtype=torch.float64))


def test_out_of_range_counts():
    a = torch.tensor([[-1.0, 1.0, 1.0001], [-7.0, 0.0, 0.5]])
    assert out_of_range(a).sum().item() == 2


@given(st.floats(-1, 1), st.floats(-10, 0), st.floats(0, 10))
def test_action_maps_hit_their_ends(a, lo, hi):
    t = torch.tensor([-1.0, a, 1.0], dtype=torch.float64)
    aff = scale_action(t, lo, hi)
    sig = scale_action_signed(t, lo, hi)
    for y in (aff, sig):
        assert y[0].item() == pytest.approx(lo) and y[2].item() == pytest.approx(hi)
        assert lo - 1e-12 <= y[1].item() <= hi + 1e-12
    assert scale_action_signed(torch.zeros(1), lo, hi).item() == 0.0


def test_tan_phi():
    assert tan_phi(1.0) == 0.0
    assert tan_phi(0.8) == pytest.approx(0.75)
    assert tan_phi(torch.tensor([0.8])).item() == pytest.approx(0.75)
    assert math.isclose(tan_phi(0.9), math.tan(math.acos(0.9)))


def test_check_range():
    check_range("x", (0.0, 1.0), 0.0, 1.0)
    for bad in [(1.0, 0.0), (-0.1, 0.5), (0.2, 1.1)]:
        with pytest.raises(ValueError):
            check_range("x", bad, 0.0, 1.0)
