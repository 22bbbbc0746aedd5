"""Floating nodes: the structural rule against linear algebra, and clear errors where an
injection or an agent would need a return path that is not there."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.powerflow import PowerFlow
from gridedge_env.scenarios.placement import place_agents

from ..conftest import CIRCUITS, FLOATING_SECONDARY

#: Largest feeder whose null space is found by a dense SVD, O(n^3): 0.1 s at IEEE 123's 278
#: nodes, far too slow at IEEE 8500's 8,531 (a 1.2 GB matrix and its factors). Larger feeders
#: get the sparse check alone.
DENSE_MAX_NODES = 1000
#: The sparse check's bound on the smallest singular value of the scaled unshunted admittance
#: with one node of each floating section pinned, relative to its norm: 100x above the dense
#: SVD's null threshold (1e-12). Measured (against the norm bound) 8.9e-9 (IEEE 13) to 0.13
#: (4-node circuits), 1.5e-7 on IEEE 8500; 9e-18 on IEEE 123 with its floating section unpinned.
MIN_RELATIVE_SINGULAR_VALUE = 1e-10


def scaled_unshunted_admittance(f) -> tuple[sp.csc_matrix, np.ndarray]:
    """``(A, d)``: the network admittance without shunts to the reference (line charging,
    anti-float), ``(n_nodes, n_nodes)`` sparse, scaled to a unit diagonal, ``A = D Y0 D`` with
    ``d = diag(D)`` ``(n_nodes,)``. Its null space holds the voltages only those shunts pin down."""
    rows, cols, vals = [], [], []
    for el in f.elements + (f.source,):  # test set-up, once per feeder
        y = el.y_prim - np.diag(el.y_prim.sum(1))
        keep = np.flatnonzero(el.conductor_nodes >= 0)
        idx = el.conductor_nodes[keep]
        rows.append(np.repeat(idx, len(idx)))
        cols.append(np.tile(idx, len(idx)))
        vals.append(y[np.ix_(keep, keep)].ravel())
    y0 = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(f.n_nodes, f.n_nodes))
    d = 1 / np.sqrt(np.abs(y0.diagonal()))
    return (sp.diags(d) @ y0 @ sp.diags(d)).tocsc(), d


def null_space_nodes(f) -> np.ndarray:
    """Nodes in the null space of the unshunted admittance, by a dense SVD (small feeders)."""
    a, _ = scaled_unshunted_admittance(f)
    _, sv, vh = np.linalg.svd(a.toarray())
    null = vh[sv < 1e-12 * sv.max()]
    return np.flatnonzero((np.abs(null) > 1e-8).any(0))


def smallest_singular_value(a: sp.csc_matrix) -> float:
    """``sigma_min(a)`` of a sparse square matrix: ``1 / ||inv(a)||_2`` by ARPACK on the sparse
    LU's solves (raises if ``a`` is exactly singular)."""
    lu = spla.splu(a)
    inv = spla.LinearOperator(a.shape, matvec=lu.solve, rmatvec=lambda v: lu.solve(v, trans="H"),
                              dtype=a.dtype)
    return 1.0 / spla.svds(inv, k=1, tol=1e-3, return_singular_vectors=False, random_state=0)[0]


@pytest.mark.parametrize("name", [*BUNDLED, *CIRCUITS])
def test_floating_nodes_are_the_null_space_of_the_unshunted_network(name, dss_circuit):
    """Dense SVD, where affordable by size (``DENSE_MAX_NODES``)."""
    f = load_feeder(name if name in BUNDLED else dss_circuit(name))
    if f.n_nodes > DENSE_MAX_NODES:
        pytest.skip(f"{name}: {f.n_nodes} nodes > {DENSE_MAX_NODES}: too large for a dense SVD; "
                    "the sparse null-space test covers it")
    np.testing.assert_array_equal(f.floating_nodes(), null_space_nodes(f))


@pytest.mark.parametrize("name", [*BUNDLED, *CIRCUITS])
def test_floating_sections_span_the_null_space_sparse(name, dss_circuit):
    """Every feeder, by sparse linear algebra: each floating section's common-mode voltage is a
    null vector of the unshunted admittance, and pinning one node per section leaves a matrix
    far from singular, so those vectors span its null space (whose nodes are then exactly
    ``floating_nodes()``)."""
    f = load_feeder(name if name in BUNDLED else dss_circuit(name))
    a, d = scaled_unshunted_admittance(f)
    sections = f.floating_sections()
    for sec in sections:  # D^-1 1_sec: the section's nodes all moved together, unscaled
        common_mode = np.zeros(f.n_nodes)
        common_mode[sec] = 1 / d[sec]
        assert np.abs(a @ common_mode).max() <= 1e-12 * np.abs(common_mode).max(), sec
    pinned = np.setdiff1d(np.arange(f.n_nodes), [sec[0] for sec in sections])
    reduced = a[pinned][:, pinned].tocsc()
    norm_bound = np.sqrt(spla.norm(reduced, 1) * spla.norm(reduced, np.inf))  # >= ||reduced||_2
    assert smallest_singular_value(reduced) >= MIN_RELATIVE_SINGULAR_VALUE * norm_bound
    expected = {"ieee123": ["610.1", "610.2", "610.3"],
                **{c: [f"n{b}.{p}" for b in (3, 4) for p in (1, 2, 3)] for c in FLOATING_SECONDARY}}
    assert [f.nodes[i] for i in f.floating_nodes()] == expected.get(name, [])


def test_injection_at_a_floating_node_is_a_clear_error():
    f = load_feeder("ieee123")
    s = torch.zeros(f.n_nodes, dtype=torch.complex128)
    s[f.node_index("610.1")] = 10.0
    with pytest.raises(ValueError, match=r"'610\.1'.*no path to ground.*transformer\.xfm1"):
        PowerFlow(f).solve(s)
    with pytest.raises(ValueError, match=r"injection_nodes: node '610\.2'.*no return path"):
        PowerFlow(f, injection_nodes=["610.2", "61.1"])
    pf = PowerFlow(f, injection_nodes=["61.1"])
    with pytest.raises(ValueError, match=r"at names node '610\.3'.*no path to ground"):
        pf.solve(torch.ones(1, dtype=torch.complex128), at=torch.tensor([f.node_index("610.3")]))
    assert f.node_index("610.1") not in PowerFlow(f).injection_nodes  # "all": grounded only


def test_agents_are_never_placed_on_floating_nodes(dss_circuit):
    # the 3-bus line with a delta-delta transformer to an ungrounded bus that carries a load
    text = CIRCUITS["three_bus"].replace("set voltagebases=[12.47]", (
        "new transformer.tx phases=3 windings=2 xhl=5 wdg=1 bus=b3 conn=delta kv=12.47 kva=500 "
        "wdg=2 bus=lv conn=delta kv=0.48 kva=500\n"
        "new load.lv bus1=lv.1.2 phases=1 conn=delta kv=0.48 kw=200 kvar=50 model=1\n"
        "set voltagebases=[12.47 0.48]"))
    f = load_feeder(dss_circuit("three_bus", text))
    assert [f.nodes[i] for i in f.floating_nodes()] == ["lv.1", "lv.2", "lv.3"]
    p = place_agents(f, 200, {"battery": 1.0}, seed=0)
    assert not np.isin(p.node, f.floating_nodes()).any()
    assert p.n_agents == 200


def test_placement_without_grounded_load_names_the_floating_section(dss_circuit):
    f = load_feeder(dss_circuit("ieee4_yd"))
    with pytest.raises(ValueError, match=r"no grounded node with spot load.*ungrounded sections "
                                         r"\(n3\.1"):
        place_agents(f, 10, {"battery": 1.0}, seed=0)
