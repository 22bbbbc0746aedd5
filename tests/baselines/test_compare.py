"""``gradmap-compare`` end to end on the small case: every method, the table and plots, and a
restart that keeps finished runs (slow)."""

import csv
import json

import pytest

from baselines.cli import compare_main
from baselines.compare import Plan

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
                 "learning_curves_wall.png", "learning_curves_gradients.png"):
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
    assert nc["violation_magnitude"] > 1 and nc["time_to_target_s"] is None
    assert rows[6]["optimality_gap"] != ""  # the oracle reports its gap
    md = (out / "comparison.md").read_text()
    assert "| oracle | 1 |" in md and "Target:" in md
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
