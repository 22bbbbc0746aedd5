"""PowerFlow: agreement with OpenDSS, batching, precision, non-convergence and bad input."""

import numpy as np
import pytest
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.opendss.crosscheck import (
    BUDGET_GATES,
    compare,
    extended_precision_solution,
    random_scenarios,
)
from gridedge_env.powerflow import PowerFlow, PowerFlowError


@pytest.fixture(scope="module")
def ieee13():
    return load_feeder("ieee13")


@pytest.mark.parametrize("name", BUNDLED)
@pytest.mark.parametrize("load_model", ["zip", "pq"])
def test_agrees_with_opendss_on_reference_models(name, load_model, feeder_models):
    """Within the error budget (validation.BUDGET_GATES) on every scenario, floating sections
    compared line-to-line."""
    folder, master, _ = BUNDLED_SOURCES[name]
    f = load_feeder(name)
    if load_model == "zip" and not f.term_zip_kva[:, 1:].any():  # IEEE 8500: 4 s saved
        pytest.skip(f"{name}: constant-power loads only, so 'zip' is the 'pq' comparison")
    c = compare(f, scenarios=6, seed=3, load_model=load_model,
                master=feeder_models / folder / master)
    assert c.n_compared == c.n_scenarios, c.unsolved
    assert not c.exceeded(BUDGET_GATES), c.exceeded(BUDGET_GATES)
    if name == "ieee123":
        assert c.floating_nodes == ["610.1", "610.2", "610.3"]


@pytest.mark.parametrize("name", ["ieee13", "ieee123"])
@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_agrees_with_extended_precision_reference(name, backend):
    """Independent of OpenDSS: our solution against the long-double refinement, at grounded
    nodes. Budget: 8.2e-10 (dense) and 3.3e-9 (sparse) p.u. measured; gate 1e-8."""
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("np.longdouble is no wider than float64 here")
    f = load_feeder(name)
    scale, nodes, s = random_scenarios(f, 2, seed=1)
    s_full = np.zeros((len(scale), f.n_nodes), dtype=np.complex128)
    s_full[:, nodes] = s
    pf = PowerFlow(f, injection_nodes=nodes, tol=1e-12 if backend == "dense" else 1e-10,
                   backend=backend)
    v = pf.solve(torch.as_tensor(s_full), torch.as_tensor(scale)).v.numpy()
    grounded = np.setdiff1d(np.arange(f.n_nodes), f.floating_nodes())
    for j in range(len(scale)):
        ref = extended_precision_solution(f, scale[j], s_full[j])
        err = np.abs(np.abs(v[j]) - np.abs(ref)) / (f.base_kv_ln * 1e3)
        assert err[grounded].max() < 1e-8, (j, f.nodes[grounded[err[grounded].argmax()]])


def test_batch_shapes_agree(ieee13, device):
    pf = PowerFlow(ieee13, device=device)
    g = torch.Generator().manual_seed(0)
    scale = 0.5 + torch.rand(2, 3, ieee13.n_loads, generator=g, dtype=torch.float64)
    s = torch.zeros(2, 3, ieee13.n_nodes, dtype=torch.complex128)
    s[..., 10] = torch.complex(torch.rand(2, 3, generator=g, dtype=torch.float64) * 50,
                               torch.zeros(2, 3, dtype=torch.float64))
    s, scale = s.to(device), scale.to(device)
    r = pf.solve(s, scale)
    assert r.v.shape == (2, 3, ieee13.n_nodes) and r.converged.shape == (2, 3)
    one = pf.solve(s[1, 2], scale[1, 2])
    assert one.v.shape == (ieee13.n_nodes,)
    torch.testing.assert_close(one.v, r.v[1, 2], rtol=0, atol=1e-7)
    torch.testing.assert_close(one.i_line_a, r.i_line_a[1, 2], rtol=0, atol=1e-7)


def test_unbatched_default_and_power_balance(ieee13, device):
    r = PowerFlow(ieee13, device=device).solve()
    assert r.v.shape == (ieee13.n_nodes,) and bool(r.converged)
    assert torch.allclose(r.s_sub_kva, r.s_load_kva + r.losses_kva)
    assert r.losses_kva.real > 0
    assert r.line_loading.shape == (len(PowerFlow(ieee13).line_phase_names),)


def test_float32_close_to_float64(device):
    f = load_feeder("ieee123")
    scale = torch.linspace(0.5, 1.5, 16, dtype=torch.float64, device=device)[:, None]
    r64 = PowerFlow(f, device=device).solve(None, scale)
    r32 = PowerFlow(f, device=device, dtype=torch.float32).solve(None, scale.float())
    assert r32.v.dtype == torch.complex64
    assert (r32.v_pu.double() - r64.v_pu).abs().max() < 2e-6


def test_newton_matches_fixed_point_and_rescues_heavy_load(device):
    f = load_feeder("ieee123")
    fp = PowerFlow(f, device=device, newton_iter=0, on_nonconvergence="flag")
    newton_only = PowerFlow(f, device=device, max_iter=1, newton_iter=30)
    scale = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64, device=device)
    ref, nw = fp.solve(None, scale), newton_only.solve(None, scale)
    assert bool(ref.converged.all()) and bool(nw.converged.all())
    assert (nw.v_pu - ref.v_pu).abs().max() < 1e-9
    # 3.2x nominal: the fixed point contracts too slowly for 60 iterations, Newton finishes it.
    heavy = torch.tensor([[3.2]], dtype=torch.float64, device=device)
    assert not bool(fp.solve(None, heavy).converged.all())
    r = PowerFlow(f, device=device).solve(None, heavy)
    assert bool(r.converged.all()) and r.v_pu.min() < 0.7


def test_nonconvergence_is_flagged_and_isolated(ieee13, device):
    flag = PowerFlow(ieee13, device=device, on_nonconvergence="flag")
    scale = torch.tensor([[1.0], [20.0], [0.7]], dtype=torch.float64, device=device,
                         requires_grad=True)
    r = flag.solve(None, scale)
    assert r.converged.tolist() == [True, False, True]
    assert torch.isfinite(r.v).all() and torch.isfinite(r.v_pu).all()
    alone = flag.solve(None, scale.detach()[[0, 2]])
    torch.testing.assert_close(r.v[[0, 2]], alone.v, rtol=0, atol=1e-9)
    r.v_pu.sum().backward()
    assert torch.isfinite(scale.grad).all() and scale.grad[1].abs().sum() == 0
    with pytest.raises(PowerFlowError, match="did not converge for 1 of 3") as err:
        PowerFlow(ieee13, device=device).solve(None, scale.detach())
    assert err.value.failed.tolist() == [1]


def test_zero_load_gives_no_load_voltages(ieee13):
    r = PowerFlow(ieee13).solve(None, 0.0)
    assert torch.allclose(r.s_load_kva, torch.zeros((), dtype=torch.complex128))
    pf = PowerFlow(ieee13)
    torch.testing.assert_close(r.v, torch.as_tensor(pf.network.w_v), rtol=0, atol=1e-9)


def test_constant_impedance_loads_match_direct_linear_solve(ieee13):
    """All-Z loads make the power flow linear: compare with (Y + Y_loads)^-1 i_source."""
    import dataclasses

    zip_kva = ieee13.term_zip_kva.sum(1)
    z_only = dataclasses.replace(ieee13, term_zip_kva=np.stack(
        [0 * zip_kva, 0 * zip_kva, zip_kva], axis=1))
    r = PowerFlow(z_only, load_model="zip", tol=1e-12).solve()
    y = ieee13.y_bus()
    y_load = np.conj(zip_kva * 1e3) / ieee13.term_vnom_v**2
    for a, b, yl in zip(ieee13.term_a, ieee13.term_b, y_load, strict=True):
        y[a, a] += yl
        if b >= 0:
            y[b, b] += yl
            y[a, b] -= yl
            y[b, a] -= yl
    v = np.linalg.solve(y, ieee13.source_current_a())
    np.testing.assert_allclose(r.v.numpy(), v, rtol=0, atol=1e-5)  # volts


class TestBadInput:
    def test_wrong_dtype(self, ieee13):
        with pytest.raises(TypeError, match="complex128"):
            PowerFlow(ieee13).solve(torch.zeros(ieee13.n_nodes, dtype=torch.float64))

    def test_not_a_tensor(self, ieee13):
        with pytest.raises(TypeError, match="torch.Tensor"):
            PowerFlow(ieee13).solve(np.zeros(ieee13.n_nodes, dtype=complex))

    def test_wrong_node_count(self, ieee13):
        with pytest.raises(ValueError, match=r"shape \(\.\.\., 41\)"):
            PowerFlow(ieee13).solve(torch.zeros(3, 40, dtype=torch.complex128))

    def test_nan_injection_names_node(self, ieee13):
        s = torch.zeros(2, ieee13.n_nodes, dtype=torch.complex128)
        s[1, 7] = complex("nan")
        with pytest.raises(ValueError, match=rf"\(1, 7\).*{ieee13.nodes[7]}"):
            PowerFlow(ieee13).solve(s)

    def test_inf_load_scale(self, ieee13):
        with pytest.raises(ValueError, match="load_scale"):
            PowerFlow(ieee13).solve(None, float("inf"))

    def test_bad_load_scale_shape(self, ieee13):
        with pytest.raises(ValueError, match="n_loads=15"):
            PowerFlow(ieee13).solve(None, torch.ones(4, 7, dtype=torch.float64))

    def test_injection_outside_allowed_nodes(self, ieee13):
        pf = PowerFlow(ieee13, injection_nodes=["675.1"])
        s = torch.zeros(ieee13.n_nodes, dtype=torch.complex128)
        s[ieee13.node_index("675.1")] = 10
        pf.solve(s)
        s[ieee13.node_index("634.2")] = 5
        with pytest.raises(ValueError, match="634.2"):
            pf.solve(s)

    def test_wrong_device(self, ieee13):
        s = torch.zeros(ieee13.n_nodes, dtype=torch.complex128, device="meta")
        with pytest.raises(ValueError, match="meta"):
            PowerFlow(ieee13).solve(s)

    def test_bad_settings(self, ieee13):
        with pytest.raises(TypeError, match="dtype"):
            PowerFlow(ieee13, dtype=torch.float16)
        with pytest.raises(ValueError, match="load_model"):
            PowerFlow(ieee13, load_model="zipv")
        with pytest.raises(ValueError, match="on_nonconvergence"):
            PowerFlow(ieee13, on_nonconvergence="ignore")
        with pytest.raises(KeyError, match="999.1"):
            PowerFlow(ieee13, injection_nodes=["999.1"])


def test_injections_at_nodes_match_the_full_vector(ieee13, device):
    """``solve(s, at=nodes)`` sums repeated nodes and equals the ``(B, n_nodes)`` form."""
    nodes = [ieee13.node_index(n) for n in ("675.1", "675.2", "611.3", "652.1")]
    pf = PowerFlow(ieee13, device=device, injection_nodes=nodes)
    at = torch.tensor([nodes[0], nodes[2], nodes[0], nodes[3], nodes[1]], device=device)
    g = torch.Generator().manual_seed(2)
    s = torch.complex(torch.rand(3, 5, generator=g, dtype=torch.float64) * 80 - 40,
                      torch.rand(3, 5, generator=g, dtype=torch.float64) * 20).to(device)
    full = torch.zeros(3, ieee13.n_nodes, dtype=torch.complex128, device=device).index_add(
        1, at, s)
    r_at, r_full = pf.solve(s, 0.7, at=at), pf.solve(full, 0.7)
    torch.testing.assert_close(r_at.v, r_full.v, rtol=0, atol=1e-9)
    torch.testing.assert_close(r_at.line_loading, r_full.line_loading, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="not one of this PowerFlow's injection_nodes"):
        pf.solve(s[:, :1], at=torch.tensor([ieee13.node_index("680.1")], device=device))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 5\)"):
        pf.solve(s[:, :4], at=at)
    with pytest.raises(ValueError, match="NaN/inf.*652.1"):
        pf.solve(s.index_fill(1, torch.tensor([3], device=device), float("nan")), at=at)


def test_magnitude_matches_abs_with_zero_gradient_at_zero():
    from gridedge_env.powerflow.solve import magnitude

    z = torch.complex(torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64))
    torch.testing.assert_close(magnitude(z), z.abs(), rtol=1e-15, atol=0)
    zero = torch.zeros(2, dtype=torch.complex128, requires_grad=True)
    (g,) = torch.autograd.grad(magnitude(zero).sum(), zero)
    assert torch.isfinite(torch.view_as_real(g)).all()


@pytest.mark.slow
def test_compiled_unrolled_start_matches_eager(ieee13):
    """``compile=True`` starts the fixed point with a compiled block of iterations: same
    voltages (to the tolerance), same gradients, at least ``unroll`` iterations."""
    nodes = [ieee13.node_index(n) for n in ("675.1", "675.2", "611.3", "652.1")]
    eager = PowerFlow(ieee13, injection_nodes=nodes, tol=1e-12)
    comp = PowerFlow(ieee13, injection_nodes=nodes, tol=1e-12, compile=True)
    g = torch.Generator().manual_seed(5)
    s = torch.complex(torch.rand(6, 4, generator=g, dtype=torch.float64) * 300 - 100,
                      torch.rand(6, 4, generator=g, dtype=torch.float64) * 50)
    at = torch.tensor(nodes)
    grads = []
    for pf in (eager, comp):
        x = s.clone().requires_grad_(True)
        r = pf.solve(x, 0.8, at=at)
        grads.append((r, torch.autograd.grad(r.v_pu.sum() + r.line_loading.sum(), x)[0]))
    (r_e, g_e), (r_c, g_c) = grads
    torch.testing.assert_close(r_c.v, r_e.v, rtol=0, atol=1e-8)
    torch.testing.assert_close(g_c, g_e, rtol=1e-8, atol=1e-12)
    assert (r_c.iterations >= comp.settings.unroll).all() and r_c.converged.all()


def test_unrolled_solve_matches_solve_and_flags_too_few_iterations(ieee13, device):
    """:func:`unrolled_solve` (the fused step's power flow; its last iteration reads the port
    voltages, delta load ports included, off the node-voltage GEMM) gives the regular solve's
    voltages and line loadings, and reports a scenario unconverged when it ran too few
    iterations for the tolerance."""
    from gridedge_env.powerflow.unrolled import unrolled_solve

    nodes = [ieee13.node_index(n) for n in ("675.1", "675.2", "611.3", "652.1", "692.3")]
    pf = PowerFlow(ieee13, device=device, injection_nodes=nodes, tol=1e-10)
    net = pf.unrolled_network()
    assert bool((net.port_b >= 0).any())  # IEEE 13's delta loads give node-pair ports
    g = torch.Generator().manual_seed(7)
    s = torch.complex(torch.rand(5, 5, generator=g, dtype=torch.float64) * 400 - 100,
                      torch.rand(5, 5, generator=g, dtype=torch.float64) * 80).to(device)
    ref = pf.solve(s, load_scale=0.0, at=torch.tensor(nodes, device=device))
    s_va = torch.zeros(5, pf.n_ports, 2, dtype=torch.float64, device=device)
    s_va[:, pf.ports_of(nodes)] = torch.view_as_real(s) * 1e3
    v, v_pu, _, loading, converged, last, _ = unrolled_solve(net, s_va, 40, 1e-10, 1e-14)
    assert converged.all()
    torch.testing.assert_close(torch.view_as_complex(v.contiguous()), ref.v, rtol=0, atol=1e-6)
    torch.testing.assert_close(v_pu, ref.v_pu, rtol=0, atol=1e-10)
    torch.testing.assert_close(loading, ref.line_loading, rtol=1e-9, atol=1e-10)
    *_, converged3, last3, _ = unrolled_solve(net, s_va, 3, 1e-10, 1e-14)
    assert not converged3.any() and (last3 > 1e-10).all()


def test_power_flow_without_the_feeders_loads_equals_load_scale_zero(ieee13):
    """``Feeder.without_loads`` (the environment's network: households replace the loads)
    solves like the full feeder at load scale 0, with ports at the injection nodes only."""
    nodes = [ieee13.node_index(n) for n in ("675.1", "675.2", "611.3", "652.1")]
    full = PowerFlow(ieee13, injection_nodes=nodes, tol=1e-12)
    bare = PowerFlow(ieee13.without_loads(), injection_nodes=nodes, tol=1e-12)
    assert bare.n_ports == len(nodes) < full.n_ports and bare.feeder.n_loads == 0
    g = torch.Generator().manual_seed(9)
    s = torch.complex(torch.rand(3, 4, generator=g, dtype=torch.float64) * 300 - 100,
                      torch.rand(3, 4, generator=g, dtype=torch.float64) * 50)
    at = torch.tensor(nodes)
    r_full, r_bare = full.solve(s, 0.0, at=at), bare.solve(s, 0.0, at=at)
    torch.testing.assert_close(r_bare.v, r_full.v, rtol=0, atol=1e-7)
    torch.testing.assert_close(r_bare.line_loading, r_full.line_loading, rtol=1e-10, atol=1e-12)
    assert r_bare.converged.all()
