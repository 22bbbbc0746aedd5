"""The centralised oracle: feasible where no control is not, cheaper, above its certified lower
bound."""

import pytest

from baselines.oracle import OracleConfig, oracle
from gradmap_agents.bound import copper_plate_bound
from gradmap_agents.evaluate import evaluate
from gridedge_env.rollout import no_control


def test_oracle_is_feasible_cheaper_than_no_control_and_above_its_bound(env):
    days = env.scenario.split.test[:4]
    nc, _ = evaluate(env, no_control(env), days)
    assert nc["violation_magnitude"] > 0.1  # the days need control
    out = oracle(env, days, OracleConfig(iterations=150))
    assert out["violation_magnitude"] <= 0.05 * nc["violation_magnitude"]
    assert out["cost"] < nc["cost"]
    assert out["lower_bound_cost"] <= out["cost"]
    assert 0 <= out["optimality_gap"] < 0.2
    # the certified copper-plate bound, over the same (here: all converged) days
    assert out["nonconverged"] == 0
    assert out["lower_bound_cost"] == pytest.approx(copper_plate_bound(env, days).mean, rel=1e-12)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="iterations"):
        OracleConfig(iterations=0)
    with pytest.raises(ValueError, match="lr"):
        OracleConfig(lr=-1)
