"""The GPU check (``scripts/gpu_check.sh``, docs/gpu.md) run on the CPU as its own smoke test:
every step runs and writes JSON that parses; without CUDA, ``--device cuda`` fails loudly; its
list of test files holds every test that takes the ``device`` fixture."""

import ast
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["install", "tests", "powerflow", "env", "envgrad"]


def _run(out: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _takes_device(path: Path) -> bool:
    """Whether a function (test or fixture) in ``path`` has a parameter named ``device``."""
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.FunctionDef) and "device" in [a.arg for a in node.args.args]
               for node in ast.walk(tree))


def test_the_script_runs_every_file_with_device_tests():
    listed = re.search(r"DEVICE_TEST_FILES=\(\n(.*?)\n\)", SCRIPT.read_text(), re.S).group(1).split()
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if _takes_device(p))
    assert sorted(listed) == found
    assert all((ROOT / f).is_file() for f in listed)


@pytest.mark.slow
def test_cpu_mode_runs_every_step_and_writes_json(tmp_path):
    """``--device cpu --size smoke``: under a minute on 2 cores (measured 47 s)."""
    r = _run(tmp_path, "--device", "cpu", "--size", "smoke")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    for step in STEPS:  # one line per step with its seconds, as it ends and in the summary
        assert len(re.findall(rf"^gpu_check: {step} +ok +[\d.]+ s$", r.stdout, re.M)) == 2, step
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] and [s["step"] for s in summary["steps"]] == STEPS
    assert summary["device"]["requested"] == "cpu" and summary["size"] == "smoke"
    assert summary["tests"]["tests"] >= 5 and summary["tests"]["failures"] == 0
    assert summary["tests"]["errors"] == summary["tests"]["skipped"] == 0
    names = [c.get("name") for c in ET.parse(tmp_path / "pytest_junit.xml").iter("testcase")]
    assert names and all(n.endswith("[cpu]") for n in names)
    keys = {"powerflow": "ours_solves_per_s", "env": "ours_agent_steps_per_s",
            "envgrad": "envgrad_s"}
    for name, key in keys.items():
        rows = json.loads((tmp_path / f"bench_{name}.json").read_text())
        assert len(rows) == 1 and rows[0]["device"] == "cpu" and rows[0][key] > 0, name
    assert "gpu_check: total" in (tmp_path / "gpu_check.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_mode_without_cuda_fails_loudly(tmp_path):
    r = _run(tmp_path, "--device", "cuda", "--size", "smoke")
    assert r.returncode == 3
    assert "gpu_check: FAILED: CUDA is not available to torch" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is False and summary["exit"] == 3
    assert summary["device"]["cuda_available"] is False


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = _run(tmp_path, "--device", "tpu", timeout=30)
    assert r.returncode == 2 and r.stderr.strip() == "gpu_check: --device must be cpu or cuda, got 'tpu'"
    r = _run(tmp_path, "--sizes", "full", timeout=30)
    assert r.returncode == 2 and "unknown argument '--sizes'" in r.stderr
