"""``gradmap-compare --ray``: every (method, seed) as a task on a local two-CPU Ray instance
gives the sequential comparison's table (slow)."""

import csv
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray")

from baselines.cli import compare_main  # noqa: E402

pytestmark = pytest.mark.slow

ARGS = ["--config", "configs/ieee13-50.yaml", "--seeds", "1", "--logger", "none",
        "--methods", "gradmap,ippo,rule,no-control", "--set", "iterations=3",
        "--set", "eval_every=1", "--set-method", "ippo:iterations=2",
        "--set-method", "ippo:days_per_rollout=4", "--set-method", "ippo:eval_every=1"]
TIMED = ("train_seconds", "time_to_target_s")  # wall-clock columns differ run to run


@pytest.fixture(scope="module")
def ray_address():
    """A fresh local Ray instance with two CPUs, as ``ray start`` makes a cluster's head."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 108 chars
    ray = str(Path(sys.executable).with_name("ray"))
    started = subprocess.run([ray, "start", "--head", "--num-cpus=2", f"--port={port}",
                              "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                              "--disable-usage-stats", "--object-store-memory=200000000",
                              f"--temp-dir={temp}"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, f"ray start failed:\n{started.stdout}\n{started.stderr}"
    yield f"127.0.0.1:{port}"
    subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(temp, ignore_errors=True)


def _rows(out: Path) -> list[dict]:
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    return [{k: v for k, v in r.items() if k not in TIMED} for r in rows]


def test_ray_comparison_table_equals_the_sequential_one(tmp_path, ray_address, capsys):
    assert compare_main([*ARGS, "--out", str(tmp_path / "seq")]) == 0
    assert compare_main([*ARGS, "--out", str(tmp_path / "ray"), "--ray", ray_address]) == 0
    log = capsys.readouterr().out
    assert "4 runs submitted to the Ray cluster" in log and log.count("finished on Ray") == 4
    seq, par = _rows(tmp_path / "seq"), _rows(tmp_path / "ray")
    assert [r["method"] for r in par] == ["gradmap", "ippo", "rule", "no-control"]
    assert all(not r["failed"] for r in par)
    for a, b in zip(seq, par, strict=True):
        for k, v in a.items():  # torch threads differ (1 per task): equal to rounding
            try:
                assert float(b[k]) == pytest.approx(float(v), rel=1e-9, abs=1e-12), (a["method"], k)
            except ValueError:
                assert b[k] == v, (a["method"], k)
    # the workers wrote the run directories where the sequential run does
    assert (tmp_path / "ray" / "runs" / "ippo-s0" / "actor.safetensors").is_file()
    assert (tmp_path / "ray" / "runs" / "gradmap-s0" / "checkpoint.safetensors").is_file()

    # runs finished before --opendss was asked for are re-simulated from their files, not rerun
    assert compare_main([*ARGS, "--out", str(tmp_path / "seq"), "--opendss"]) == 0
    log = capsys.readouterr().out
    assert log.count("done before, kept") == 4 and log.count("OpenDSS re-simulation in") == 4
    assert [r["opendss_cost"] != "" for r in _rows(tmp_path / "seq")] == [True] * 4
