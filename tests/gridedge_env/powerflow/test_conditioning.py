"""The power flow's conditioning report: the contraction rate and iterations it records are those
of the fixed point run by hand from the feeder's own admittance matrix, the Jacobian it returns is
the residual's, and ``gridedge-bench conditioning`` prints it as JSON."""

import json

import numpy as np
import pytest
import torch

from gridedge_env.analysis import conditioning
from gridedge_env.cli import bench_main
from gridedge_env.feeders import load_feeder
from gridedge_env.powerflow import PowerFlow
from gridedge_env.powerflow.unrolled import unrolled_solve
from gridedge_env.registry import env_params

TOL = 1e-7  # steps near it are ~1e-8 p.u.: the two computations' rounding is ~1e-7 of that


@pytest.fixture(scope="module")
def case():
    """IEEE 13 without its loads, wye injections at five nodes; six scenarios from light to
    heavy load (so they stop at different iterations and leave the active set apart)."""
    feeder = load_feeder("ieee13").without_loads()
    nodes = sorted(feeder.node_index(n) for n in ("675.1", "675.2", "611.3", "652.1", "634.2"))
    g = torch.Generator().manual_seed(3)
    level = torch.tensor([0.05, 0.3, 0.6, 1.0, 1.6, 2.4], dtype=torch.float64)[:, None]
    s = torch.complex(level * (300 + 200 * torch.rand(6, 5, generator=g, dtype=torch.float64)),
                      level * 80 * torch.rand(6, 5, generator=g, dtype=torch.float64))
    return feeder, nodes, s


def network(feeder, nodes):
    """``a`` (no-load port voltages, V) and ``M = C^T Y^-1 C`` (ohm) by a dense solve of the
    feeder's admittance matrix, ports = ``nodes`` to ground (numpy, complex)."""
    c = np.zeros((feeder.n_nodes, len(nodes)))
    c[nodes, np.arange(len(nodes))] = 1
    z = np.linalg.solve(feeder.y_bus(), np.concatenate([feeder.source_current_a()[:, None], c], 1))
    return c.T @ z[:, 0], c.T @ z[:, 1:]


def hand_steps(feeder, nodes, s_kva, n_iter):
    """Steps ``(B, n_iter)`` of ``u <- a - M conj(s / u)`` from ``u = a``: the largest change of
    a port voltage's real or imaginary part, p.u. of ``|a|``."""
    a, m = network(feeder, nodes)
    s = s_kva.numpy() * 1e3
    u, steps = np.broadcast_to(a, s.shape), []
    for _ in range(n_iter):
        un = a - np.conj(s / u) @ m.T
        d = (un - u) / np.abs(a)
        steps.append(np.maximum(np.abs(d.real), np.abs(d.imag)).max(-1))
        u = un
    return np.stack(steps, 1)


def first_stop(steps, tol):
    """Per scenario, the first iteration ``k`` (1-based) that passes the stopping test
    ``step * rho / (1 - rho) <= tol``, ``rho = min(step_k / step_(k-1), 0.99)`` (0.99 at k = 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 once a scenario is exact
        rho = np.concatenate([np.full((len(steps), 1), 0.99),
                              np.minimum(steps[:, 1:] / steps[:, :-1], 0.99)], 1)
    return np.argmax(steps * rho / (1 - rho) <= tol, axis=1) + 1


def test_iterations_and_contraction_are_those_of_the_fixed_point_run_by_hand(case):
    feeder, nodes, s = case
    pf = PowerFlow(feeder, injection_nodes=nodes, tol=TOL)
    r = pf.solve(s, load_scale=0.0, at=torch.tensor(nodes))
    steps = hand_steps(feeder, nodes, s, 40)
    k = first_stop(steps, TOL)
    assert len(set(k.tolist())) >= 3  # the scenarios stop apart: the active-set bookkeeping works
    assert r.iterations.tolist() == k.tolist()
    rows = np.arange(len(k))
    expected = steps[rows, k - 1] / steps[rows, k - 2]
    np.testing.assert_allclose(r.contraction.numpy(), expected, rtol=1e-5)
    assert not r.contraction.requires_grad and r.contraction.dtype == torch.float64
    # each scenario alone records the same (the batch changes nothing but rounding)
    for b in range(len(s)):
        one = pf.solve(s[b:b + 1], load_scale=0.0, at=torch.tensor(nodes))
        assert int(one.iterations) == int(r.iterations[b])
        torch.testing.assert_close(one.contraction, r.contraction[b:b + 1], rtol=1e-6, atol=0)


def test_contraction_is_nan_without_a_ratio_and_detached_under_grad(case):
    feeder, nodes, s = case
    pf = PowerFlow(feeder, injection_nodes=nodes, tol=TOL)
    at = torch.tensor(nodes)
    r0 = pf.solve(torch.zeros_like(s[:2]), load_scale=0.0, at=at)  # no load: no step at all
    assert r0.iterations.tolist() == [1, 1] and bool(r0.contraction.isnan().all())
    x = s.clone().requires_grad_(True)
    r = pf.solve(x, load_scale=0.0, at=at)
    assert r.v_pu.requires_grad and not r.contraction.requires_grad
    assert bool(((r.contraction > 0) & (r.contraction < 1)).all())


def test_unrolled_contraction_is_the_ratio_of_its_last_two_steps(case):
    feeder, nodes, s = case
    pf = PowerFlow(feeder, injection_nodes=nodes, tol=TOL)
    s_va = torch.zeros(len(s), pf.n_ports, 2, dtype=torch.float64)
    s_va[:, pf.ports_of(nodes)] = torch.view_as_real(s) * 1e3
    steps = hand_steps(feeder, nodes, s, 5)
    sol = unrolled_solve(pf.unrolled_network(), s_va, 5, TOL, 1e-14)
    np.testing.assert_allclose(sol.step.numpy(), steps[:, 4], rtol=1e-6)
    np.testing.assert_allclose(sol.contraction.numpy(), steps[:, 4] / steps[:, 3], rtol=1e-6)


def test_jacobian_is_the_residuals_in_per_unit(case):
    """``PowerFlow.jacobian`` equals central differences of ``F(x) = x - a - M i(x)`` (the hand
    network's, scaled to p.u. of ``|a|``) at the solution, and the spectral radius of ``I - J``
    is what the observed contraction rate estimates."""
    feeder, nodes, s = case
    pf = PowerFlow(feeder, injection_nodes=nodes, tol=1e-13)
    assert pf.ports_of(nodes).tolist() == list(range(len(nodes)))  # ports in node order
    at = torch.tensor(nodes)
    jac = pf.jacobian(s, load_scale=0.0, at=at)
    m = len(nodes)
    assert jac.shape == (len(s), 2 * m, 2 * m) and not jac.requires_grad
    a, mz = network(feeder, nodes)
    u_star = (pf.solve(s, load_scale=0.0, at=at).v[:, nodes]).numpy()

    def residual(x, sb):  # p.u. planar x -> p.u. planar F
        u = (x[:m] + 1j * x[m:]) * np.abs(a)
        f = (u - a + mz @ np.conj(sb / u)) / np.abs(a)
        return np.concatenate([f.real, f.imag])

    h = 1e-6
    for b in (0, 3, 5):
        sb = s[b].numpy() * 1e3
        x0 = np.concatenate([u_star[b].real, u_star[b].imag]) / np.tile(np.abs(a), 2)
        fd = np.stack([(residual(x0 + h * e, sb) - residual(x0 - h * e, sb)) / (2 * h)
                       for e in np.eye(2 * m)], axis=1)
        np.testing.assert_allclose(jac[b].numpy(), fd, rtol=0, atol=1e-8)
    radius = torch.linalg.eigvals(torch.eye(2 * m, dtype=jac.dtype) - jac).abs().amax(-1)
    rate = pf.solve(s, load_scale=0.0, at=at).contraction
    assert bool(((rate / radius > 0.5) & (rate / radius < 2)).all()), (rate, radius)


def test_jacobian_is_the_same_on_the_sparse_backend():
    """The sparse network forms ``M`` column by column; unbatched input gives one matrix."""
    feeder = load_feeder("ieee13")
    scale = torch.tensor([[0.5], [1.5]], dtype=torch.float64)
    dense = PowerFlow(feeder, backend="dense").jacobian(None, scale)
    sparse = PowerFlow(feeder, backend="sparse").jacobian(None, scale)
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-8)  # solutions 1e-10 apart
    one = PowerFlow(feeder, backend="dense").jacobian(None, 1.5)
    assert one.shape == dense.shape[1:]
    torch.testing.assert_close(one, dense[1], rtol=0, atol=1e-12)


def test_conditioning_reports_der_output_and_a_spread_jacobian_sample():
    env = env_params("ieee13-50-v0")
    days = env.scenario.split.test[:2]
    c = conditioning(env, days, n_jacobian=4)
    n_t = env.n_steps
    for x in (c.pv_kw, c.generation_kw, c.der_kw, c.net_load_kw, c.iterations, c.contraction):
        assert x.shape == (2, n_t)
    assert bool((c.generation_kw == 0).all())  # no control: generators off
    torch.testing.assert_close(c.der_kw, c.pv_kw)
    assert float(c.pv_kw[:, 0].max()) == 0 and float(c.pv_kw.max()) > 100  # night, and noon
    der = c.der_kw[c.sample[:, 0], c.sample[:, 1]]
    assert float(der[0]) == float(c.der_kw.min()) and float(der[-1]) == float(c.der_kw.max())
    assert bool((der[1:] >= der[:-1]).all()) and len(c.sample) <= 4
    assert bool((c.jacobian_cond >= 1).all()) and bool((c.spectral_radius < 1).all())
    # a policy running every generator flat out: generation is their summed capacity
    gen = env.kind_slices["generator"]
    full = conditioning(env, days[:1], policy=lambda obs, t, state: torch.ones(
        1, env.n_agents, dtype=torch.float64), n_jacobian=2)
    cap = float(env.scenario.generator.p_max_kw.sum()) * env.scenario.config.households_per_agent
    torch.testing.assert_close(full.generation_kw, torch.full((1, n_t), cap, dtype=torch.float64))
    assert gen.stop > gen.start


def test_bench_conditioning_prints_json(capsys):
    assert bench_main(["conditioning", "--env", "ieee13-50-v0", "--days", "1",
                       "--jacobian-samples", "3", "--pv-share", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["env"] == "ieee13-50-v0" and out["days"] == 1 and out["pv_share"] == 1.0
    assert out["day_steps"] == 48 and out["nonconverged"] == 0
    assert 0 < out["contraction_mean"] <= out["contraction_max"] < 1
    assert len(out["jacobian_sample"]) == 3 and len(out["der_bins"]) >= 2
    for row in out["jacobian_sample"]:
        assert row["jacobian_cond"] >= 1 and 0 < row["spectral_radius"] < 1
    assert bench_main(["conditioning", "--env", "ieee13-50-v0", "--days", "999"]) == 2
    assert "days must be in [1, 55]" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_start_records_the_same_contraction(case):
    """``compile=True`` starts with a compiled block of iterations; where it records at the same
    iteration as the eager loop, it records the same rate."""
    feeder, nodes, s = case
    at = torch.tensor(nodes)
    eager = PowerFlow(feeder, injection_nodes=nodes, tol=TOL).solve(s, 0.0, at=at)
    comp = PowerFlow(feeder, injection_nodes=nodes, tol=TOL, compile=True).solve(s, 0.0, at=at)
    same = comp.iterations == eager.iterations
    assert bool(same.any())
    torch.testing.assert_close(comp.contraction[same], eager.contraction[same], rtol=1e-6, atol=0)
