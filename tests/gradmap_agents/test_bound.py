"""The certified copper-plate bound: the program is the env's model, the bound lies below every
policy it can run, it is certified and deterministic, and what it does not cover is named."""

import dataclasses

import numpy as np
import pytest
import torch

from baselines.oracle import OracleConfig, optimise_actions
from baselines.rule import rule_based
from gradmap_agents.bound import copper_plate_bound, copper_plate_problem
from gridedge_env.core import device_step, exogenous, observe, reset
from gridedge_env.devices import HouseholdExog, household
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control, rollout


@pytest.fixture(scope="module")
def env():
    """The small scenario the bound is tested on."""
    return env_params("ieee13-50-v0")


@pytest.fixture(scope="module")
def days(env):
    return env.scenario.split.validation[:3]


@pytest.fixture(scope="module")
def bound(env, days):
    return copper_plate_bound(env, days)


def random_policy(seed: int):
    """Uniform actions in [-1.2, 1.2] (some clamped by the env)."""
    g = torch.Generator().manual_seed(seed)

    def act(obs, t, state):
        return 2.4 * torch.rand(obs.shape[:2], generator=g, dtype=obs.dtype) - 1.2

    return act


def env_trajectory(env, days, policy):
    """Step the env's own device model under ``policy``: each agent's device power per household
    ``(D, T, N)``, SoC ``(D, T, N_battery)`` and indoor temperature ``(D, T, N_heatpump)`` after
    every step, and the env's cost per day ``(D,)`` GBP."""
    state, obs = reset(env, len(days), days=days)
    k = env.scenario.config.households_per_agent
    device_kw, soc, t_in, cost = [], [], [], 0.0
    with torch.no_grad():
        for t in range(env.n_steps):
            dev = device_step(env, state, policy(obs, t, state))
            demand, pv, *_ = exogenous(env, state)
            home, _ = household.power(env.scenario.household, HouseholdExog(demand, pv))
            device_kw.append(dev.p_kw / k - home)
            soc.append(dev.soc)
            t_in.append(dev.t_in_c)
            cost = cost + dev.cost_agent.sum(-1)
            state = state._replace(t=state.t + 1, soc=dev.soc, t_in_c=dev.t_in_c)
            obs = observe(env, state)
    return [torch.stack(x, 1).numpy() for x in (device_kw, soc, t_in)], cost.numpy()


@pytest.mark.parametrize("policy", ["no_control", "random"])
def test_program_is_the_env_at_its_trajectories(env, days, policy):
    act = no_control(env) if policy == "no_control" else random_policy(3)
    (device_kw, soc, t_in), env_cost = env_trajectory(env, days, act)
    problem = copper_plate_problem(env, days)
    x = problem.point(device_kw, soc, t_in)
    assert problem.program.violation(x) < 1e-9  # feasible: the program relaxes the env
    np.testing.assert_allclose(problem.program.day_cost(x), env_cost, rtol=1e-12)


def test_bound_is_below_every_policy_and_close_to_the_relaxed_adam_solution(env, days, bound):
    costs = {}
    with torch.no_grad():
        for name, pol in [("no control", no_control(env)), ("rule", rule_based(env))]:
            costs[name] = rollout(env, days, pol).cost.numpy()
    # Adam on the same relaxed problem (a local method on the action box; the oracle's old
    # "bound"), on one of the days to stay quick: above the bound, and close to it
    relaxed = optimise_actions(env, days[:1], OracleConfig(iterations=100), constrained=False)
    with torch.no_grad():
        costs["adam"] = rollout(env, days[:1], relaxed).cost.numpy()
    for name, c in costs.items():
        assert (bound.day_cost[:len(c)] <= c).all(), name  # per day
    excess = costs["adam"][0] / bound.day_cost[0] - 1
    assert 0 < excess < 0.04, excess  # 1.9 % after 100 iterations; 0.5 % after 400 (3 days)
    assert costs["no control"].mean() > 1.1 * bound.mean  # there is a real gap to close


def test_bound_is_certified_and_deterministic(env, days, bound):
    assert bound.status == "Solved"
    assert 0 <= bound.gap < 1e-7
    assert bound.day_cost.shape == (len(days),)
    assert bound.mean == pytest.approx(bound.day_cost.mean())
    assert bound.solver.startswith("clarabel")
    again = copper_plate_bound(env, days)
    np.testing.assert_array_equal(again.day_cost, bound.day_cost)
    # another chunking solves the same program: the same bound to the solver's tolerance
    finer = copper_plate_bound(env, days, chunk_variables=500)
    np.testing.assert_allclose(finer.day_cost, bound.day_cost, rtol=1e-7)


def test_dual_function_is_below_feasible_points_for_any_multipliers(env, days, bound):
    (device_kw, soc, t_in), env_cost = env_trajectory(env, days, no_control(env))
    program = copper_plate_problem(env, days).program
    rng = np.random.default_rng(0)
    for scale in (0.01, 1.0, 100.0):
        z_eq = scale * rng.standard_normal(len(program.b_eq))
        z_in = scale * rng.standard_normal(len(program.b_in))  # negatives are clipped
        lower = program.dual_bound(z_eq, z_in)
        assert (lower <= bound.day_cost + 1e-6).all() and (lower <= env_cost).all()


def test_what_the_formulation_does_not_cover_is_named(env, days):
    extra = dataclasses.replace(env, kind_slices={**env.kind_slices, "ev_charger": slice(50, 52)})
    with pytest.raises(ValueError, match="ev_charger"):
        copper_plate_bound(extra, days)
    prof = env.scenario.profiles
    export = prof.export_price_gbp_per_kwh.clone()
    export[int(days[1]), 7] = prof.price_gbp_per_kwh[int(days[1]), 7] + 0.1
    scn = dataclasses.replace(env.scenario, profiles=dataclasses.replace(
        prof, export_price_gbp_per_kwh=export))
    with pytest.raises(ValueError, match=f"export price .* on day {int(days[1])} step 7"):
        copper_plate_bound(dataclasses.replace(env, scenario=scn), days)
    gen = env.scenario.generator._replace(a_gbp_per_kw2h=-env.scenario.generator.a_gbp_per_kw2h)
    scn = dataclasses.replace(env.scenario, generator=gen)
    with pytest.raises(ValueError, match="a_gbp_per_kw2h"):
        copper_plate_bound(dataclasses.replace(env, scenario=scn), days)
    with pytest.raises(ValueError, match="no days"):
        copper_plate_bound(env, [])
