"""The GradMAP and power-flow examples run (slow)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_gradmap_example_runs():
    out = subprocess.run([sys.executable, "examples/train_gradmap.py", "25"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    assert "iteration   25" in out and "exported 50 ONNX policies" in out
    assert "test violation_magnitude" in out


@pytest.mark.slow
def test_powerflow_tour_runs():
    out = subprocess.run([sys.executable, "examples/powerflow_tour.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    assert "IEEE 13 node feeder" in out
