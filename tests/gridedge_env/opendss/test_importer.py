"""The OpenDSS importer on small self-written circuits (bad input, staging, taps, load models), the
reference models against the bundled files, and the feeder file format."""

import gzip
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED, Feeder
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.opendss.importer import FeederImportError, import_opendss

TINY = """\
Clear
New Circuit.tiny basekv=12.47 pu=1.01 phases=3 bus1=src MVAsc3=200 MVAsc1=210
{linecode}
New Line.l1 bus1=src bus2=b phases=3 {impedance} length=2 units=km
New Transformer.t1 phases=1 windings=2 buses=[b.1 c.1] conns=[wye wye] kvs=[7.2 7.2]
~ kvas=[500 500] %rs=[0.5 0.5] xhl=1
New Load.ld1 bus1=b phases=3 conn=wye kv=12.47 kw=300 kvar=100 model=1
New Load.ld2 bus1=c.1 phases=1 kv=7.2 kw=50 kvar=10 model=2
{extra}
Set VoltageBases=[12.47]
CalcVoltageBases
"""
INLINE_Z = "r1=0.1 x1=0.3 r0=0.3 x0=0.9 c1=3 c0=1"


def _tiny(tmp_path, extra="", name="tiny.dss", linecode="", impedance=INLINE_Z, bases=True):
    text = TINY.format(extra=extra, linecode=linecode, impedance=impedance)
    if not bases:
        text = text.replace("Set VoltageBases=[12.47]\nCalcVoltageBases\n", "")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tiny_circuit_imports(tmp_path):
    f = import_opendss(_tiny(tmp_path), taps="file")
    assert f.name == "tiny"
    assert f.nodes == ("src.1", "src.2", "src.3", "b.1", "b.2", "b.3", "c.1")
    np.testing.assert_allclose(f.base_kv_ln, 12.47 / math.sqrt(3))
    assert [e.name for e in f.elements] == ["line.l1", "transformer.t1"]
    assert f.load_names == ("load.ld1", "load.ld2")
    assert f.taps == {"t1": [1.0, 1.0]}
    # ld1: three wye terms of 100 + j33.3 kVA constant power; ld2 one constant-Z term
    np.testing.assert_array_equal(f.term_load, [0, 0, 0, 1])
    np.testing.assert_array_equal(f.term_b, [-1, -1, -1, -1])
    np.testing.assert_allclose(f.term_zip_kva[:3, 0], (300 + 100j) / 3)
    np.testing.assert_allclose(f.term_zip_kva[3], [0, 0, 50 + 10j])
    np.testing.assert_allclose(f.term_vnom_v, [12470 / math.sqrt(3)] * 3 + [7200])
    assert abs(f.source_emf_v[0]) == pytest.approx(1.01 * 12470 / math.sqrt(3), rel=1e-12)


def test_missing_master(tmp_path):
    with pytest.raises(FeederImportError, match=r"nothere\.dss: OpenDSS master file not found"):
        import_opendss(tmp_path / "nothere.dss")


def test_malformed_script_is_rejected_with_file_and_line(tmp_path):
    path = _tiny(tmp_path, extra="New Lline.l2 bus1=b bus2=d")
    with pytest.raises(FeederImportError, match=r"(?i)tiny\.dss: OpenDSS rejected .*lline"):
        import_opendss(path)


def test_script_without_circuit(tmp_path):
    path = tmp_path / "empty.dss"
    path.write_text("! nothing but a comment\n")
    with pytest.raises(FeederImportError, match=r"empty\.dss: the script defines no circuit"):
        import_opendss(path)


def test_unsupported_element_is_named(tmp_path):
    path = _tiny(tmp_path, extra="New Isource.i1 bus1=b.1 amps=5")
    with pytest.raises(FeederImportError, match=r"isource\.i1: element class 'isource'"):
        import_opendss(path)


def test_second_source_is_named(tmp_path):
    path = _tiny(tmp_path, extra="New Vsource.v2 bus1=c.1 phases=1 basekv=7.2")
    with pytest.raises(FeederImportError, match=r"vsource\.v2: a second voltage source"):
        import_opendss(path)


def test_two_phase_delta_load_is_named(tmp_path):
    path = _tiny(tmp_path, extra="New Load.dd bus1=b.1.2.3 phases=2 conn=delta kv=12.47 kw=10")
    with pytest.raises(FeederImportError, match=r"load\.dd: two-phase delta"):
        import_opendss(path)


def test_no_voltage_bases(tmp_path):
    with pytest.raises(FeederImportError, match=r"tiny\.dss: no voltage base for nodes \['src\.1'"):
        import_opendss(_tiny(tmp_path, bases=False))


def test_zip_split_of_load_models(tmp_path):
    extra = "\n".join([
        "New Load.z8 bus1=b.2 phases=1 kv=7.2 kw=100 kvar=40 model=8 "
        "zipv=[0.2 0.3 0.5 0.1 0.6 0.3 0.5]",
        "New Load.c4 bus1=b.3 phases=1 kv=7.2 kw=20 kvar=10 model=4 cvrwatts=1 cvrvars=2",
        "New Load.m3 bus1=b.1 phases=1 kv=7.2 kw=30 kvar=5 model=3",
        "New Load.i5 bus1=b.1.2 phases=1 conn=delta kv=12.47 kw=8 kvar=2 model=5",
    ])
    f = import_opendss(_tiny(tmp_path, extra=extra), taps="file")
    split = {n: f.term_zip_kva[f.term_load == i].sum(0) for i, n in enumerate(f.load_names)}
    np.testing.assert_allclose(split["load.z8"], [50 + 12j, 30 + 24j, 20 + 4j], rtol=1e-12)
    np.testing.assert_allclose(split["load.c4"], [0, 20, 10j])
    np.testing.assert_allclose(split["load.m3"], [30, 0, 5j])
    np.testing.assert_allclose(split["load.i5"], [0, 8 + 2j, 0])
    i5 = f.load_names.index("load.i5")
    (t,) = np.flatnonzero(f.term_load == i5)
    assert (f.nodes[f.term_a[t]], f.nodes[f.term_b[t]]) == ("b.1", "b.2")
    assert f.term_vnom_v[t] == pytest.approx(12470.0)


def test_non_zip_cvr_load_is_named(tmp_path):
    path = _tiny(tmp_path, extra="New Load.cv bus1=b.2 phases=1 kv=7.2 kw=10 model=4 cvrwatts=0.8")
    with pytest.raises(FeederImportError, match=r"load\.cv: model 4 with cvrwatts=0\.8"):
        import_opendss(path)


def test_redirect_with_other_letter_case_is_staged(tmp_path, monkeypatch):
    """The master redirects linecodes.dss, the file is LineCodes.DSS: OpenDSS alone fails on a
    case-sensitive file system; the importer stages a copy and leaves the user's folder alone."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "LineCodes.DSS").write_text(
        "New Linecode.lc1 nphases=3 r1=0.05 x1=0.15 r0=0.15 x0=0.45 c1=1.5 c0=0.5 units=km\n")
    master = _tiny(model, linecode="redirect linecodes.dss", impedance="linecode=lc1",
                   name="master.dss")
    before = sorted(p.name for p in model.iterdir())
    if (model / "linecodes.dss").exists():
        pytest.skip("case-insensitive file system")

    import opendssdirect

    monkeypatch.chdir(tmp_path)
    dss = opendssdirect.NewContext()
    with pytest.raises(Exception, match="(?i)not found"):
        dss.Text.Command(f'compile "{master}"')
    monkeypatch.chdir(tmp_path)

    f = import_opendss(master, taps="file")
    # lc1 per km at 2 km equals the inline line with the same per-km values
    g = import_opendss(_tiny(tmp_path, impedance="r1=0.05 x1=0.15 r0=0.15 x0=0.45 c1=1.5 c0=0.5"),
                       taps="file")
    np.testing.assert_allclose(f.elements[0].y_prim, g.elements[0].y_prim, rtol=1e-12)
    assert sorted(p.name for p in model.iterdir()) == before
    assert os.getcwd() == str(tmp_path)


def test_import_restores_working_directory(tmp_path, monkeypatch):
    """OpenDSS moves the process's working directory (a new engine context to its start-up
    folder, compile to the script's); the importer resolves a relative master first and puts
    the working directory back."""
    (tmp_path / "here").mkdir()
    _tiny(tmp_path)
    monkeypatch.chdir(tmp_path / "here")
    for _ in range(2):
        f = import_opendss(Path("..") / "tiny.dss", taps="file")
        assert f.name == "tiny"
        assert os.getcwd() == str(tmp_path / "here")


def test_taps(tmp_path):
    path = _tiny(tmp_path)
    with pytest.raises(FeederImportError, match="taps name transformer 'nope', which does not"):
        import_opendss(path, taps={"nope": 1.0})
    with pytest.raises(FeederImportError, match="taps must be 'solved', 'file' or a dict"):
        import_opendss(path, taps="published")
    f = import_opendss(path, taps={"t1": 1.05})
    g = import_opendss(path, taps={"T1": [0.99, 1.05]})
    assert f.taps == {"t1": [1.0, 1.05]} and g.taps == {"t1": [0.99, 1.05]}
    assert f.meta["taps"] == "given"
    base = import_opendss(path, taps="file")
    # winding-2 admittances scale with 1/tap (see Feeder.with_taps; to 1e-9: the ppm_antifloat
    # admittance on the diagonal does not scale)
    np.testing.assert_allclose(base.with_taps({"t1": 1.05}).elements[1].y_prim,
                               f.elements[1].y_prim, rtol=2e-9)
    assert np.abs(base.elements[1].y_prim - f.elements[1].y_prim).max() > 1e-3


@pytest.mark.parametrize("name", BUNDLED)
def test_reference_models_reproduce_bundled_files(name, feeder_models):
    folder, master, taps = BUNDLED_SOURCES[name]
    new = import_opendss(feeder_models / folder / master, name=name, taps=taps)
    old = load_feeder(name)
    assert new.nodes == old.nodes
    np.testing.assert_array_equal(new.base_kv_ln, old.base_kv_ln)
    assert [e.name for e in new.elements] == [e.name for e in old.elements]
    for a, b in zip(new.elements + (new.source,), old.elements + (old.source,), strict=True):
        np.testing.assert_array_equal(a.conductor_nodes, b.conductor_nodes, err_msg=a.name)
        np.testing.assert_allclose(a.y_prim, b.y_prim, rtol=0,
                                   atol=1e-12 * np.abs(b.y_prim).max(), err_msg=a.name)
    np.testing.assert_allclose(new.source_emf_v, old.source_emf_v, rtol=1e-12)
    assert new.load_names == old.load_names and new.load_params == old.load_params
    for field in ("term_a", "term_b", "term_load"):
        np.testing.assert_array_equal(getattr(new, field), getattr(old, field), err_msg=field)
    np.testing.assert_allclose(new.term_zip_kva, old.term_zip_kva, rtol=1e-12)
    np.testing.assert_allclose(new.term_vnom_v, old.term_vnom_v, rtol=1e-12)
    assert new.taps == old.taps
    np.testing.assert_array_equal(new.lines, old.lines)


# ---------------------------------------------------------------------------------- file format
def test_save_load_round_trip(tmp_path):
    f = load_feeder("ieee13")
    path = tmp_path / "f.json.gz"
    f.save(path)
    g = Feeder.load(path)
    assert g.to_json() == f.to_json()
    assert g.nodes == f.nodes and g.bus_coords == f.bus_coords
    for a, b in zip(g.elements, f.elements, strict=True):
        np.testing.assert_array_equal(a.y_prim, b.y_prim)
    np.testing.assert_array_equal(g.term_zip_kva, f.term_zip_kva)
    (tmp_path / "again").mkdir()
    path2 = tmp_path / "again" / "f.json.gz"
    g.save(path2)
    assert path2.read_bytes() == path.read_bytes()  # reproducible bytes (same file name)
    assert load_feeder(path2).to_json() == f.to_json()


def _write(path, obj):
    with gzip.open(path, "wb") as fh:
        fh.write(json.dumps(obj).encode())


def test_load_rejects_bad_files(tmp_path):
    plain = tmp_path / "plain.json.gz"
    plain.write_text("not gzip at all")
    with pytest.raises(ValueError, match=r"plain\.json\.gz: not a gridedge feeder file"):
        Feeder.load(plain)

    broken = tmp_path / "broken.json.gz"
    with gzip.open(broken, "wb") as fh:
        fh.write(b'{"format_version": 1, "name": ')
    with pytest.raises(ValueError, match=r"broken\.json\.gz: not a gridedge feeder file"):
        Feeder.load(broken)

    d = load_feeder("ieee13").to_json()
    future = tmp_path / "future.json.gz"
    _write(future, {**d, "format_version": 99})
    with pytest.raises(ValueError, match=r"future\.json\.gz: feeder format_version 99 is not"):
        Feeder.load(future)

    partial = tmp_path / "partial.json.gz"
    _write(partial, {k: v for k, v in d.items() if k != "term_zip_kva"})
    with pytest.raises(ValueError, match=r"partial\.json\.gz: feeder file lacks field "
                                         r"'term_zip_kva'"):
        Feeder.load(partial)

    with pytest.raises(FileNotFoundError, match=r"absent\.json\.gz: feeder file not found"):
        load_feeder(tmp_path / "absent.json.gz")
    with pytest.raises(ValueError, match="'ieee999' is neither a bundled feeder"):
        load_feeder("ieee999")
