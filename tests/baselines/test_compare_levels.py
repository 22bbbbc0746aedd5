"""Time to the shares a reader names (``gradmap-compare --shares``), on validation histories
whose answers follow by hand from the protocol's definitions."""

import pytest

from baselines.cli import compare_main
from baselines.compare_levels import shares_markdown, t_halfwidth, time_to_shares
from gradmap_agents.protocol import Levels

# gap 100 GBP/day; feasible when V <= 0.1 and L <= 1.0
LV = Levels(no_control_cost=1000.0, bound_cost=900.0, no_control_voltage=1.0, no_control_line=10.0)


def _point(wall, grads, cost, v=0.0, line=0.0):
    return {"train/wall_seconds": wall, "train/env_gradients": grads, "train/day_steps": 48 * grads,
            "val/cost": cost, "val/voltage_violation_magnitude": v,
            "val/line_violation_magnitude": line, "val/nonconverged": 0}


def _run(method, seed, points):
    return {"method": method, "seed": seed, "history": points}


RESULTS = [
    # "fast" reaches cost 950 (captured share 0.5) at 2 s in seed 0, 4 s in seed 1
    _run("fast", 0, [_point(1, 10, 990), _point(2, 20, 950)]),
    _run("fast", 1, [_point(2, 10, 990), _point(4, 20, 950)]),
    # "slow" at 6 s and 12 s; its first point is cheap but infeasible (V = 0.5 > 0.1)
    _run("slow", 0, [_point(1, 5, 900, v=0.5), _point(6, 30, 950)]),
    _run("slow", 1, [_point(3, 15, 990), _point(12, 60, 950)]),
    # PPO-like: wall time only; one seed never reaches 0.5
    _run("ppo", 0, [_point(5, 0, 950)]),
    _run("ppo", 1, [_point(5, 0, 990)]),
    {"method": "rule", "seed": 0, "history": []},
]
LEARNED, GRADIENT = ("fast", "slow", "ppo"), ("fast", "slow")


def test_time_to_shares_is_the_first_validation_point_at_the_share_with_its_ratio():
    block = time_to_shares(RESULTS, LEARNED, GRADIENT, LV, (0.05, 0.5, 0.9), penalised=False)
    assert block["reference"] == "fast" and not block["penalised"]
    half = block["shares"]["0.5"]
    assert half["fast"]["wall"] == 3.0 and half["fast"]["gradients"] == 20.0
    assert half["fast"]["wall_ci95"] == pytest.approx(t_halfwidth([2.0, 4.0]))
    assert half["slow"]["wall"] == 9.0 and half["slow"]["gradients"] == 45.0
    assert half["slow"]["wall_ratio"] == 3.0 and half["slow"]["gradients_ratio"] == 2.25
    # one seed of two reaches it: counted, not averaged; PPO has no gradient axis
    assert half["ppo"]["reached"] == 1 and half["ppo"]["wall"] is None
    low = block["shares"]["0.05"]
    assert low["ppo"]["wall"] == 5.0 and low["ppo"]["gradients"] is None
    # the cheap first point of "slow" seed 0 is infeasible: the feasible share skips it (6 s) ...
    assert low["fast"]["wall"] == 1.5 and low["slow"]["wall"] == 4.5
    assert block["shares"]["0.9"]["fast"]["reached"] == 0
    assert "rule" not in half
    # ... the penalised one counts it: mu_V = 10 x gap / V_nc = 1000, mu_L = 100, J_nc = 3000,
    # J = 900 + 1000 x 0.5 = 1400 captures (3000 - 1400) / (3000 - 900) = 0.76 at 1 s
    pen = time_to_shares(RESULTS, LEARNED, GRADIENT, LV, (0.5,), penalised=True)
    assert pen["penalised"]
    assert pen["shares"]["0.5"]["slow"]["wall"] == 2.0 and pen["shares"]["0.5"]["fast"]["wall"] == 1.5


def test_shares_table_names_each_method_and_its_ratio():
    block = time_to_shares(RESULTS, LEARNED, GRADIENT, LV, (0.5, 0.9), penalised=False)
    md = shares_markdown(block)
    assert "| share | fast | slow | ppo | slow / fast | ppo / fast |" in md
    row = next(line for line in md.splitlines() if line.startswith("| 0.5 |"))
    assert "3.0 ± " in row and "9.0 ± " in row and "3.00× (2.25×)" in row
    assert "1 of 2 seeds" in row
    assert "never" in next(line for line in md.splitlines() if line.startswith("| 0.9 |"))
    assert shares_markdown(None) == ""


def test_bad_shares_are_named(tmp_path):
    with pytest.raises(SystemExit, match="--shares 'a,0.5'"):
        compare_main(["--methods", "rule", "--shares", "a,0.5", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"shares \[1.5\]"):
        compare_main(["--methods", "rule", "--shares", "0.5,1.5", "--out", str(tmp_path)])
