"""examples/fast_rollout.py runs, and its four configurations agree on the voltages."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fast_rollout.py"


@pytest.mark.slow
def test_fast_rollout_example_runs_and_configurations_agree():
    out = subprocess.run([sys.executable, str(EXAMPLE), "--days", "2"], capture_output=True,
                         text=True, timeout=600, check=True).stdout
    rows = re.findall(r"(torch\.float\d+)\s+compile=(\w+)\s+([\d,]+) agent-steps/s.*?"
                      r"eager ([\d.e+-]+) p\.u\.", out)
    assert len(rows) == 4, out
    for dtype, _, rate, dv in rows:
        assert int(rate.replace(",", "")) > 0
        assert float(dv) < (1e-8 if dtype == "torch.float64" else 1e-5), out
