"""Export to OpenDSS: the re-compiled circuit has our admittances, bases and loads exactly, and
solves like the original reference model (when ../shared is available)."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import opendssdirect
import pytest

from gridedge_env.cli import validate_main
from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.network.synthetic import synthetic_radial
from gridedge_env.opendss.crosscheck import BUDGET_GATES, compare
from gridedge_env.opendss.exporter import export_opendss, line_matrices, reactor_impedance
from gridedge_env.opendss.importer import import_opendss, stage_master

from ..conftest import CIRCUITS

#: Reactors in every form the importer reads: series (with a parallel resistance), series with
#: mutual impedances, wye shunt (three-phase by kvar, single-phase to ground by R), delta shunt
#: (three-phase, and single-phase between two phases).
REACTORS = """new reactor.series bus1=b3 bus2=b4 phases=3 r=0.5 x=2.5 rp=400
new reactor.mutual bus1=b4 bus2=b5 phases=3 rmatrix=[0.3 | 0.05 0.3 | 0.04 0.05 0.3]
~ xmatrix=[1.2 | 0.4 1.2 | 0.3 0.4 1.2]
new reactor.shunt bus1=b4 phases=3 kvar=300 kv=12.47
new reactor.neutral bus1=b5.2 phases=1 r=900 x=0
new reactor.delta bus1=b5 phases=3 conn=delta kvar=200 kv=12.47
new reactor.delta1 bus1=b3.1.2 phases=1 conn=delta kvar=50 kv=12.47
new load.l5 bus1=b5 phases=3 conn=wye kv=12.47 kw=200 kvar=50 model=1
set voltagebases=[12.47]"""
REACTOR_CONNS = {"reactor.series": "wye", "reactor.mutual": "wye", "reactor.shunt": "wye",
                 "reactor.neutral": "wye", "reactor.delta": "delta", "reactor.delta1": "delta"}

FEEDERS = [*BUNDLED, "synthetic40", "reactors"]


@pytest.fixture(autouse=True)
def _keep_cwd(monkeypatch, tmp_path):
    # OpenDSS's compile changes the process's working directory; monkeypatch puts it back.
    monkeypatch.chdir(tmp_path)


def _reactor_master(tmp_path: Path) -> Path:
    path = tmp_path / "reactors.dss"
    path.write_text(CIRCUITS["three_bus"].replace("set voltagebases=[12.47]", REACTORS))
    return path


def _feeder(name, tmp_path):
    if name == "synthetic40":
        return synthetic_radial(40)
    return load_feeder(_reactor_master(tmp_path) if name == "reactors" else name)


def _compiled(script: Path):
    dss = opendssdirect.NewContext()
    dss.Text.Command("clear")
    dss.Text.Command(f'compile "{script}"')
    return dss


def _reference(models: Path, name: str, tmp_path: Path):
    """The untouched reference model of bundled feeder ``name`` at its published taps, controls
    off, compiled in a fresh OpenDSS context."""
    folder, master, taps = BUNDLED_SOURCES[name]
    ref = _compiled(stage_master((models / folder / master).resolve(), tmp_path))
    for reg, tap in taps.items():
        ref.Text.Command(f"transformer.{reg}.wdg=2 tap={tap!r}")
    ref.Text.Command("set controlmode=off")
    return ref


def _export(feeder, tmp_path, **kw) -> Path:
    path = tmp_path / f"{feeder.name}_export.dss"
    text = export_opendss(feeder, path, **kw)
    assert path.read_text() == text
    return path


def _conductor_names(dss) -> list[str]:
    buses, order = dss.CktElement.BusNames(), dss.CktElement.NodeOrder()
    ncond = dss.CktElement.NumConductors()
    return [f"{buses[k // ncond].split('.')[0].lower()}.{n}" if n else "ground"
            for k, n in enumerate(order)]


def _yprim(dss) -> np.ndarray:
    flat = np.asarray(dss.CktElement.YPrim())
    k = math.isqrt(flat.size // 2)
    return (flat[0::2] + 1j * flat[1::2]).reshape(k, k)


def _voltages(dss, feeder) -> np.ndarray:
    """Node voltages (V, complex) in the feeder's node order; YNodeOrder re-read every time."""
    order = [feeder.node_index(n) for n in dss.Circuit.YNodeOrder()]
    assert sorted(order) == list(range(feeder.n_nodes))
    flat = np.asarray(dss.Circuit.YNodeVArray())
    v = np.zeros(feeder.n_nodes, dtype=np.complex128)
    v[order] = flat[0::2] + 1j * flat[1::2]
    return v


def _solve(dss):
    dss.Text.Command("set tolerance=1e-12 maxiterations=200")
    dss.Solution.Solve()
    assert dss.Solution.Converged()


# ---------------------------------------------------------------------------------- admittances
def _check_yprims(feeder, dss):
    dss.Solution.Solve()  # OpenDSS builds the YPrims on the first solve
    for el in (*feeder.elements, feeder.source):
        dss.Circuit.SetActiveElement(el.name)
        assert dss.CktElement.Name().lower() == el.name, f"{el.name} missing from the export"
        ours = [feeder.nodes[i] if i >= 0 else "ground" for i in el.conductor_nodes]
        assert _conductor_names(dss) == ours, el.name
        np.testing.assert_allclose(_yprim(dss), el.y_prim, rtol=1e-9,
                                   atol=1e-12 * np.abs(el.y_prim).max(), err_msg=el.name)


@pytest.mark.parametrize("name", FEEDERS)
def test_recompiled_yprims_equal_feeder(name, tmp_path):
    f = _feeder(name, tmp_path)
    dss = _compiled(_export(f, tmp_path))
    assert dss.Circuit.NumCktElements() == len(f.elements) + 1 + f.n_loads
    _check_yprims(f, dss)
    # bus voltage bases and coordinates
    for i, node in enumerate(f.nodes):
        dss.Circuit.SetActiveBus(node.rsplit(".", 1)[0])
        assert dss.Bus.kVBase() == pytest.approx(f.base_kv_ln[i], rel=1e-14), node
    for bus, (x, y) in f.bus_coords.items():
        dss.Circuit.SetActiveBus(bus)
        assert dss.Bus.Coorddefined() and (dss.Bus.X(), dss.Bus.Y()) == (x, y)
    assert dss.Solution.Frequency() == f.meta.get("frequency_hz", 60.0)
    assert dss.Solution.ControlMode() == -1  # OFF


def test_retapped_feeder_exports_its_taps(tmp_path):
    f = load_feeder("ieee13").with_taps({"reg1": 0.975, "reg3": 1.0125})
    dss = _compiled(_export(f, tmp_path))
    _check_yprims(f, dss)
    dss.Transformers.Name("reg1")
    dss.Transformers.Wdg(2)
    assert dss.Transformers.Tap() == 0.975


def test_reactors_export_as_their_impedances_and_solve_like_the_original(tmp_path):
    """Every reactor form: the impedance OpenDSS was given comes back from ``y_prim``, and the
    exported circuit solves like the original script (same loads, held at constant power)."""
    master = _reactor_master(tmp_path)
    f = load_feeder(master)
    reactors = {e.name: reactor_impedance(e) for e in f.elements if e.cls == "reactor"}
    assert {n: conn for n, (conn, _) in reactors.items()} == REACTOR_CONNS
    series = 1 / (1 / (0.5 + 2.5j) + 1 / 400)  # r + jx in parallel with rp, ohms
    np.testing.assert_allclose(reactors["reactor.series"][1], series * np.eye(3), atol=1e-12)
    np.testing.assert_allclose(reactors["reactor.mutual"][1][2, 0], 0.04 + 0.3j, rtol=1e-12)
    np.testing.assert_allclose(reactors["reactor.neutral"][1], [[900.0]], rtol=1e-12)
    x_delta = 12.47**2 / 0.2  # kv^2 / Mvar: each branch carries the full line-to-line voltage
    np.testing.assert_allclose(reactors["reactor.delta"][1], [[3j * x_delta]], rtol=1e-12)
    script = export_opendss(f)
    assert "New Reactor.delta phases=3 bus1=b5 conn=delta R=" in script
    assert "New Reactor.shunt phases=3 bus1=b4 bus2=b4.0.0.0 rmatrix=" in script

    ours = _compiled(_export(f, tmp_path))
    _solve(ours)
    ref = _compiled(master)
    ref.Text.Command("batchedit load..* vminpu=0 vmaxpu=10 vlowpu=0")
    _solve(ref)
    err = np.abs(_voltages(ours, f) - _voltages(ref, f)) / (f.base_kv_ln * 1e3)
    assert err.max() <= 1e-10, (f.nodes[int(err.argmax())], err.max())


def test_reactor_that_opendss_cannot_hold_is_refused(tmp_path):
    f = load_feeder(_reactor_master(tmp_path))
    i = {e.name: k for k, e in enumerate(f.elements)}

    def with_yprim(name, y):
        el = f.elements[i[name]]
        return dataclasses.replace(f, elements=(*f.elements[:i[name]], dataclasses.replace(
            el, y_prim=y), *f.elements[i[name] + 1:]))

    y = f.elements[i["reactor.delta"]].y_prim.copy()
    y[0, 1] = y[1, 0] = 2 * y[0, 1]
    with pytest.raises(ValueError, match="cannot export reactor.delta: its delta branches differ"):
        export_opendss(with_yprim("reactor.delta", y))
    y = f.elements[i["reactor.series"]].y_prim.copy()
    y[:, [0, 3]] = y[[0, 3], :] = 0  # phase 1 open: no impedance matrix
    with pytest.raises(ValueError, match="cannot export reactor.series: .*singular"):
        export_opendss(with_yprim("reactor.series", y))


def test_every_script_command_is_accepted(tmp_path):
    """OpenDSS answers some errors (e.g. an unknown bus in SetkVBase) with a message, not an
    exception: run the script command by command and require silence."""
    f = load_feeder("ieee13")
    s = np.zeros(f.n_nodes, dtype=complex)
    s[f.node_index("675.2")] = -25 + 5j
    dss = opendssdirect.NewContext()
    for line in export_opendss(f, s_kva=s, load_model="zip").splitlines():
        if line and not line.startswith("!"):
            dss.Text.Command(line)
            assert dss.Text.Result() == "", line


# ---------------------------------------------------------------------------------- re-import
@pytest.mark.parametrize("name", FEEDERS)
def test_export_reimports_identically(name, tmp_path):
    f = _feeder(name, tmp_path)
    g = import_opendss(_export(f, tmp_path, load_model="opendss"), name=f.name, taps="file")
    assert sorted(g.nodes) == sorted(f.nodes)
    idx = np.array([f.node_index(n) for n in g.nodes])  # g's node i is f's node idx[i]
    np.testing.assert_allclose(g.base_kv_ln, f.base_kv_ln[idx], rtol=1e-14, atol=0)
    assert [e.name for e in g.elements] == [e.name for e in f.elements]
    for e, o in zip(g.elements, f.elements, strict=True):
        mapped = np.where(e.conductor_nodes >= 0, idx[e.conductor_nodes], -1)
        np.testing.assert_array_equal(mapped, o.conductor_nodes, err_msg=e.name)
        np.testing.assert_allclose(e.y_prim, o.y_prim, rtol=0, atol=1e-12 * np.abs(o.y_prim).max(),
                                   err_msg=e.name)
    assert g.taps == f.taps
    np.testing.assert_allclose(g.source_emf_v, f.source_emf_v, rtol=1e-12)
    np.testing.assert_array_equal(g.line_normamps, f.line_normamps)
    # loads: same names, parameters and terms (node indices mapped to f's order)
    assert g.load_names == f.load_names
    for pg, pf in zip(g.load_params, f.load_params, strict=True):
        assert {k: pg[k] for k in ("phases", "conn", "model")} == \
            {k: pf[k] for k in ("phases", "conn", "model")}
        assert pg["bus1"].lower() == pf["bus1"].lower()
        for k in ("kv", "kw", "kvar"):
            assert pg[k] == pytest.approx(pf[k], rel=1e-14, abs=1e-14), (pf["bus1"], k)
    np.testing.assert_array_equal(g.term_load, f.term_load)
    np.testing.assert_array_equal(np.where(g.term_a >= 0, idx[g.term_a], -1), f.term_a)
    np.testing.assert_array_equal(np.where(g.term_b >= 0, idx[g.term_b], -1), f.term_b)
    np.testing.assert_allclose(g.term_zip_kva, f.term_zip_kva, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(g.term_vnom_v, f.term_vnom_v, rtol=1e-14)
    assert g.bus_coords == f.bus_coords


def test_load_scale_and_injections_reach_the_script(tmp_path):
    f = load_feeder("ieee13")
    s = np.zeros(f.n_nodes, dtype=complex)
    s[f.node_index("675.2")] = -25 + 5j
    s[f.node_index("634.1")] = 3.5
    scale = np.linspace(0.5, 1.5, f.n_loads)
    script = export_opendss(f, load_scale=scale, s_kva=s, load_model="zip")
    assert "New Load.inj_675_2 bus1=675.2 phases=1 conn=wye kv=2.4017771198288433 kw=-25.0 " \
           "kvar=5.0 model=1" in script
    assert "New Load.inj_634_1 " in script and script.count("New Load.inj_") == 2
    for model in ("pq", "zip", "opendss"):
        g = import_opendss(_export(f, tmp_path, load_scale=scale, s_kva=s, load_model=model),
                           taps="file")
        per_load = np.zeros((f.n_loads, 3), dtype=complex)
        np.add.at(per_load, f.term_load, f.term_zip_kva)
        want = per_load * scale[:, None]
        if model == "pq":
            want = np.c_[want.sum(1), np.zeros((f.n_loads, 2))]
        got = np.zeros((g.n_loads, 3), dtype=complex)
        np.add.at(got, g.term_load, g.term_zip_kva)
        by_name = dict(zip(g.load_names, got, strict=True))
        if model == "zip":  # the I and Z parts are loads <name>_i and <name>_z
            for n in list(by_name):
                if n.endswith(("_i", "_z")) and n[:-2] in by_name:
                    by_name[n[:-2]] = by_name[n[:-2]] + by_name.pop(n)
        for li, n in enumerate(f.load_names):
            np.testing.assert_allclose(by_name.pop(n), want[li], rtol=1e-13, atol=1e-12,
                                       err_msg=f"{model} {n}")
        assert by_name.pop("load.inj_675_2") == pytest.approx([-25 + 5j, 0, 0])
        assert by_name.pop("load.inj_634_1") == pytest.approx([3.5, 0, 0])
        assert not by_name, by_name


# ---------------------------------------------------------------------------------- solutions
@pytest.mark.parametrize("name", BUNDLED)
def test_exported_solution_equals_original_model(name, feeder_models, tmp_path):
    """pq_loads=True export vs the untouched reference model with the same loads as constant PQ,
    the published taps, controls off and the same injections, both solved by OpenDSS."""
    f = load_feeder(name)
    rng = np.random.default_rng(7)
    scale = rng.uniform(0.5, 1.5, f.n_loads)
    src = set(f.source_nodes.tolist())
    inj = rng.choice([i for i in range(f.n_nodes) if i not in src], size=4, replace=False)
    s = np.zeros(f.n_nodes, dtype=complex)
    s[inj] = rng.uniform(-40, 40, 4) + 1j * rng.uniform(-15, 15, 4)

    ours = _compiled(_export(f, tmp_path, load_scale=scale, s_kva=s, pq_loads=True))
    _solve(ours)
    v_ours = _voltages(ours, f)

    ref = _reference(feeder_models, name, tmp_path)
    for li, (n, p) in enumerate(zip(f.load_names, f.load_params, strict=True)):
        ref.Text.Command(f"edit {n} model=1 vminpu=0 vmaxpu=10 vlowpu=0 "
                         f"kw={float(p['kw'] * scale[li])!r} kvar={float(p['kvar'] * scale[li])!r}")
    for i in inj:
        bus, ph = f.nodes[i].rsplit(".", 1)
        ref.Text.Command(f"new load.x{bus}_{ph} bus1={bus}.{ph} phases=1 conn=wye model=1 "
                         f"kv={float(f.base_kv_ln[i])!r} kw={float(s[i].real)!r} "
                         f"kvar={float(s[i].imag)!r} "
                         "vminpu=0 vmaxpu=10 vlowpu=0")
    _solve(ref)
    v_ref = _voltages(ref, f)

    err = np.abs(v_ours - v_ref) / (f.base_kv_ln * 1e3)
    assert err.max() <= 1e-8, (f.nodes[int(err.argmax())], err.max())
    # and the loads really are what we think: a changed load moves the solution
    assert np.abs(v_ours - _voltages(_nominal(f, tmp_path), f)).max() > 1.0


def _nominal(f, tmp_path):
    dss = _compiled(_export(f, tmp_path, pq_loads=True))
    _solve(dss)
    return dss


@pytest.mark.parametrize("name", BUNDLED)
def test_own_load_models_solve_like_original(name, feeder_models, tmp_path):
    """pq_loads=False keeps each load's OpenDSS model and voltage band: the export solves like
    the reference model itself at the published taps. The IEEE 34 models set vminpu=0.85 and go
    below 0.95 pu; the band comes from load_params when present, else OpenDSS's default."""
    f = load_feeder(name)
    ref = _reference(feeder_models, name, tmp_path)
    _solve(ref)
    v_ref = _voltages(ref, f)
    bands = []
    for n in f.load_names:
        ref.Loads.Name(n.split(".", 1)[1])
        bands.append({"vminpu": ref.Loads.Vminpu(), "vmaxpu": ref.Loads.Vmaxpu()})
    banded = dataclasses.replace(f, load_params=tuple(
        {**p, **b} for p, b in zip(f.load_params, bands, strict=True)))

    ours = _compiled(_export(banded, tmp_path, pq_loads=False))
    _solve(ours)
    err = np.abs(_voltages(ours, f) - v_ref) / (f.base_kv_ln * 1e3)
    assert err.max() <= 1e-8, (f.nodes[int(err.argmax())], err.max())

    plain = _compiled(_export(f, tmp_path, pq_loads=False))  # OpenDSS's default band
    _solve(plain)
    plain_err = np.abs(_voltages(plain, f) - v_ref).max() / 1e3
    if any(b["vminpu"] != 0.95 for b in bands):
        assert plain_err > 1e-4
    else:
        assert plain_err <= 1e-8 * f.base_kv_ln.max()
    pq_err = np.abs(_voltages(_nominal(f, tmp_path), f) - v_ref).max() / 1e3
    if any(p["model"] != 1 for p in f.load_params):
        assert pq_err > 1e-4  # the load models matter
    else:  # IEEE 8500: every load is already constant power, so the two exports coincide
        assert pq_err <= 1e-8 * f.base_kv_ln.max()


@pytest.mark.parametrize("name", FEEDERS)
def test_exported_circuit_solves_like_our_power_flow(name, tmp_path):
    f = _feeder(name, tmp_path)
    gates = dict(BUDGET_GATES)
    if name == "reactors":  # OpenDSS's Circuit.Losses leaves out shunt elements: the 900-ohm
        del gates["max_loss_err_of_throughput"]  # neutral reactor's 55 kW is no loss there
    # constant-power loads only (IEEE 8500): the "zip" export is the "pq" one, compared once
    modes = ("pq", "zip") if f.term_zip_kva[:, 1:].any() else ("pq",)
    for mode in modes:
        c = compare(f, scenarios=3, seed=5, load_model=mode)  # through the export
        assert c.n_compared == c.n_scenarios, c.unsolved
        assert not c.exceeded(gates), c.exceeded(gates)


# ---------------------------------------------------------------------------------- bad input
def test_export_bad_input():
    f = load_feeder("ieee13")
    with pytest.raises(ValueError, match=r"s_kva must have shape \(41,\)"):
        export_opendss(f, s_kva=np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        export_opendss(f, s_kva=np.full(f.n_nodes, np.nan))
    with pytest.raises(ValueError, match=r"load_scale must be a scalar or have shape \(15,\)"):
        export_opendss(f, load_scale=np.ones(4))
    with pytest.raises(ValueError, match="load_model"):
        export_opendss(f, load_model="zipv")

    odd = dataclasses.replace(f.elements[0], name="fault.f1")
    with pytest.raises(ValueError, match="cannot export fault.f1: element class 'fault'"):
        export_opendss(dataclasses.replace(f, elements=(odd, *f.elements[1:])))
    li = f.lines[0]
    charged = dataclasses.replace(f.elements[li], name="reactor.r1")  # a line's shunt: no reactor
    with pytest.raises(ValueError, match=r"cannot export reactor.r1: .*\[\[Y, -Y\], \[-Y, Y\]\]"):
        export_opendss(dataclasses.replace(f, elements=(*f.elements[:li], charged,
                                                        *f.elements[li + 1:])))

    line = f.elements[li]
    k = line.y_prim.shape[0] // 2
    lossy = line.y_prim.copy()
    lossy[:k, :k] += 1e-3 * np.eye(k)
    lossy[k:, k:] += 1e-3 * np.eye(k)
    bad = dataclasses.replace(line, y_prim=lossy)
    elements = f.elements[:li] + (bad,) + f.elements[li + 1:]
    with pytest.raises(ValueError, match=f"cannot export {line.name}: .*conductance"):
        export_opendss(dataclasses.replace(f, elements=elements))

    y = f.source.y_prim.copy()
    y[0, 0] *= 1.1
    with pytest.raises(ValueError, match="cannot export vsource.source: .*not balanced"):
        export_opendss(dataclasses.replace(f, source=dataclasses.replace(f.source, y_prim=y)))

    names = ("load.inj_675_2", *f.load_names[1:])
    s = np.zeros(f.n_nodes, dtype=complex)
    s[f.node_index("675.2")] = 1.0
    with pytest.raises(ValueError, match="collide.*inj_675_2"):
        export_opendss(dataclasses.replace(f, load_names=names), s_kva=s)

    params = ({**f.load_params[0], "model": 8}, *f.load_params[1:])
    with pytest.raises(ValueError, match="cannot export load.671 with its own OpenDSS model 8"):
        export_opendss(dataclasses.replace(f, load_params=params), pq_loads=False)
    export_opendss(dataclasses.replace(f, load_params=params), pq_loads=True)  # fine as PQ


def test_validate_names_an_element_the_export_cannot_write(tmp_path, capsys):
    """A saved feeder is compared through the export: what it cannot write is one line on stderr
    and exit status 2, no traceback."""
    f = load_feeder("ieee13")
    odd = dataclasses.replace(f.elements[0], name="fault.f1")
    path = tmp_path / "odd.json.gz"
    dataclasses.replace(f, elements=(odd, *f.elements[1:])).save(path)
    with pytest.raises(SystemExit) as exc:
        validate_main([str(path), "--scenarios", "1"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"gridedge-validate: {path}: cannot export fault.f1: element class 'fault'")


def test_validate_help_lists_every_bundled_feeder(capsys):
    with pytest.raises(SystemExit):
        validate_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"bundled feeder name ({', '.join(BUNDLED)})" in text


def test_line_matrices_are_the_pi_model():
    f = load_feeder("ieee13")
    line = f.elements[f.lines[0]]
    z, c = line_matrices(line, 60.0)
    ys, ysh = np.linalg.inv(z), 1j * 2 * np.pi * 60.0 * c / 2
    np.testing.assert_allclose(np.block([[ys + ysh, -ys], [-ys, ys + ysh]]), line.y_prim,
                               rtol=1e-12, atol=1e-12 * np.abs(line.y_prim).max())
