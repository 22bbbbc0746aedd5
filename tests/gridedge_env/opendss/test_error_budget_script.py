"""scripts/error_budget.py picks the feeders its long-double reference can do, by size, and
refuses a larger one by name in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gridedge_env.network import BUNDLED

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "error_budget.py"


@pytest.fixture(scope="module")
def eb():
    spec = importlib.util.spec_from_file_location("error_budget", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_default_is_every_bundled_feeder_the_reference_can_do(eb):
    chosen = eb.budget_feeders(None)
    assert [n for n, _ in chosen] == ["ieee13", "ieee34", "ieee34mod2", "ieee123"]
    assert all(f.n_nodes <= eb.REFERENCE_MAX_NODES for _, f in chosen)
    assert set(BUNDLED) - {n for n, _ in chosen} == {"ieee8500", "ieee8500unbal"}
    assert [n for n, _ in eb.budget_feeders("ieee123,ieee13")] == ["ieee123", "ieee13"]


@pytest.mark.parametrize(("feeders", "message"), [
    ("ieee13,ieee8500", "ieee8500 has 8531 nodes, more than the long-double reference can do "
                        "(2000"),
    ("ieee999", "'ieee999' is not a bundled feeder (ieee13, "),
])
def test_a_feeder_it_cannot_do_is_one_line_and_exit_2(eb, feeders, message, capsys):
    with pytest.raises(SystemExit) as exc:
        eb.main(["--feeders", feeders])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error_budget.py: {message}")
