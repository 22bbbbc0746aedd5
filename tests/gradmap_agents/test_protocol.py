"""The comparison protocol's scoring: feasibility (P1), captured share (P2), the area (P3) and
times to levels, on hand-made validation histories whose answers are worked out below."""

import math

import pytest

from gradmap_agents import protocol
from gradmap_agents.protocol import Levels

LV = Levels(no_control_cost=1000.0, bound_cost=600.0, no_control_voltage=2.0,
            no_control_line=0.5)


def point(wall, cost, v=0.0, line=0.0, nonconverged=0, grads=None, steps=None):
    return {"train/wall_seconds": wall, "train/env_gradients": grads or wall,
            "train/day_steps": steps or 10 * wall, "val/cost": cost,
            "val/voltage_violation_magnitude": v, "val/line_violation_magnitude": line,
            "val/nonconverged": nonconverged}


def test_feasibility_each_kind_in_its_own_units():
    ok = {"cost": 800.0, "voltage_violation_magnitude": 0.2, "line_violation_magnitude": 0.05,
          "nonconverged": 0}
    assert LV.feasible(ok) and LV.captured(ok) == pytest.approx(0.5)
    assert not LV.feasible({**ok, "voltage_violation_magnitude": 0.2001})
    assert not LV.feasible({**ok, "line_violation_magnitude": 0.0501})
    # a policy whose power flows fail cannot hide its violations in the days left out
    assert LV.captured({**ok, "nonconverged": 1}) is None


def test_a_kind_no_control_never_violates_must_stay_at_zero():
    lv = Levels(1000.0, 600.0, 2.0, 0.0)
    val = {"cost": 800.0, "voltage_violation_magnitude": 0.0, "line_violation_magnitude": 1e-9,
           "nonconverged": 0}
    assert not lv.feasible(val)
    assert lv.feasible({**val, "line_violation_magnitude": 0.0})


def test_levels_need_a_gap():
    with pytest.raises(ValueError, match="no gap"):
        Levels(600.0, 600.0, 1.0, 1.0)


def test_cost_levels_are_shares_of_the_gap():
    assert [LV.cost_at(s) for s in protocol.SHARES] == [900.0, 800.0, 700.0]


def test_curve_area_and_times():
    # infeasible until 10 s; captured 0.25 from 10 s, 0.5 from 30 s; a worse point at 40 s
    h = [point(5, 700.0, v=1.0), point(10, 900.0), point(30, 800.0), point(40, 950.0)]
    assert protocol.quality(h, LV) == [None, 0.25, 0.5, 0.125]
    assert [q for _, q in protocol.best_curve(h, LV)] == [None, 0.25, 0.5, 0.5]
    # area over [0, 60]: 0.25 x 20 s + 0.5 x 30 s = 20, normalised by 60
    assert protocol.auc(h, LV, 60.0) == pytest.approx(20.0 / 60.0)
    # a horizon inside the history cuts it: 0.25 x 10 s over 20 s
    assert protocol.auc(h, LV, 20.0) == pytest.approx(0.125)
    assert protocol.time_to(h, LV, 0.25) == 10 and protocol.time_to(h, LV, 0.5) == 30
    assert protocol.time_to(h, LV, 0.75) is None
    assert protocol.time_to(h, LV, 0.5, axis="day_steps") == 300
    s = protocol.score(h, LV, budget_s=60.0)
    assert s["final_captured"] == 0.5 and s["time_to_50"] == 30 and s["time_to_75"] is None
    assert s["auc_wall"] == pytest.approx(1 / 3)


def test_area_of_a_run_that_is_never_feasible_is_zero_and_never_negative():
    h = [point(10, 500.0, v=5.0), point(20, 1200.0)]  # infeasible, then feasible but costlier
    assert protocol.auc(h, LV, 30.0) == 0.0
    assert protocol.final(h, LV) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="horizon"):
        protocol.auc(h, LV, 0.0)


def test_fixed_penalty_variant():
    mu_v, mu_l = LV.penalty_multipliers()
    # no control's violation costs ten times the gap
    assert mu_v * LV.no_control_voltage == pytest.approx(10 * LV.gap)
    assert mu_l * LV.no_control_line == pytest.approx(10 * LV.gap)
    j_nc = LV.no_control_cost + 20 * LV.gap
    h = [point(10, 800.0, v=0.1)]  # J = 800 + mu_v * 0.1
    expected = (j_nc - (800.0 + mu_v * 0.1)) / (j_nc - LV.bound_cost)
    assert protocol.quality(h, LV, penalised=True) == [pytest.approx(expected)]
    assert math.isclose(Levels(1000.0, 600.0, 2.0, 0.0).penalty_multipliers()[1], mu_v)
