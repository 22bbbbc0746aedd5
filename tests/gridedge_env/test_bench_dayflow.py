"""``gridedge-bench dayflow`` on the small case: it reports what it claims (both engines on the
same day-steps, agreeing to 1e-6 p.u.), and bad input is one line, not a traceback."""

import json

import pytest
import torch

from gridedge_env.benchmarks.dayflow import TABLE_COLUMNS, bench_dayflow, day_injections
from gridedge_env.cli import bench_main
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout

TIMINGS = ("ours_fwd_wall_s", "ours_fwd_cpu_s", "ours_fwd_bwd_wall_s", "ours_fwd_bwd_cpu_s",
           "opendss_wall_s", "opendss_cpu_s")


@pytest.mark.opendss
def test_both_engines_solve_the_same_day_steps_and_agree():
    out = bench_dayflow("ieee13-50-v0", days=2, opendss_days=1, repeats=1)
    assert (out["day_steps"], out["opendss_day_steps"]) == (96, 48)
    assert out["ours_converged"] == 96 and out["opendss_converged"] == 48
    assert out["compared_day_steps"] == 48
    assert out["max_v_diff_pu"] < 1e-6 and out["max_line_loading_diff"] < 1e-6
    assert all(out[k] > 0 for k in TIMINGS)
    # the ratios are per day-step: OpenDSS timed 48 day-steps, ours 96
    per_step = (out["opendss_wall_s"] / 48) / (out["ours_fwd_wall_s"] / 96)
    assert out["ratio_fwd"] == pytest.approx(per_step, rel=0.05, abs=0.02)
    assert 1 <= out["ours_mean_iterations"] <= out["ours_max_iterations"]
    assert out["ours_newton_fallback_at_least"] == 0  # IEEE 13 at household loads: fixed point
    assert 0.05 < out["peak_rss_gb"] < 24 and "cores" in out["machine"]


def test_opendss_days_zero_skips_the_peer_and_says_so():
    out = bench_dayflow("ieee13-50-v0", days=1, opendss_days=0, repeats=1)
    assert out["opendss_day_steps"] == 0
    assert out["opendss_wall_s"] is None and out["ratio_fwd"] is None
    assert out["max_v_diff_pu"] is None and out["ours_fwd_bwd_wall_s"] > 0


def test_injections_are_the_no_control_rollouts():
    env = env_params("ieee13-50-v0")
    s = day_injections(env, 2)
    with torch.no_grad():
        roll = rollout(env, env.scenario.split.train[:2], no_control(env), path="whole_day")
    assert s.shape == (96, env.n_agents)
    assert torch.equal(s.real.reshape(2, 48, -1), roll.p_agent_kw)
    assert torch.equal(s.imag.reshape(2, 48, -1), roll.q_agent_kvar)
    assert bool((s.real != 0).any())


@pytest.mark.opendss
def test_cli_prints_json_and_appends_a_table_row(tmp_path, capsys):
    table = tmp_path / "dayflow.md"
    assert bench_main(["dayflow", "--scenario", "ieee13-50-v0", "--days", "1", "--repeats", "1",
                       "--json", "--table", str(table)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["env"] == "ieee13-50-v0" and out["max_v_diff_pu"] < 1e-6
    header, _, row = table.read_text().splitlines()
    assert header == "| " + " | ".join(TABLE_COLUMNS) + " |"
    assert row.startswith("| ieee13-50-v0 | 48 | cpu | fp64 |")


@pytest.mark.parametrize("args, named", [
    (["--scenario", "nosuch-v0"], "unknown environment 'nosuch-v0'"),
    (["--scenario", "ieee13-50-v0", "--days", "1", "--opendss-days", "2"], "opendss_days=2"),
    (["--scenario", "ieee13-50-v0", "--days", "100000"], "days=100000: ieee13-50 has 256"),
])
def test_bad_input_is_one_error_line(args, named, capsys):
    assert bench_main(["dayflow", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gridedge-bench dayflow: ") and named in err[0]
