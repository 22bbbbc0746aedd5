"""End-to-end runs of the command-line tools on the small case (slow)."""

import json

import pytest

from gridedge_env.cli import bench_main, validate_main

from .conftest import TINY_SCRIPT as BASE


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


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: ")
    return lines[0]


def test_validate_cli_unknown_feeder(capsys):
    with pytest.raises(SystemExit) as exc:
        validate_main(["no-such-feeder"])
    assert exc.value.code == 2
    assert "no-such-feeder: neither a bundled feeder" in _one_error_line(capsys, "gridedge-validate")


#: bad model -> what the one line must name (besides the file)
BAD_MODELS = {
    "empty": (None, "the script defines no circuit"),
    "unknown_property": ("New Line.l2 bus1=b bus2=d phases=3 bogus=1", 'Unknown parameter "bogus"'),
    "unknown_class": ("New Lline.l2 bus1=b bus2=d", 'Object Type "Lline" not found'),
    "missing_redirect": ("Redirect nothere.dss", "nothere.dss"),
    "generator_model3": ("New Generator.g1 bus1=b phases=3 kv=12.47 kW=10 model=3",
                         "generator.g1: generator model 3"),
    "isource": ("New Isource.i1 bus1=b.1 amps=5", "isource.i1"),
    "no_voltage_bases": ("", "no voltage base for nodes"),
    "island": ("New Line.l9 bus1=x bus2=y phases=3 r1=0.1 x1=0.3 length=1 units=km",
               "no conductive path to the source vsource.source: x, y"),
}


def _bad_model(tmp_path, case: str):
    extra, _ = BAD_MODELS[case]
    text = "" if extra is None else BASE.format(extra=extra)
    if case == "no_voltage_bases":
        text = text.replace("Set VoltageBases=[12.47]\nCalcVoltageBases\n", "")
    path = tmp_path / f"{case}.dss"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_validate_cli_bad_model_is_one_line_and_exit_2(tmp_path, capsys, case):
    path = _bad_model(tmp_path, case)
    with pytest.raises(SystemExit) as exc:
        validate_main([str(path), "--scenarios", "1"])
    assert exc.value.code == 2
    line = _one_error_line(capsys, "gridedge-validate")
    assert str(path) in line and BAD_MODELS[case][1] in line, line


@pytest.mark.parametrize("case", ["island", "generator_model3"])
def test_bench_cli_bad_feeder_is_one_line_and_exit_2(tmp_path, capsys, case):
    path = _bad_model(tmp_path, case)
    with pytest.raises(SystemExit) as exc:
        bench_main(["powerflow", "--feeder", str(path), "--batch", "4"])
    assert exc.value.code == 2
    line = _one_error_line(capsys, "gridedge-bench")
    assert str(path) in line and BAD_MODELS[case][1] in line, line
    for spec, named in [("nosuch", "'nosuch' is neither a bundled feeder"),
                        (str(tmp_path / "x.json.gz"), "x.json.gz: feeder file not found")]:
        with pytest.raises(SystemExit):
            bench_main(["powerflow", "--feeder", spec])
        assert named in _one_error_line(capsys, "gridedge-bench")


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
