"""Implicit gradients against gradcheck (IEEE 13) and central differences (IEEE 123)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridedge_env.feeders import load_feeder
from gridedge_env.powerflow import PowerFlow

NODES13 = ["675.1", "675.2", "611.3", "652.1", "692.3", "634.2"]


@pytest.fixture(scope="module")
def ieee13():
    return load_feeder("ieee13")


@pytest.mark.parametrize("load_model", ["pq", "zip"])
def test_gradcheck_ieee13(ieee13, load_model, device):
    pf = PowerFlow(ieee13, device=device, injection_nodes=NODES13, load_model=load_model,
                   tol=1e-13)
    idx = torch.tensor([ieee13.node_index(n) for n in NODES13], device=device)

    def fn(p, q, scale_pct):  # kW, kvar, percent: one finite-difference step (eps) suits all
        s = torch.zeros(2, ieee13.n_nodes, dtype=torch.complex128, device=device)
        s = s.index_add(1, idx, torch.complex(p, q))
        r = pf.solve(s, scale_pct / 100)
        return r.v_pu, r.losses_kva.real, r.line_loading

    g = torch.Generator().manual_seed(1)
    p = (torch.rand(2, len(NODES13), generator=g, dtype=torch.float64) - 0.5) * 100
    q = (torch.rand(2, len(NODES13), generator=g, dtype=torch.float64) - 0.5) * 40
    scale = 50 + 100 * torch.rand(2, ieee13.n_loads, generator=g, dtype=torch.float64)
    args = tuple(t.to(device).requires_grad_(True) for t in (p, q, scale))
    assert torch.autograd.gradcheck(fn, args, eps=1e-2, atol=1e-6, rtol=1e-5)


def test_finite_differences_ieee123(device):
    f = load_feeder("ieee123")
    nodes = [f.node_index(n) for n in ["49.1", "65.3", "114.1", "83.2", "300.2"]]
    pf = PowerFlow(f, device=device, injection_nodes=nodes, tol=1e-13)
    weights = torch.linspace(1, 2, f.n_nodes, dtype=torch.float64, device=device)

    def loss(p):
        s = torch.zeros(f.n_nodes, dtype=torch.complex128, device=device)
        s = s.index_add(0, torch.tensor(nodes, device=device), p.to(torch.complex128))
        return (pf.solve(s, 1.2).v_pu * weights).sum()

    p0 = torch.tensor([30.0, -20.0, 15.0, 40.0, -10.0], dtype=torch.float64, device=device,
                      requires_grad=True)
    (grad,) = torch.autograd.grad(loss(p0), p0)
    h = 1e-3
    fd = torch.stack([(loss(p0.detach() + h * e) - loss(p0.detach() - h * e)) / (2 * h)
                      for e in torch.eye(len(nodes), dtype=torch.float64, device=device)])
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-12)


def test_float32_gradient_close_to_float64(ieee13, device):
    def grad(dtype):
        pf = PowerFlow(ieee13, device=device, dtype=dtype)
        scale = torch.full((3, ieee13.n_loads), 1.1, dtype=dtype, device=device,
                           requires_grad=True)
        pf.solve(None, scale).v_pu.sum().backward()
        return scale.grad.double()

    g64, g32 = grad(torch.float64), grad(torch.float32)
    assert ((g32 - g64).abs().max() / g64.abs().max()) < 1e-4


@settings(max_examples=15, deadline=None)
@given(node=st.sampled_from(NODES13), dp=st.floats(1.0, 200.0))
def test_more_load_lowers_own_voltage(node, dp):
    """On a radial feeder, drawing more active power at a node lowers its voltage."""
    f = load_feeder("ieee13")
    k = f.node_index(node)
    pf = PowerFlow(f, injection_nodes=[k])
    s = torch.zeros(2, f.n_nodes, dtype=torch.complex128)
    s[1, k] = dp
    v = pf.solve(s).v_pu[:, k]
    assert v[1] < v[0]
