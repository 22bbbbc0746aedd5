"""``gradmap-scaling``: comparisons at several agent counts become one sorted table and a
figure; comparisons it cannot place are named."""

import json

import pytest

from baselines.cli import scaling_main
from baselines.scaling import scaling_table


def _comparison(d, n, ttt, budget=5.0):
    d.mkdir(parents=True)
    agg = {"time_to_50": ttt, "auc_wall_penalised": 0.9 - n / 1e4, "auc_wall_penalised_ci95": 0.01,
           "train_seconds": 300.0, "cost": 9000.0 + n,
           "voltage_violation_magnitude": 0.01, "line_violation_magnitude": 0.0,
           "violation_frequency": 1e-4, "opendss_cost": None,
           "opendss_violation_magnitude": None, "learned": True}
    fixed = {**agg, "time_to_50": None, "learned": False, "voltage_violation_magnitude": 0.0}
    (d / "comparison.json").write_text(json.dumps({
        "env": "ieee123-1000", "n_agents": n, "budget_minutes": budget,
        "methods": {"gradmap": agg, "gradma": {**agg, "time_to_50": None},
                    "oracle": fixed}}))
    return d


def test_points_are_sorted_by_agents_and_plotted(tmp_path, capsys):
    dirs = [_comparison(tmp_path / f"c{n}", n, 10.0 * n) for n in (300, 100, 1000)]
    table = scaling_table(dirs)
    assert [p["n_agents"] for p in table["points"]] == [100, 300, 1000]
    assert table["points"][0]["methods"]["gradmap"]["time_to_50"] == 1000.0
    png = tmp_path / "scaling.png"
    assert scaling_main([*map(str, dirs), "--out", str(png), "--json"]) == 0
    assert png.stat().st_size > 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == table
    assert "gradma      time to the 50 % level       -  penalised AUC 0.890" in out
    assert table["points"][2]["methods"]["gradmap"]["auc_wall_penalised"] == pytest.approx(0.8)


def test_comparisons_it_cannot_place_are_named(tmp_path):
    a = _comparison(tmp_path / "a", 100, 1.0)
    b = _comparison(tmp_path / "b", 100, 2.0)
    with pytest.raises(ValueError, match="same agent count"):
        scaling_table([a, b])
    with pytest.raises(ValueError, match="not found"):
        scaling_table([tmp_path / "missing"])
    old = tmp_path / "old"
    old.mkdir()
    (old / "comparison.json").write_text(json.dumps({"methods": {}}))
    with pytest.raises(SystemExit, match="rerun the same gradmap-compare command"):
        scaling_main([str(old), "--out", str(tmp_path / "x.png")])
