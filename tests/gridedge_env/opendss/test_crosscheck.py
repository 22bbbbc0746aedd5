"""``gridedge-validate`` on circuits of every transformer connection: scenarios sized to the
circuit, unsolved scenarios reported and left out, and the exit status."""

import json

import pytest

from gridedge_env import cli
from gridedge_env.feeders import load_feeder
from gridedge_env.opendss.crosscheck import BUDGET_GATES, compare

from ..conftest import CIRCUITS, FLOATING_SECONDARY


def _run(argv, capsys):
    rc = cli.validate_main(argv)
    out = capsys.readouterr().out
    return rc, json.loads(out.strip().splitlines()[-1]), out


@pytest.mark.parametrize("name", list(CIRCUITS))
def test_validate_passes_on_small_circuits(name, dss_circuit, capsys):
    rc, out, text = _run([str(dss_circuit(name)), "--scenarios", "6", "--json"], capsys)
    assert rc == 0, text
    assert out["passed"] and out["n_compared"] > 0
    floating = out["per_mode"][0]["floating_nodes"]
    assert bool(floating) == (name in FLOATING_SECONDARY)
    if floating:
        assert "floating (compared line-to-line)" in text
        assert out["per_mode"][0]["max_v_ll_err_pu_floating"] > 0


@pytest.mark.parametrize("name", list(CIRCUITS))
def test_small_circuits_agree_within_the_error_budget(name, dss_circuit):
    c = compare(load_feeder(dss_circuit(name)), scenarios=4, seed=2, load_model="pq")
    assert c.n_compared >= 1
    assert not c.exceeded(BUDGET_GATES), c.exceeded(BUDGET_GATES)


def test_unsolvable_circuit_exits_2_and_names_the_scenarios(dss_circuit, capsys):
    text = CIRCUITS["three_bus"].replace("kw=600 kvar=200", "kw=90000 kvar=30000")
    rc, out, printed = _run([str(dss_circuit("three_bus", text)), "--scenarios", "2",
                             "--load-model", "pq", "--json"], capsys)
    assert rc == 2, printed
    assert out["n_compared"] == 0 and out["passed"] is False
    assert out["per_mode"][0]["unsolved"]["opendss"] == [0, 1, 2]
    assert "NOTHING COMPARED" in printed and "did not solve 3 scenario(s): [0, 1, 2]" in printed


def test_some_unsolved_scenarios_are_reported_and_left_out(dss_circuit, capsys, monkeypatch):
    # loads near collapse: the random scenarios above nominal go past the nose of the PV curve
    import gridedge_env.opendss.crosscheck as v

    monkeypatch.setattr(v, "load_headroom", lambda feeder, load_model: 1.5)
    rc, out, printed = _run([str(dss_circuit("ieee4_yy")), "--scenarios", "8", "--load-model",
                             "pq", "--json"], capsys)
    mode = out["per_mode"][0]
    assert mode["unsolved"]["opendss"], printed
    assert rc == 0 and 0 < mode["n_compared"] < mode["n_scenarios"]
    assert f"did not solve {len(mode['unsolved']['opendss'])} scenario(s)" in printed


def test_gate_failure_exits_1(dss_circuit, capsys, monkeypatch):
    monkeypatch.setitem(cli.GATES, "max_v_err_pu", 0.0)
    rc, out, printed = _run([str(dss_circuit("three_bus")), "--scenarios", "1", "--json"], capsys)
    assert rc == 1 and out["passed"] is False and "FAILED" in printed
