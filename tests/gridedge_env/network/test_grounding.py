"""Floating nodes: the structural rule against linear algebra, and clear errors where an
injection or an agent would need a return path that is not there."""

import numpy as np
import pytest
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.powerflow import PowerFlow
from gridedge_env.scenarios.placement import place_agents

from ..conftest import CIRCUITS, FLOATING_SECONDARY


def null_space_nodes(f) -> np.ndarray:
    """Nodes in the null space of the network admittance without shunts to the reference
    (line charging, anti-float): whose voltage only those shunts pin down."""
    n = f.n_nodes
    y0 = np.zeros((n, n), dtype=np.complex128)
    for el in f.elements + (f.source,):
        y = el.y_prim - np.diag(el.y_prim.sum(1))
        keep = np.flatnonzero(el.conductor_nodes >= 0)
        idx = el.conductor_nodes[keep]
        y0[np.ix_(idx, idx)] += y[np.ix_(keep, keep)]
    d = 1 / np.sqrt(np.abs(np.diag(y0)))
    _, sv, vh = np.linalg.svd(y0 * d[:, None] * d[None, :])
    null = vh[sv < 1e-12 * sv.max()]
    return np.flatnonzero((np.abs(null) > 1e-8).any(0))


@pytest.mark.parametrize("name", [*BUNDLED, *CIRCUITS])
def test_floating_nodes_are_the_null_space_of_the_unshunted_network(name, dss_circuit):
    f = load_feeder(name if name in BUNDLED else dss_circuit(name))
    np.testing.assert_array_equal(f.floating_nodes(), null_space_nodes(f))
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
