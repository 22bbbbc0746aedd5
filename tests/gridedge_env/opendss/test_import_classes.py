"""What real feeders contain, imported: generators, PV systems and storage at their snapshot
models, controls settled as OpenDSS settles them, master files that also solve, show, export
and plot, and a one-line error for anything still unsupported. Each circuit is DSS text written
here and compared node by node with OpenDSS's own snapshot solution (``crosscheck.compare``)."""

import math
import time
from pathlib import Path

import numpy as np
import pytest

from gridedge_env import PowerFlow
from gridedge_env.cli import bench_main, validate_main
from gridedge_env.feeders import load_feeder
from gridedge_env.opendss import importer
from gridedge_env.opendss.crosscheck import BUDGET_GATES, compare
from gridedge_env.opendss.exporter import export_opendss
from gridedge_env.opendss.importer import FeederImportError, import_opendss
from gridedge_env.opendss.staging import disable_actions
from gridedge_env.scenarios.build import build_scenario
from gridedge_env.scenarios.config import ScenarioConfig

#: A short 3-phase line with a load at its end; ``{extra}`` adds the element under test.
LINE = """\
Clear
New Circuit.cls basekv=12.47 pu=1.02 phases=3 bus1=src MVAsc3=200 MVAsc1=210
New Line.l1 bus1=src bus2=b phases=3 r1=0.2 x1=0.5 r0=0.5 x0=1.4 c1=3 c0=1 length=3 units=km
New Load.ld bus1=b phases=3 conn=wye kv=12.47 kw=400 kvar=120 model=1
{extra}
Set VoltageBases=[12.47]
CalcVoltageBases
"""
TAN_PF95 = math.tan(math.acos(0.95))

#: element under test -> (DSS text, the (kW, kvar) it must deliver, computed by hand)
ELEMENTS = {
    "generator_3ph_pf": ("New Generator.g bus1=b phases=3 kv=12.47 kW=300 pf=0.9 model=1",
                         (300.0, 300 * math.tan(math.acos(0.9)))),
    "generator_1ph_z": ("New Generator.g bus1=b.2 phases=1 kv=7.2 kW=80 kvar=-20 model=2",
                        (80.0, -20.0)),
    "generator_delta_m4": ("New Generator.g bus1=b phases=3 conn=delta kv=12.47 kW=150 kvar=40 "
                           "model=4", (150.0, 40.0)),
    "generator_1ph_m5": ("New Generator.g bus1=b.3 phases=1 kv=7.2 kW=60 kvar=25 model=5",
                         (60.0, 25.0)),
    "generator_m7": ("New Generator.g bus1=b phases=3 kv=12.47 kW=200 kvar=50 kva=250 model=7",
                     (200.0, 50.0)),
    # P = Pmpp x irradiance; the kvar of pf 0.95 on it, then P cut to the 100 kVA rating
    # (OpenDSS's default: reactive power has priority)
    "pvsystem_3ph_kva_limited": ("New PVSystem.pv bus1=b phases=3 kv=12.47 kVA=100 Pmpp=120 "
                                 "irradiance=0.9 pf=0.95",
                                 (math.sqrt(100**2 - (108 * TAN_PF95) ** 2), 108 * TAN_PF95)),
    "pvsystem_1ph": ("New PVSystem.pv bus1=b.1 phases=1 kv=7.2 kVA=60 Pmpp=50 irradiance=0.8 "
                     "kvar=-10", (40.0, -10.0)),
    "pvsystem_3ph_z": ("New PVSystem.pv bus1=b phases=3 kv=12.47 kVA=100 Pmpp=90 irradiance=1 "
                       "model=2", (90.0, 0.0)),
    # discharging at kWrated with 10 kvar: P cut to the 50 kVA rating
    "storage_3ph_discharging": ("New Storage.st bus1=b phases=3 kv=12.47 kWrated=50 kva=50 "
                                "kWhrated=100 %stored=50 state=discharging kvar=10",
                                (math.sqrt(50**2 - 10**2), 10.0)),
    "storage_1ph_charging": ("New Storage.st bus1=b.2 phases=1 kv=7.2 kWrated=40 kWhrated=80 "
                             "%stored=50 state=charging", (-40.0, 0.0)),
    # idling draws %IdlingkW (default 1 %) of kWrated
    "storage_1ph_idling": ("New Storage.st bus1=b.3 phases=1 kv=7.2 kWrated=40 kWhrated=80 "
                           "%stored=50 state=idling", (-0.4, 0.0)),
}


def _write(tmp_path: Path, text: str, name: str = "master.dss") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(ELEMENTS))
def test_generation_matches_opendss_snapshot(case, tmp_path):
    text, (kw, kvar) = ELEMENTS[case]
    path = _write(tmp_path, LINE.format(extra=text))
    f = import_opendss(path)
    cls = case.split("_")[0]
    (k,) = [i for i, p in enumerate(f.load_params) if p.get("kind") == cls]
    # delivered power enters as negative consumption; the hand-computed snapshot output
    assert f.load_params[k]["kw"] == pytest.approx(kw, rel=1e-9, abs=1e-9)
    assert f.load_params[k]["kvar"] == pytest.approx(kvar, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(f.term_zip_kva[f.term_load == k].sum(), -complex(kw, kvar),
                               rtol=1e-9, atol=1e-9)
    r = PowerFlow(f, tol=1e-10).solve()
    assert bool(r.converged)
    for load_model in ("zip", "pq"):
        for master in (path, None):  # the user's file, and the feeder as exported
            c = compare(f, scenarios=2, seed=1, load_model=load_model, master=master)
            assert c.n_compared == 3, (load_model, master, c.unsolved)
            assert not c.exceeded(BUDGET_GATES), (load_model, master, c.exceeded(BUDGET_GATES))


def test_generation_is_told_apart_and_exported_as_generators(tmp_path):
    extra = "\n".join(ELEMENTS[c][0] for c in
                      ("generator_1ph_z", "pvsystem_1ph", "storage_1ph_charging"))
    f = import_opendss(_write(tmp_path, LINE.format(extra=extra)))
    assert [p.get("kind", "load") for p in f.load_params] == ["load", "generator", "pvsystem",
                                                              "storage"]
    script = export_opendss(f, load_model="zip")
    assert "New Generator.g bus1=b.2" in script and "model=2" in script
    assert "New Generator.pvsystem_pv" in script and "New Generator.storage_st" in script
    assert "New Load.g" not in script and "New Load.pv" not in script


def test_scenario_refuses_a_feeder_with_generation(tmp_path):
    path = _write(tmp_path, LINE.format(extra=ELEMENTS["generator_3ph_pf"][0]))
    with pytest.raises(ValueError, match=r"has generation \(generator\.g\) that a scenario would "
                                         "drop"):
        build_scenario(ScenarioConfig(name="gen", feeder=str(path), n_agents=3))


# ------------------------------------------------------------------------------- unsupported
UNSUPPORTED = {
    "generator_model_3": ("New Generator.g bus1=b phases=3 kv=12.47 kW=100 model=3",
                          "generator.g: generator model 3 is not supported by the solver"),
    "isource": ("New Isource.i1 bus1=b.1 amps=5 angle=0",
                "isource.i1: element class 'isource' is not supported by the solver"),
    "invcontrol": ("New PVSystem.pv bus1=b phases=3 kv=12.47 kVA=100 Pmpp=90\n"
                   "New XYcurve.vv npts=2 Yarray=[1 -1] Xarray=[0.9 1.1]\n"
                   "New InvControl.ic mode=voltvar vvc_curve1=vv",
                   "invcontrol.ic: element class 'invcontrol' is not supported by the solver"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_is_one_line_from_every_command(case, tmp_path, capsys):
    extra, named = UNSUPPORTED[case]
    path = _write(tmp_path, LINE.format(extra=extra))
    with pytest.raises(FeederImportError, match=named):
        import_opendss(path)
    for main, argv in ((validate_main, [str(path), "--scenarios", "1"]),
                       (bench_main, ["powerflow", "--feeder", str(path), "--batch", "2"])):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert str(path) in err and named in err, err


# ------------------------------------------------------------------------------- controls
CONTROLLED = LINE.replace("bus2=b ", "bus2=r ").format(extra="""\
New Transformer.reg phases=3 windings=2 buses=[r b] conns=[wye wye] kvs=[12.47 12.47]
~ kvas=[10000 10000] xhl=0.1 %loadloss=0.01
New RegControl.rc transformer=reg winding=2 vreg=126 band=2 ptratio=60
New Capacitor.c1 bus1=b phases=3 kvar=600 kv=12.47
New CapControl.cc capacitor=c1 element=line.l1 terminal=1 type=voltage ptratio=60
~ ONsetting=110 OFFsetting=121 delay=10 delayoff=10
New Capacitor.c2 bus1=b phases=3 kvar=300 kv=12.47
""")


def test_controls_settle_as_in_opendss_and_are_reported(tmp_path):
    """The regulator raises its tap to bring bus b to 126 V on a 120 V base; the capacitor's
    control sees 1.02 pu (122.4 V > 121 V off-setting) at the source end and opens it."""
    path = _write(tmp_path, CONTROLLED)
    f = import_opendss(path)
    ctl = f.meta["controls"]
    assert set(ctl) == {"regcontrol.rc", "capcontrol.cc"}
    rc = ctl["regcontrol.rc"]
    assert rc["transformer"] == "reg" and rc["winding"] == 2 and rc["tap_position"] > 0
    assert rc["tap"] == pytest.approx(1 + rc["tap_position"] * 0.00625)
    assert f.taps["reg"][1] == pytest.approx(rc["tap"])
    assert ctl["capcontrol.cc"] == {"capacitor": "c1", "states": [0]}
    # the Y the solver uses has the open capacitor (1e-12 S), the uncontrolled one its 600 kvar
    caps = {e.name: e for e in f.elements if e.cls == "capacitor"}
    assert np.abs(caps["capacitor.c1"].y_prim).max() <= 1e-12  # OpenDSS: 1e-12 S open
    assert np.abs(caps["capacitor.c2"].y_prim).max() > 1e-3
    assert "[0]" in caps["capacitor.c1"].params["states"].replace(" ", "")
    v = PowerFlow(f, tol=1e-10).solve().v_pu.numpy().reshape(-1)
    b = [f.node_index(f"b.{k}") for k in (1, 2, 3)]
    assert np.all(np.abs(v[b] - 126 / 120) < 1 / 120 + 1e-3)  # inside the regulator's band
    for master in (path, None):
        c = compare(f, scenarios=2, seed=0, load_model="pq", master=master)
        assert c.n_compared == 3 and not c.exceeded(BUDGET_GATES), c.exceeded(BUDGET_GATES)
    fixed = import_opendss(path, taps="file")  # frozen as the file leaves them
    assert fixed.meta["controls"]["capcontrol.cc"]["states"] == [1]
    assert fixed.meta["controls"]["regcontrol.rc"]["tap_position"] == 0


def test_opened_capacitor_agrees_with_opendss_switching_it_open(tmp_path):
    """Feeder.with_capacitors_open: the solver's circuit with the uncontrolled bank c2 open
    agrees with OpenDSS solving the original file with c2's states set to [0]."""
    path = _write(tmp_path, CONTROLLED)
    f = import_opendss(path)
    opened = f.with_capacitors_open(["c2"])
    cap = {e.name: e for e in opened.elements}["capacitor.c2"]
    assert not np.any(cap.y_prim) and cap.params["states"] == "[0]"
    v0, v1 = (PowerFlow(g, tol=1e-10).solve().v_pu.numpy().reshape(-1) for g in (f, opened))
    assert np.abs(v0 - v1).max() > 1e-3  # 300 kvar matter
    c = compare(opened, scenarios=2, seed=0, load_model="pq", master=path)
    assert c.n_compared == 3 and not c.exceeded(BUDGET_GATES), c.exceeded(BUDGET_GATES)
    with pytest.raises(KeyError, match="no capacitor 'c9'"):
        f.with_capacitors_open(["c9"])


def test_controls_settle_at_a_chosen_load_level(tmp_path):
    """control_load_mult: the regulator settles at a lighter load with a lower tap, and the
    feeder's loads stay as written."""
    path = _write(tmp_path, CONTROLLED)
    full, light = import_opendss(path), import_opendss(path, control_load_mult=0.2)
    full_tap, light_tap = (g.meta["controls"]["regcontrol.rc"]["tap_position"] for g in (full, light))
    assert light_tap < full_tap
    np.testing.assert_array_equal(light.term_zip_kva, full.term_zip_kva)
    with pytest.raises(FeederImportError, match="control_load_mult"):
        import_opendss(path, control_load_mult=0.0)


def test_unsettled_controls_name_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "CONTROL_ITERATION_LIMITS", ((20, 10), (40, 20)))
    path = _write(tmp_path, CONTROLLED.replace("kw=400 kvar=120 model=1",  # past the nose
                                            "kw=90000 kvar=40000 model=1 vminpu=0 vlowpu=0"))
    with pytest.raises(FeederImportError, match=r"master\.dss: OpenDSS did not settle the regulator "
                                                r"taps .*tried maxiterations=20 maxcontroliter=10: "
                                                r".*; maxiterations=40 maxcontroliter=20"):
        import_opendss(path)


# ------------------------------------------------------------------------------- master files
ACTIONS = """\
Solve
Show Voltages LN Nodes
Export Voltages
Set ShowExport=yes
Export Currents
Plot Profile ph=all
Plot Circuit Power Max=5000 dots=n
~ labels=n C1=Blue
Visualize currents line.l1
Summary
Help
"""


def test_master_that_solves_exports_and_plots_imports_without_running_them(tmp_path, capfd):
    """The commands stay in the user's file (untouched, nothing written next to it, nothing
    printed) and the circuit is the same as without them."""
    model = tmp_path / "model"
    model.mkdir()
    plain = import_opendss(_write(model, LINE.format(extra=""), "plain.dss"))
    text = LINE.format(extra=ACTIONS) + ACTIONS
    path = _write(model, text, "run.dss")
    before = sorted(p.name for p in model.iterdir())
    f = import_opendss(path)
    assert sorted(p.name for p in model.iterdir()) == before and path.read_text() == text
    assert capfd.readouterr().out == ""  # no "show", "summary" or "help" output
    assert f.nodes == plain.nodes and f.load_names == plain.load_names
    for a, b in zip(f.elements, plain.elements, strict=True):
        np.testing.assert_array_equal(a.y_prim, b.y_prim)
    np.testing.assert_array_equal(f.term_zip_kva, plain.term_zip_kva)
    staged, n = disable_actions(text)
    assert n == 2 * 9 and "~ labels=n" not in staged.replace("! gridedge: not run at import: ~", "")


def test_run_script_that_compiles_the_master(tmp_path):
    """As EPRI's Run_8500Node.dss: a run script compiles the master (under another letter case),
    adds a meter, solves, shows, exports and plots."""
    (tmp_path / "Master.dss").write_text(LINE.format(extra=""))
    run = _write(tmp_path, "Compile (master.dss)\nNew Energymeter.m1 Line.l1 1\n" + ACTIONS,
                 "Run.dss")
    f = import_opendss(run)
    assert f.name == "cls" and "energymeter.m1" in f.meta["ignored"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Master.dss", "Run.dss"]


# ------------------------------------------------------------------------------- IEEE 8500
IEEE8500 = Path("/work/shared/data/feeders/ieee8500")


@pytest.mark.skipif(not (IEEE8500 / "Master.dss").is_file(), reason="8500-node model absent")
@pytest.mark.parametrize("master", ["Master.dss", "Run_8500Node.dss"])
def test_ieee8500_controls_settle(master):
    t0 = time.perf_counter()
    f = load_feeder(IEEE8500 / master)
    assert time.perf_counter() - t0 < 20
    ctl = f.meta["controls"]
    regs = {k: v for k, v in ctl.items() if k.startswith("regcontrol.")}
    caps = {k: v for k, v in ctl.items() if k.startswith("capcontrol.")}
    assert len(regs) == 12 and len(caps) == 9
    assert all(0.9 <= v["tap"] <= 1.1 for v in regs.values())
    assert all(f.taps[v["transformer"]][1] == pytest.approx(v["tap"]) for v in regs.values())
    assert f.n_nodes == 8531 and f.n_loads == 1177
