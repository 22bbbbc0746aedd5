"""Convergence on large or heavily loaded feeders: Anderson acceleration, the sparse backend's
Newton fallback and its direct adjoint (docs/powerflow.md, convergence on large feeders)."""

from pathlib import Path

import pytest
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.powerflow import PowerFlow, PowerFlowError, implicit

IEEE8500 = Path(__file__).resolve().parents[3].parent / "shared/data/feeders/ieee8500/Master.dss"
# IEEE 13 at 2.0-2.6x its loads: the plain fixed point needs 19-45 iterations up to 2.5x and
# more than 60 at 2.6x (minimum 0.59 p.u.), where only Newton finds the solution.
HEAVY = torch.tensor([[2.0], [2.5], [2.6]], dtype=torch.float64)


@pytest.fixture(scope="module")
def ieee13():
    return load_feeder("ieee13")


def test_auto_accelerates_the_sparse_backend_only(ieee13):
    assert PowerFlow(ieee13, backend="dense").settings.acceleration == "none"
    assert PowerFlow(ieee13, backend="sparse").settings.acceleration == "anderson"
    with pytest.raises(ValueError, match="acceleration must be"):
        PowerFlow(ieee13, acceleration="fast")


def test_sparse_fallback_converges_and_agrees_with_dense(ieee13):
    plain = PowerFlow(ieee13, backend="sparse", acceleration="none", newton_iter=0,
                      on_nonconvergence="flag").solve(None, HEAVY)
    assert plain.converged.tolist() == [True, True, False]  # the straggler needs the fallback
    rs = PowerFlow(ieee13, backend="sparse").solve(None, HEAVY)
    rd = PowerFlow(ieee13, backend="dense").solve(None, HEAVY)
    assert bool(rs.converged.all()) and int(rs.iterations[2]) > 60  # fixed point + Newton
    # Y of IEEE 13 is ill-conditioned (1 mOhm switches next to anti-float shunts): the sparse
    # and dense factorisations agree to ~1e-8 p.u. on a light feeder (test_sparse.py); near
    # the voltage-collapse nose (2.6x) the solution's sensitivity to rounding grows ~5x.
    torch.testing.assert_close(rs.v_pu, rd.v_pu, rtol=0, atol=1e-7)


def test_accelerated_agrees_with_plain(ieee13):
    scale = torch.linspace(0.5, 2.5, 9, dtype=torch.float64)[:, None]
    for backend in ("dense", "sparse"):
        ra = PowerFlow(ieee13, backend=backend, acceleration="anderson").solve(None, scale)
        rp = PowerFlow(ieee13, backend=backend, acceleration="none").solve(None, scale)
        assert bool(ra.converged.all()) and bool(rp.converged.all())
        # both stop at an estimated distance <= tol = 1e-10 p.u. of |a| from the same solution
        torch.testing.assert_close(ra.v_pu, rp.v_pu, rtol=0, atol=5e-9)
        assert int(ra.iterations.sum()) < int(rp.iterations.sum())


def test_nonconvergence_is_never_silent(ieee13):
    beyond = torch.tensor([[1.0], [3.5]], dtype=torch.float64)  # 3.5x: past the nose
    pf = PowerFlow(ieee13, backend="sparse", on_nonconvergence="flag")
    r = pf.solve(None, beyond)
    assert r.converged.tolist() == [True, False]
    with pytest.raises(PowerFlowError, match="1 of 2"):
        PowerFlow(ieee13, backend="sparse").solve(None, beyond)


def test_straggler_gradient_matches_dense_and_finite_differences(ieee13, monkeypatch):
    direct = []
    solve_direct = implicit._sparse_adjoint_direct
    monkeypatch.setattr(implicit, "_sparse_adjoint_direct",
                        lambda *a: direct.append(1) or solve_direct(*a))
    # sparse with max_iter=5: every scenario is left to Newton and every adjoint fixed point
    # (5 iterations) to the direct solve; dense with the defaults as the reference. tol 1e-9:
    # the sparse port residual of this ill-conditioned Y has a rounding floor near 1e-10 p.u.
    grads = {}
    for backend, max_iter in (("dense", 60), ("sparse", 5)):
        pf = PowerFlow(ieee13, backend=backend, max_iter=max_iter, tol=1e-9)
        scale = HEAVY.clone().requires_grad_(True)
        r = pf.solve(None, scale)
        assert bool(r.converged.all())
        r.v_pu.sum().backward()
        grads[backend] = scale.grad
    assert direct  # the direct adjoint ran (its fixed point had 5 iterations)
    torch.testing.assert_close(grads["sparse"], grads["dense"], rtol=1e-5, atol=0)
    pf = PowerFlow(ieee13, backend="sparse", tol=1e-9)
    h = 1e-5
    fd = (pf.solve(None, HEAVY + h).v_pu.sum(-1) - pf.solve(None, HEAVY - h).v_pu.sum(-1)) / (2 * h)
    torch.testing.assert_close(grads["sparse"][:, 0], fd, rtol=1e-5, atol=0)


@pytest.mark.skipif(not IEEE8500.is_file(), reason="shared/data/feeders/ieee8500 not present")
def test_ieee8500_converges_with_defaults():
    pytest.importorskip("opendssdirect")
    from gridedge_env.opendss.importer import import_opendss  # optional extra: OpenDSS

    pf = PowerFlow(import_opendss(IEEE8500, taps="file"))
    assert pf.network.kind == "sparse"
    r = pf.solve(None)
    assert bool(r.converged.all()) and float(r.residual.max()) <= 1e-10
    assert 0.6 < float(r.v_pu.min()) < 0.75  # file taps, no regulator action: ~0.70 p.u.
