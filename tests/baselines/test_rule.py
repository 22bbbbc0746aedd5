"""Rule-based control: local rules that do what they say, on the shared rollout API."""

import pytest
import torch

from baselines.rule import DEMAND, DEVICE, PV, VOLTAGE, RuleConfig, _battery, rule_based
from gradmap_agents.evaluate import evaluate
from gridedge_env.core import reset
from gridedge_env.devices import battery
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control


def test_rule_runs_the_test_days_pays_less_than_no_control_and_ends_above_initial_soc(env):
    days = env.scenario.split.test[:16]
    rule, roll = evaluate(env, rule_based(env), days)
    nc, _ = evaluate(env, no_control(env), days)
    assert rule["clipped_actions"] == 0 and rule["nonconverged"] == 0
    assert rule["cost"] < nc["cost"]  # price response pays
    assert rule["cost_terminal"] == 0.0  # the discharge reserve keeps each day's initial SoC
    assert rule["cost_degradation"] > 0 and rule["cost_fuel"] > 0  # batteries and generators act


def test_battery_rule_stores_surplus_covers_own_demand_and_keeps_its_reserve(env):
    bat = env.scenario.battery
    n = bat.capacity_kwh.shape[0]
    obs = torch.zeros(1, n, 8, dtype=torch.float64)
    soc_init = torch.full((1, n), 0.5, dtype=torch.float64)

    def power(demand_kw, pv_kw, soc, price):
        obs[..., DEMAND], obs[..., PV], obs[..., DEVICE] = demand_kw / 3, pv_kw / 5, 2 * soc - 1
        a = _battery(bat, obs, soc_init, torch.tensor([[price]], dtype=torch.float64), 0.1, 0.3, 0.5)
        return battery.action_to_power(bat, torch.full_like(a, soc), a, 0.5)

    p_hi = battery.power_bounds(bat, torch.full((1, n), 0.5, dtype=torch.float64), 0.5)[1]
    surplus = power(0.5, 1.5, 0.5, 0.2)  # 1 kW of own PV surplus, mid price: stored
    torch.testing.assert_close(surplus, torch.clamp(p_hi, max=1.0))
    torch.testing.assert_close(power(1.0, 0.0, 0.5, 0.05), p_hi)  # cheap: full charge
    peak = power(0.8, 0.0, 0.9, 0.5)  # covers its 0.8 kW at most, never exports
    assert bool((peak < 0).all()) and bool((peak >= -0.8 - 1e-12).all())
    empty = power(0.8, 0.0, 0.5, 0.5)  # at its initial SoC: keeps the reserve
    torch.testing.assert_close(empty, torch.zeros_like(empty))
    assert torch.count_nonzero(power(1.0, 0.0, 0.5, 0.2)) == 0  # mid price, no surplus: idle


def test_generators_follow_marginal_price_and_droop_reacts_to_own_voltage():
    env = env_params("ieee13-50-v0", observe_voltage=True)
    act = rule_based(env)
    state, obs = reset(env, 2, days=env.scenario.split.test[:2])
    sl = env.kind_slices
    obs = obs.clone()
    obs[0, :, 2], obs[1, :, 2] = 0.0, 2 * 0.6  # price 0 and 0.6 GBP/kWh
    a = act(obs, 0, state)
    assert bool((a[0, sl["generator"]] == -1).all())  # below every marginal cost: off
    assert bool((a[1, sl["generator"]] > -1).all())
    high = obs.clone()
    high[..., VOLTAGE] = 0.06 / 0.05  # own voltage 1.06 p.u.
    b = act(high, 0, state)
    assert bool((b[:, sl["battery"]] >= a[:, sl["battery"]]).all())
    assert bool((b[:, sl["generator"]] <= a[:, sl["generator"]]).all())
    assert bool((b != a).any())


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="low_quantile"):
        RuleConfig(low_quantile=0.8, high_quantile=0.5)
    with pytest.raises(ValueError, match="droop_start_pu"):
        RuleConfig(droop_start_pu=0.06)
