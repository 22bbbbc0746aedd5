"""The sparse backend (large feeders) agrees with the dense one, forward and backward."""

import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network.synthetic import synthetic_radial
from gridedge_env.powerflow import PowerFlow


def _solve(pf, feeder, scale):
    s = torch.zeros(2, feeder.n_nodes, dtype=torch.complex128)
    s[:, 10] = 30 - 10j
    r = pf.solve(s, scale)
    (r.v_pu.sum() + r.line_loading.sum()).backward()
    return r


def test_sparse_matches_dense_ieee123():
    f = load_feeder("ieee123")
    out = {}
    for backend in ("dense", "sparse"):
        scale = torch.full((2, f.n_loads), 1.1, dtype=torch.float64, requires_grad=True)
        pf = PowerFlow(f, injection_nodes=[10], load_model="zip", backend=backend)
        out[backend] = (_solve(pf, f, scale), scale.grad)
    (rd, gd), (rs, gs) = out["dense"], out["sparse"]
    # Y of IEEE 123 has a condition number ~1e13 (1 mOhm switches next to anti-float shunts), so
    # the two factorisations agree to ~1e-8 p.u. (each is within 6e-9 p.u. of OpenDSS).
    torch.testing.assert_close(rs.v_pu, rd.v_pu, rtol=0, atol=2e-8)
    torch.testing.assert_close(rs.i_line_a, rd.i_line_a, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(gs, gd, rtol=1e-5, atol=1e-8)


def test_auto_picks_sparse_for_large_feeders(device):
    """Above ``ports.DENSE_LIMIT`` nodes ``backend="auto"`` is sparse on the CPU; on a GPU it
    stays dense (the port matrices fit in GPU memory)."""
    f = synthetic_radial(1200)  # 3,603 nodes
    pf = PowerFlow(f, device=device, injection_nodes=[])
    assert pf.network.kind == ("sparse" if device.type == "cpu" else "dense")
    r = pf.solve(None, torch.tensor([[0.8], [1.2]], dtype=torch.float64, device=device))
    assert bool(r.converged.all()) and 0.9 < float(r.v_pu.min()) < 1.0


def test_column_blocked_solves_give_the_same_numbers(monkeypatch):
    """``SOLVE_BLOCK`` only changes how many right-hand sides go to SuperLU at once: a batch of
    several blocks (a ragged last one included) gives the voltages, line currents and gradient
    of one solve of all columns (each column's triangular sweep is the same arithmetic)."""
    from gridedge_env.powerflow import ports

    f = load_feeder("ieee123")
    torch.manual_seed(0)
    base = 0.6 + 0.8 * torch.rand(11, f.n_loads, dtype=torch.float64)  # 11 = 3 blocks of 4
    out = {}
    for block in (10**9, 4):
        monkeypatch.setattr(ports, "SOLVE_BLOCK", block)
        scale = base.clone().requires_grad_(True)
        pf = PowerFlow(f, load_model="zip", backend="sparse")
        r = pf.solve(None, scale)
        (r.v_pu.sum() + r.line_loading.sum()).backward()
        out[block] = (r, scale.grad)
    (ra, ga), (rb, gb) = out[10**9], out[4]
    assert bool(ra.converged.all())
    torch.testing.assert_close(rb.v_pu, ra.v_pu, rtol=0, atol=1e-13)
    torch.testing.assert_close(rb.i_line_a, ra.i_line_a, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(gb, ga, rtol=1e-10, atol=1e-12)
