"""``gradmap-compare`` end to end on the small case: every method, the table and plots, and a
restart that keeps finished runs (slow)."""

import csv
import json

import pytest
import yaml

from baselines.cli import compare_main
from baselines.compare import Plan
from gradmap_agents import protocol
from gradmap_agents.config import load_config
from gradmap_agents.runs import build_env

pytestmark = pytest.mark.slow

ARGS = ["--config", "ieee13-50", "--seeds", "1", "--logger", "none",
        "--set", "iterations=4", "--set", "eval_every=2", "--set", "checkpoint_every=2",
        "--oracle-iterations", "5", "--methods", "gradmap,gradma,ippo,mappo,rule,no-control,oracle",
        "--set-method", "ippo:iterations=2", "--set-method", "mappo:iterations=2",
        "--set-method", "ippo:days_per_rollout=4", "--set-method", "mappo:eval_every=1",
        "--opendss"]


def test_compare_writes_table_and_plots_and_resumes_without_redoing_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare_main([*ARGS, "--out", str(out), "--json"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("comparison.csv", "comparison.md", "comparison.json", "cost_vs_violation.png",
                 "learning_curves_wall.png", "learning_curves_gradients.png",
                 "captured_curves.png", "test_days_box.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["method"] for r in rows] == ["gradmap", "gradma", "ippo", "mappo", "rule",
                                           "no-control", "oracle"]
    assert all(not r["failed"] for r in rows)
    assert float(rows[0]["env_gradients"]) == 4 and float(rows[2]["env_gradients"]) == 0
    assert (out / "runs" / "ippo-s0" / "actor.safetensors").is_file()
    assert (out / "learning_curves_env_steps.png").is_file()
    ppo = json.loads((out / "runs" / "mappo-s0" / "result.json").read_text())
    assert ppo["iterations"] == 2 and len(ppo["history"]) == 2  # eval_every=1 reached MAPPO only
    nc = table["methods"]["no-control"]
    assert nc["violation_magnitude"] > 1 and not nc["learned"] and "time_to_50" not in nc
    # every learning run scored by the protocol; budget counters of every run
    for r in rows[:4]:
        assert 0 <= float(r["auc_wall"]) <= 1 and r["day_steps"] != "", r["method"]
        assert 0 <= float(r["auc_wall_penalised"]) <= 1, r["method"]  # the score sweeps select on
        assert float(r["final_penalised"]) <= 1, r["method"]
        assert float(r["cpu_seconds"]) > 0, r["method"]
    assert float(rows[0]["day_steps"]) == 4 * 32 * 48  # 4 gradients of 32 days x 48 steps
    assert rows[6]["optimality_gap"] != ""  # the oracle reports its gap
    md = (out / "comparison.md").read_text()
    assert "| oracle | 1 |" in md and "certified copper-plate bound" in md
    assert "| AUC penalised |" in md
    # every policy re-simulated with OpenDSS (the oracle's action sequences are not policies):
    # the same cost (no policy observes voltages here), voltages within the solvers' agreement
    for r in rows:
        if r["method"] == "oracle":
            assert r["opendss_cost"] == ""
            continue
        assert float(r["opendss_cost"]) == pytest.approx(float(r["cost"]), rel=1e-12), r["method"]
        assert float(r["opendss_max_v_diff_pu"]) < 1e-7
        assert float(r["opendss_violation_magnitude"]) == pytest.approx(
            float(r["violation_magnitude"]), abs=1e-4)
    assert table["n_agents"] == 50 and table["budget_minutes"] is None  # for gradmap-scaling
    assert "Re-simulated with OpenDSS" in md and "| mappo |" in md.split("Re-simulated")[1]

    # a restart after losing two runs' results and the table: only those runs are redone (from
    # their checkpoints, which are at the end: no new training), the others are kept untouched
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    gone = [out / "runs" / f"{m}-s0" / "result.json" for m in ("gradmap", "ippo")]
    before = [json.loads(g.read_text()) for g in gone]
    for g in gone:
        g.unlink()
    (out / "comparison.csv").unlink()
    assert compare_main([*ARGS, "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert log.count("done before, kept") == 5
    assert "gradmap seed 0: running" in log and "ippo seed 0: running" in log
    for p, t in kept.items():
        if p not in gone:
            assert p.stat().st_mtime_ns == t, p
    for g, b in zip(gone, before, strict=True):
        after = json.loads(g.read_text())
        assert after["test"] == b["test"] and after["iterations"] == b["iterations"]
        assert after["train_seconds"] == b["train_seconds"]  # resumed, not retrained
    assert list(csv.DictReader(open(out / "comparison.csv"))) == rows


def test_bad_plans_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['mappo2'\]"):
        Plan(None, (), ("gradmap", "mappo2"), 1, None, tmp_path)
    with pytest.raises(ValueError, match="seeds"):
        Plan(None, (), ("rule",), 0, None, tmp_path)
    with pytest.raises(ValueError, match="budget"):
        Plan(None, (), ("rule",), 1, 0.0, tmp_path)
    with pytest.raises(SystemExit, match="unknown method"):
        compare_main(["--methods", "ippo3", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="ray_cpus"):
        Plan(None, (), ("rule",), 1, None, tmp_path, ray_cpus=0)
    with pytest.raises(ValueError, match="METHOD:KEY=VALUE"):
        Plan(None, (), ("ippo",), 1, None, tmp_path, method_sets=("rule:x=1",))
    # a budget binds every method alike: no iteration cap beside it
    with pytest.raises(ValueError, match="iteration cap"):
        Plan(None, (), ("ippo",), 1, 1.0, tmp_path, method_sets=("ippo:iterations=5",))
    with pytest.raises(ValueError, match="iteration cap"):
        Plan(None, ("iterations=5",), ("gradmap",), 1, 1.0, tmp_path)
    assert Plan(None, (), ("ippo",), 1, 1.0, tmp_path).sets_of("ippo") == [f"iterations={10**9}"]


def test_levels_come_from_the_scenario_not_from_the_runs(tmp_path):
    """The issue's measurement: two comparisons differing only in their method sets wrote
    different targets. The protocol's levels are the same whatever is compared."""
    common = ["--config", "ieee13-50", "--seeds", "1", "--logger", "none",
              "--set", "iterations=2", "--set", "eval_every=1", "--json"]
    tables = []
    for i, methods in enumerate(("gradmap,no-control", "gradma,rule,no-control")):
        assert compare_main([*common, "--methods", methods, "--out", str(tmp_path / f"c{i}")]) == 0
        tables.append(json.loads((tmp_path / f"c{i}" / "comparison.json").read_text()))
    assert tables[0]["levels"] == tables[1]["levels"]
    lv = tables[0]["levels"]
    assert lv["bound_cost"] < lv["no_control_cost"]
    # and they are what the scenario alone gives, before any run
    assert protocol.levels(build_env(load_config("ieee13-50"))).as_dict() == lv


def test_fixed_penalty_variant_gives_every_method_the_scenario_multipliers(tmp_path):
    out = tmp_path / "pen"
    assert compare_main(["--config", "ieee13-50", "--seeds", "1", "--logger", "none",
                         "--set", "iterations=2", "--set", "eval_every=1", "--methods",
                         "gradmap,ippo", "--set-method", "ippo:iterations=1",
                         "--fixed-penalty", "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    assert table["fixed_penalty"]
    mu_v = 10 * (table["levels"]["no_control_cost"] - table["levels"]["bound_cost"]) \
        / table["levels"]["no_control_voltage"]
    cfg = yaml.safe_load((out / "runs" / "gradmap-s0" / "config.yaml").read_text())
    assert cfg["dual"]["fixed"] and cfg["dual"]["init_voltage_gbp_per_pu"] == pytest.approx(mu_v)
    assert cfg["dual"]["margin_pu"] == 0.0
    for r in table["runs"]:
        assert r["test_objective"] >= r["cost"]
