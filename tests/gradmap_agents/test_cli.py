"""End to end on the small case: train, evaluate, export, resume exactly (also after kill -9),
and the failure modes a user meets (slow)."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import gradmap_agents.gradmap as gm
import gridedge_env as ge
from gradmap_agents import checkpoint, cli
from gradmap_agents import train as train_mod
from gradmap_agents.export import OnnxPolicy

FAST = ["--set", "iterations=6", "--set", "eval_every=3", "--set", "checkpoint_every=2",
        "--set", "algo.days_per_gradient=4", "--set", "policy.hidden=[8]", "--logger", "none"]
pytestmark = pytest.mark.slow


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    assert cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST,
                           *extra]) == 0
    return out


def _test_metrics(run):
    return {k: v for k, v in json.loads((run / "eval.json").read_text()).items()
            if k.startswith(("test/", "no_control/"))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs"), "a")


def test_train_writes_checkpoint_metrics_plots(run):
    ev = json.loads((run / "eval.json").read_text())
    for k in ("test/cost", "test/violation_magnitude", "test/violation_frequency",
              "test/line_overload_frequency", "test/v_min_pu", "test/v_max_pu",
              "test/voltage_violation_magnitude", "test/line_violation_magnitude",
              "no_control/cost", "no_control/violation_magnitude", "train/wall_seconds",
              "train/env_gradients", "train/time_to_50"):
        assert k in ev, k
    assert ev["train/env_gradients"] == 6 and ev["n_test_days"] == 55
    for f in ("checkpoint.safetensors", "config.yaml", "train.csv", "validation.csv",
              "agents_power.png", "voltage_envelope.png", "learning_curves.png"):
        assert (run / f).is_file(), f
    rows = (run / "train.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("iteration,")
    assert len((run / "validation.csv").read_text().splitlines()) == 3  # header, 3, 6


def test_export_runs_in_onnxruntime_like_the_trainer(run, tmp_path):
    """Every agent's ONNX file on the PettingZoo env's test days: the trainer's actions to 1e-5
    and the same test metrics as eval.json."""
    exp = tmp_path / "export"
    assert cli.export_main(["--run", str(run), "--out", str(exp)]) == 0
    manifest = json.loads((exp / "manifest.json").read_text())
    cfg, env, s = cli._load_run(run)
    assert len(manifest["agents"]) == env.n_agents == 50
    assert manifest["agents"]["battery_0"]["features"][-1] == "device_state"
    onnx_policy = OnnxPolicy(exp)
    pz = ge.make("ieee13-50-v0")
    names = pz.possible_agents
    totals = {"cost": [], "violation_magnitude": [], "violation_frequency": []}
    node = env.node_mask.bool()
    for day in env.scenario.split.test.tolist():
        obs, _ = pz.reset(options={"day": day})
        cost, mag, outside = 0.0, 0.0, 0
        while pz.agents:
            x = torch.as_tensor(np.stack([obs[a] for a in names]))[None]  # (1, N, F) float32
            a_onnx = onnx_policy(x.double())
            with torch.no_grad():
                a_ref = s.policy(x.double())
            assert float((a_onnx - a_ref).abs().max()) < 1e-5
            obs, _, _, _, infos = pz.step({a: a_onnx[0, i:i + 1].numpy() for i, a in enumerate(names)})
            c = pz._last.constraints
            cost += sum(v for n in names for k, v in infos[n].items() if k.startswith("cost_"))
            mag += float(c.v_over_pu.sum() + c.v_under_pu.sum() + c.line_over.sum())
            outside += int(((c.v_over_pu > 0) | (c.v_under_pu > 0))[0, node].sum())
        totals["cost"].append(cost)
        totals["violation_magnitude"].append(mag)
        totals["violation_frequency"].append(outside / (int(node.sum()) * env.n_steps))
    ev = json.loads((run / "eval.json").read_text())
    for k, v in totals.items():
        assert np.mean(v) == pytest.approx(ev[f"test/{k}"], rel=1e-5, abs=1e-6), k


def test_resume_continues_exactly(run, tmp_path):
    """A resumed run is the run trained straight through, also when the resumed part recomputes
    the steps in the backward (``algo.recompute``: the same gradients, so the same run)."""
    part = _train(tmp_path, "b", "--set", "iterations=4")
    assert cli.train_main(["--out", str(part), "--resume", "--set", "iterations=6",
                           "--set", "algo.recompute=true", "--logger", "none"]) == 0
    assert _test_metrics(part) == _test_metrics(run)
    assert len((part / "train.csv").read_text().splitlines()) == 7  # no duplicated rows


KILL_AT_5 = """
import os, signal
import gradmap_agents.loggers as loggers
log = loggers.RunLogger.log
def log_then_die(self, m):
    log(self, m)
    if m["iteration"] == 5:  # after iteration 5's CSV row, before its checkpoint
        os.kill(os.getpid(), signal.SIGKILL)
loggers.RunLogger.log = log_then_die
from gradmap_agents.cli import train
train()
"""


def test_resume_after_kill_9(run, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_5, "--config", "ieee13-50",
                           "--out", str(out), *FAST], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.read(out / "checkpoint.safetensors")[1]["iteration"] == 4
    assert len((out / "train.csv").read_text().splitlines()) == 6  # rows 1-5: one past it
    assert cli.train_main(["--out", str(out), "--resume", "--logger", "none"]) == 0
    assert _test_metrics(out) == _test_metrics(run)
    rows = (out / "train.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 7))


def test_refuses_to_overwrite_and_names_bad_checkpoints(run, tmp_path):
    before = (run / "checkpoint.safetensors").read_bytes()
    with pytest.raises(SystemExit, match="already holds a run"):
        cli.train_main(["--config", "ieee13-50", "--out", str(run), *FAST])
    with pytest.raises(SystemExit, match=r"another configuration \(differs in seed"):
        cli.train_main(["--out", str(run), "--resume", "--set", "seed=5", "--logger", "none"])
    assert (run / "checkpoint.safetensors").read_bytes() == before
    with pytest.raises(SystemExit, match="does not exist"):
        cli.train_main(["--out", str(tmp_path / "nothing"), "--resume"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(SystemExit, match="not a readable"):
        cli.eval_main(["--run", str(bad)])


def test_diverging_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = gm.lagrangian, {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(gm, "lagrangian", poisoned)
    out = tmp_path / "nan"
    rc = cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST])
    assert rc == cli.EXIT_DIVERGED
    assert checkpoint.read(out / "checkpoint.safetensors")[1]["iteration"] == 4
    assert "the checkpoint of iteration 4 in" in capsys.readouterr().err


def test_nonfinite_duals_keep_the_checkpoint_before_them(tmp_path, monkeypatch, capsys):
    real, calls = train_mod.dual_ascent, {"n": 0}

    def poisoned(*a, **k):
        calls["n"] += 1
        d = real(*a, **k)
        return d._replace(v_over_pu=d.v_over_pu * float("nan")) if calls["n"] == 3 else d

    monkeypatch.setattr(train_mod, "dual_ascent", poisoned)
    out = tmp_path / "nan_duals"
    assert cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST]) == cli.EXIT_DIVERGED
    assert checkpoint.read(out / "checkpoint.safetensors")[1]["iteration"] == 2
    err = capsys.readouterr().err
    assert "duals v_over_pu became non-finite at iteration 3" in err
    assert "the checkpoint of iteration 2 in" in err


def test_nonconverging_run_stops_with_one_line(tmp_path, capsys):
    out = tmp_path / "heavy"
    rc = cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST,
                         "--set", "env_overrides.households_per_agent=200"])
    assert rc == cli.EXIT_NONCONVERGED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradmap-train: stopped: ")
    assert "at iteration 1 did not converge" in err[0] and "no checkpoint was written" in err[0]
    assert not (out / "checkpoint.safetensors").exists()
    row = (out / "train.csv").read_text().splitlines()
    assert "train/nonconverged" in row[0].split(",") and len(row) == 2


@pytest.mark.parametrize("sets", [["env_overrides.limits={v_min_pu: 1.2, v_max_pu: 1.0}"],
                                  ["env_overrides.v_min_pu=1.2", "env_overrides.v_max_pu=1.0"],
                                  ["env_overrides.no_such_key=1"]])
def test_bad_env_overrides_leave_no_directory(tmp_path, sets):
    out = tmp_path / "bad_env"
    with pytest.raises(SystemExit) as err:
        cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST,
                        *[a for x in sets for a in ("--set", x)]])
    msg = str(err.value.code)
    assert msg.startswith("gradmap-train: ") and "\n" not in msg
    assert not out.exists()


def test_resume_refuses_no_more_iterations_and_names_changed_keys(run):
    before = {f: (run / f).read_bytes() for f in ("config.yaml", "checkpoint.safetensors")}
    for n in ("3", "6"):
        with pytest.raises(SystemExit, match="already has 6 iterations"):
            cli.train_main(["--out", str(run), "--resume", "--set", f"iterations={n}",
                            "--logger", "none"])
    with pytest.raises(SystemExit, match=r"differs in algo\.lr \(saved 0\.003, now 0\.01\)"):
        cli.train_main(["--out", str(run), "--resume", "--set", "algo.lr=0.01",
                        "--set", "iterations=8", "--logger", "none"])
    with pytest.raises(SystemExit, match=r"differs in env_overrides\.households_per_agent"):
        cli.train_main(["--config", "ieee13-50", "--out", str(run), "--resume", *FAST,
                        "--set", "iterations=8",
                        "--set", "env_overrides.households_per_agent=3"])
    assert {f: (run / f).read_bytes() for f in before} == before


def test_report_shows_nonconverged_steps(run, capsys):
    assert cli.eval_main(["--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "nonconverged day-steps" in out and "0.0%)" in out
    ev = json.loads((run / "eval.json").read_text())
    assert ev["test/nonconverged"] == 0 and ev["no_control/nonconverged_share"] == 0.0


def test_wandb_offline_never_fails_and_never_stores_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 8 + "secret-never-written-1234")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wb"
    assert cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST[:-2],
                           "--set", "iterations=2", "--logger", "wandb", "--no-eval"]) == 0
    assert (out / "wandb").is_dir()
    for path in out.rglob("*"):
        if path.is_file():
            assert b"secret-never-written" not in path.read_bytes(), path
    import wandb  # why: optional dependency, only this test needs it

    def broken(*a, **k):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wandb, "init", broken)
    out2 = tmp_path / "wb2"
    assert cli.train_main(["--config", "ieee13-50", "--out", str(out2), *FAST[:-2],
                           "--set", "iterations=2", "--logger", "wandb", "--no-eval"]) == 0
    assert (out2 / "train.csv").is_file()


@pytest.mark.opendss
def test_eval_with_opendss_agrees_with_our_solver(run):
    assert cli.eval_main(["--run", str(run), "--opendss"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["opendss/max_v_diff_pu"] < 1e-6  # OpenDSS at 1e-8 tolerance, ours at 1e-8
    assert ev["opendss/max_action_diff"] == 0.0  # the policies observe no voltage
    assert ev["opendss/cost"] == pytest.approx(ev["test/cost"], rel=1e-9)
    assert ev["opendss/violation_magnitude"] == pytest.approx(ev["test/violation_magnitude"],
                                                              rel=1e-4, abs=1e-6)


def test_max_minutes_stops_with_a_checkpoint_to_continue(tmp_path, capsys):
    out = tmp_path / "short"
    assert cli.train_main(["--config", "ieee13-50", "--out", str(out), *FAST,
                           "--max-minutes", "0"]) == 0
    assert "continue with: gradmap-train --resume" in capsys.readouterr().out
    assert checkpoint.read(out / "checkpoint.safetensors")[1]["iteration"] == 1
    assert not (out / "eval.json").exists()


def test_eval_day_plots_the_kth_test_day_without_evaluating(run, tmp_path, capsys):
    before = (run / "eval.json").read_bytes()
    assert cli.eval_main([str(run), "--day", "18"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "day_18.png")
    assert (run / "day_18.png").stat().st_size > 10_000
    assert (run / "eval.json").read_bytes() == before  # a plot, not an evaluation
    assert cli.eval_main(["--run", str(run), "--day", "55", "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "day_55.png").is_file()
    for k in ("0", "56"):
        with pytest.raises(SystemExit, match=rf"--day {k}: .* has 55 test days, numbered 1 to 55"):
            cli.eval_main([str(run), "--day", k])
    for argv in ([], [str(run), "--run", str(run)], [str(run), "--out", str(tmp_path)],
                 [str(run), "--day", "1", "--opendss"]):
        with pytest.raises(SystemExit) as exc:
            cli.eval_main(argv)
        assert exc.value.code == 2, argv  # argparse's usage error, one line on stderr
