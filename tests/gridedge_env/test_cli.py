"""End-to-end runs of the command-line tools on the small case (slow)."""

import json

import pytest

from gridedge_env.cli import bench_main, validate_main


@pytest.mark.slow
def test_validate_cli_json(capsys):
    assert validate_main(["ieee13", "--scenarios", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["passed"] is True and out["n_scenarios"] == 4
    assert out["max_v_err_pu"] < 1e-6 and out["max_angle_err_deg"] < 1e-4
    assert out["max_i_rel_err"] < 1e-4


@pytest.mark.slow
def test_validate_cli_on_dss_file(feeder_models, capsys):
    path = feeder_models / "ieee123" / "IEEE123Master.dss"
    assert validate_main([str(path), "--scenarios", "2", "--load-model", "pq", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["passed"] is True


def test_validate_cli_unknown_feeder():
    with pytest.raises(SystemExit, match="neither a bundled feeder"):
        validate_main(["no-such-feeder"])


@pytest.mark.slow
def test_bench_cli_json(tmp_path, capsys):
    table = tmp_path / "table.md"
    assert bench_main(["powerflow", "--feeder", "ieee13", "--batch", "64", "--repeats", "2",
                       "--opendss-scenarios", "64", "--json", "--table", str(table)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_solves_per_s", "ours_fwd_bwd_solves_per_s", "opendss_solves_per_s",
                "ratio_vs_opendss"):
        assert out[key] > 0
    assert out["ours_max_v_err_pu"] < 1e-6 and out["opendss_max_v_err_pu"] < 1e-6
    assert "| ieee13 | 64 |" in table.read_text()


def test_console_scripts_declared():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["gridedge-validate"] == "gridedge_env.cli:validate"
    assert scripts["gridedge-bench"] == "gridedge_env.cli:bench"


@pytest.mark.slow
def test_bench_env_cli_json(capsys):
    assert bench_main(["env", "--scenario", "ieee13-50-v0", "--num-envs", "8", "--steps", "4",
                       "--opendss-envs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ours_agent_steps_per_s", "opendss_agent_steps_per_s", "ratio_vs_opendss"):
        assert out[key] > 0
    assert out["max_v_diff_pu_last_step"] < 1e-6  # both engines stepped the same days
