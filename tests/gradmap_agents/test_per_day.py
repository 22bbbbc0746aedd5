"""Per-test-day metrics (for box plots): their means over the converged days are the metrics."""

import numpy as np
import pytest
import torch

from gradmap_agents.evaluate import metrics, per_day
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout

KEYS = ("cost", "voltage_violation_magnitude", "line_violation_magnitude", "voltage_worst_pu",
        "line_worst_overload")


@pytest.fixture(scope="module")
def env_roll():
    env = env_params("ieee13-50-v0")
    with torch.no_grad():
        return env, rollout(env, env.scenario.split.test[:4], no_control(env))


def test_per_day_means_are_the_metrics(env_roll):
    env, roll = env_roll
    days, m = per_day(env, roll), metrics(env, roll)
    assert set(days) == set(KEYS)
    for k in KEYS:
        assert days[k].shape == (4,) and days[k].dtype == np.float64, k
        assert not np.isnan(days[k]).any(), k
        assert days[k].mean() == pytest.approx(m[k], rel=1e-12, abs=1e-15), k
    # days differ (a per-day array, not a broadcast mean), and no control violates here
    assert np.ptp(days["cost"]) > 0 and days["voltage_violation_magnitude"].max() > 0
    torch.testing.assert_close(torch.from_numpy(days["cost"]), roll.cost)


def test_nonconverged_days_are_nan_and_left_out_of_the_means(env_roll):
    env, roll = env_roll
    conv = roll.converged.clone()
    conv[1, 7] = False  # one step of the second day did not converge
    bad = roll._replace(converged=conv)
    days, m = per_day(env, bad), metrics(env, bad)
    for k in KEYS:
        assert np.isnan(days[k]).tolist() == [False, True, False, False], k
        assert np.nanmean(days[k]) == pytest.approx(m[k], rel=1e-12, abs=1e-15), k
    everything_failed = per_day(env, roll._replace(converged=torch.zeros_like(conv)))
    assert all(np.isnan(v).all() for v in everything_failed.values())
