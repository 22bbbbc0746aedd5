"""OpenDSS import: supported models, reproducibility of the bundled files, and bad input."""

import gzip

import numpy as np
import pytest

from gridedge_env.network import Feeder, load_feeder
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.network.opendss_import import FeederImportError, import_opendss

TINY = """Clear
New Circuit.tiny basekv=12.47 pu=1.0 phases=3 bus1=src
New Line.l1 phases=3 bus1=src bus2=b1 length=1 units=km r1=0.1 x1=0.3 r0=0.3 x0=0.9
New Load.ld1 bus1=b1 phases=3 kv=12.47 kw=100 kvar=30
{extra}
Set VoltageBases=[12.47]
CalcVoltageBases
"""


def write(tmp_path, extra="", name="master.dss", text=None):
    path = tmp_path / name
    path.write_text(TINY.format(extra=extra) if text is None else text)
    return path


def test_tiny_circuit_imports(tmp_path):
    f = import_opendss(write(tmp_path), taps="file")
    assert f.name == "tiny" and f.n_nodes == 6 and f.n_loads == 1
    assert f.line_names == ("line.l1",)
    np.testing.assert_allclose(f.term_zip_kva.sum(), 100 + 30j)
    np.testing.assert_allclose(f.base_kv_ln, 12.47 / np.sqrt(3))


@pytest.mark.parametrize("name", sorted(BUNDLED_SOURCES))
def test_reference_models_reproduce_bundled_files(name, feeder_models):
    folder, master, taps = BUNDLED_SOURCES[name]
    fresh = import_opendss(feeder_models / folder / master, name=name, taps=taps)
    shipped = load_feeder(name)
    assert fresh.nodes == shipped.nodes and fresh.load_names == shipped.load_names
    for a, b in zip(fresh.elements, shipped.elements, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.conductor_nodes, b.conductor_nodes)
        np.testing.assert_allclose(a.y_prim, b.y_prim, rtol=1e-12, atol=0)
    np.testing.assert_allclose(fresh.term_zip_kva, shipped.term_zip_kva, rtol=1e-12)


def test_missing_master(tmp_path):
    with pytest.raises(FeederImportError, match="not found"):
        import_opendss(tmp_path / "nope.dss")


def test_malformed_script(tmp_path):
    path = write(tmp_path, text="Clear\nNew Circuit.x basekv=12.47 bus1=a\nNew Lyne.l1 bus1=a\n")
    with pytest.raises(FeederImportError, match="master.dss: OpenDSS rejected"):
        import_opendss(path)


def test_unsupported_element_is_named(tmp_path):
    path = write(tmp_path, extra="New Generator.g1 bus1=b1 phases=3 kv=12.47 kw=10")
    with pytest.raises(FeederImportError, match="generator.g1"):
        import_opendss(path, taps="file")


def test_two_phase_delta_load_is_named(tmp_path):
    path = write(tmp_path, extra="New Load.d2 bus1=b1.1.2 phases=2 conn=delta kv=12.47 kw=5")
    with pytest.raises(FeederImportError, match="load.d2: two-phase delta"):
        import_opendss(path, taps="file")


def test_missing_voltage_bases(tmp_path):
    text = TINY.format(extra="").replace("Set VoltageBases=[12.47]\nCalcVoltageBases\n", "")
    with pytest.raises(FeederImportError, match="no voltage base"):
        import_opendss(write(tmp_path, text=text), taps="file")


def test_bad_taps(tmp_path):
    with pytest.raises(FeederImportError, match="transformer 'reg9'"):
        import_opendss(write(tmp_path), taps={"reg9": 1.0})
    with pytest.raises(FeederImportError, match="taps must be"):
        import_opendss(write(tmp_path), taps="published")


def test_redirect_with_other_letter_case(tmp_path):
    (tmp_path / "LineCodes.DSS").write_text(
        "New Linecode.lc nphases=3 r1=0.1 x1=0.3 r0=0.3 x0=0.9 units=km\n")
    text = TINY.format(extra="").replace(
        "New Line.l1 phases=3 bus1=src bus2=b1 length=1 units=km r1=0.1 x1=0.3 r0=0.3 x0=0.9",
        "redirect linecodes.dss\nNew Line.l1 phases=3 bus1=src bus2=b1 length=1 units=km linecode=lc")
    f = import_opendss(write(tmp_path, text=text), taps="file")
    assert f.line_names == ("line.l1",)
    assert not (tmp_path / "linecodes.dss").exists()  # the user's folder is left alone


def test_save_load_roundtrip_and_bad_files(tmp_path):
    f = load_feeder("ieee13")
    path = tmp_path / "f.json.gz"
    f.save(path)
    g = Feeder.load(path)
    assert g.nodes == f.nodes and g.taps == f.taps
    for a, b in zip(f.elements, g.elements, strict=True):
        np.testing.assert_array_equal(a.y_prim, b.y_prim)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.json.gz: not a gridedge feeder file"):
        Feeder.load(bad)
    old = tmp_path / "old.json.gz"
    with gzip.open(old, "wt") as fh:
        fh.write('{"format_version": 99}')
    with pytest.raises(ValueError, match="old.json.gz: feeder format_version 99"):
        Feeder.load(old)
    with pytest.raises(ValueError, match="neither a bundled feeder"):
        load_feeder("ieee999")
