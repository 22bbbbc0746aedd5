"""Export to OpenDSS: the re-compiled circuit has our admittances, bases and loads exactly."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from gridedge_env.network import BUNDLED, load_feeder
from gridedge_env.network.opendss_export import export_opendss
from gridedge_env.network.opendss_import import import_opendss
from gridedge_env.network.synthetic import synthetic_radial
from gridedge_env.validation import compare

FEEDERS = [*BUNDLED, "synthetic40"]


def _feeder(name):
    return synthetic_radial(40) if name == "synthetic40" else load_feeder(name)


def _reimport(feeder, **kw):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.dss"
        export_opendss(feeder, path, **kw)
        return import_opendss(path, name=feeder.name, taps="file")


@pytest.mark.parametrize("name", FEEDERS)
def test_export_reimports_identically(name):
    f = _feeder(name)
    g = _reimport(f)
    idx = np.array([f.node_index(n) for n in g.nodes])
    np.testing.assert_array_equal(g.base_kv_ln, f.base_kv_ln[idx])
    ours = {e.name: e for e in f.elements}
    assert set(ours) == {e.name for e in g.elements}
    for e in g.elements:
        o = ours[e.name]
        np.testing.assert_array_equal(np.where(e.conductor_nodes >= 0, idx[e.conductor_nodes], -1),
                                      o.conductor_nodes)
        np.testing.assert_allclose(e.y_prim, o.y_prim, rtol=0, atol=1e-12 * np.abs(o.y_prim).max())
    np.testing.assert_allclose(g.term_zip_kva.sum(), f.term_zip_kva.sum(), rtol=1e-12)


def test_export_with_loads_and_injections():
    f = load_feeder("ieee13")
    s = np.zeros(f.n_nodes, dtype=complex)
    s[f.node_index("675.2")] = -25 + 5j
    scale = np.linspace(0.5, 1.5, f.n_loads)
    script = export_opendss(f, load_scale=scale, s_kva=s, load_model="zip")
    assert "New Load.inj_675_2 bus1=675.2" in script and "kw=-25.0" in script
    g = _reimport(f, load_scale=scale, s_kva=s)
    total = (f.term_zip_kva.sum(1) * scale[f.term_load]).sum() + s.sum()
    np.testing.assert_allclose(g.term_zip_kva.sum(), total, rtol=1e-12)


@pytest.mark.parametrize("name", FEEDERS)
def test_exported_circuit_solves_like_our_power_flow(name):
    for mode in ("pq", "zip"):
        c = compare(_feeder(name), scenarios=3, seed=5, load_model=mode)  # through the export
        assert c.max_v_err_pu < 1e-8 and c.max_i_rel_err < 1e-5


def test_export_bad_input():
    f = load_feeder("ieee13")
    with pytest.raises(ValueError, match="s_kva must have shape"):
        export_opendss(f, s_kva=np.zeros(3))
    with pytest.raises(ValueError, match="load_model"):
        export_opendss(f, load_model="zipv")
    import dataclasses

    odd = dataclasses.replace(f.elements[0], name="reactor.r1")
    with pytest.raises(ValueError, match="reactor.r1"):
        export_opendss(dataclasses.replace(f, elements=(odd, *f.elements[1:])))
