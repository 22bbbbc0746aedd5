"""MAPPO and IPPO: rewards that sum to the Lagrangian, correct log-probabilities, value
normalisation, shared actors, and short training runs that are finite and reproducible."""

import pytest
import torch

from baselines.ppo import (
    PPOConfig,
    SharedPolicy,
    ValueNorm,
    _log_prob,
    _rollout_env,
    collect,
    init_ppo,
    train_ppo,
)
from gradmap_agents.dual import penalty
from gridedge_env.rollout import rollout


def test_log_prob_is_the_gaussian_density():
    mu, a = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    log_std = torch.randn(3, dtype=torch.float64)
    ref = torch.distributions.Normal(mu, log_std.exp()).log_prob(a)
    torch.testing.assert_close(_log_prob(a, mu, log_std), ref)


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_rewards_sum_to_minus_the_lagrangian_of_the_days(env, variant):
    """Agents' rewards over a day add up to minus (cost + sum mu g), re-simulated from the
    recorded actions with the rollout used by GradMAP."""
    cfg = PPOConfig(variant=variant, init_voltage_gbp_per_pu=3e4, init_line_gbp=2e3)
    s = init_ppo(env, cfg)
    days = env.scenario.split.train[[1, 40, 100]]  # line overload, overvoltage, none
    batch = collect(env, cfg, s, days)
    b, n_t, n = batch["act"].shape
    assert batch["rew"].shape == batch["val"].shape == batch["logp"].shape == (b, n_t, n)
    assert batch["obs"].shape == (b, n_t, n, env.obs_dim)
    assert (batch["gs"] is None) == (variant == "ippo")
    acts = batch["act"]
    with torch.no_grad():
        roll = rollout(env, days, lambda o, t, st: acts[:, t], path="stepwise")
    lagr = roll.cost + penalty(s.duals, roll.constraints)
    torch.testing.assert_close(-batch["rew"].sum((1, 2)), lagr, rtol=1e-10, atol=1e-8)
    assert float(penalty(s.duals, roll.constraints).sum()) > 0  # the network term is in it


def test_value_norm_round_trips_and_tracks_the_targets():
    vn = ValueNorm(2, beta=0.9)
    x = torch.randn(4000, 2, dtype=torch.float64) * torch.tensor([3.0, 0.5]) + torch.tensor([10.0, -2.0])
    for chunk in x.split(100):
        vn.update(chunk)
    mean, std = vn.stats()
    torch.testing.assert_close(mean, torch.tensor([10.0, -2.0], dtype=torch.float64), atol=0.6, rtol=0)
    torch.testing.assert_close(std, torch.tensor([3.0, 0.5], dtype=torch.float64), atol=0.6, rtol=0)
    y = torch.randn(7, 2, dtype=torch.float64)
    torch.testing.assert_close(vn.denormalise(vn.normalise(y)), y)


def test_shared_actor_is_one_network_for_every_agent(env):
    pol = SharedPolicy(env.n_agents, env.obs_dim, (8,), seed=1)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(1, 1, env.obs_dim, dtype=torch.float64, generator=g).expand(
        3, env.n_agents, env.obs_dim)
    a = pol(obs)
    # the same weights for every agent; float32 batched GEMMs may round rows differently
    # (measured: one ulp, 1.2e-7 relative)
    assert a.shape == (3, env.n_agents)
    torch.testing.assert_close(a, a[0, 0].expand_as(a), rtol=5e-7, atol=1e-9)
    assert all(torch.equal(pol.agent(0)[k], pol.agent(7)[k]) for k in pol.agent(0))


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_short_training_is_finite_validated_and_reproducible(env, variant):
    cfg = PPOConfig(variant=variant, iterations=2, days_per_rollout=8, epochs=2, eval_every=2)
    runs = [train_ppo(env, cfg) for _ in range(2)]
    h = runs[0].history
    assert len(h) == 1 and h[0]["train/env_steps"] == 2 * 8 * env.n_steps
    assert all(torch.isfinite(p).all() for p in runs[0].actor.parameters())
    assert h[0]["val/cost"] == runs[1].history[0]["val/cost"]  # same seed, same run
    stopped = train_ppo(env, PPOConfig(variant=variant, iterations=50, days_per_rollout=4),
                        should_stop=lambda: True)
    assert stopped.iteration == 1


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="variant"):
        PPOConfig(variant="qmix")
    with pytest.raises(ValueError, match="constraint"):
        PPOConfig(constraint="hard")
    with pytest.raises(ValueError, match="epochs"):
        PPOConfig(epochs=0)


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_float32_environment_collects_and_updates_in_float32(variant):
    """The fused compiled step (and a plain float32 environment) take float32 actions: the
    rollout keeps the environment's dtype throughout."""
    from gridedge_env.registry import env_params

    env32 = env_params("ieee13-50-v0", dtype=torch.float32)
    cfg = PPOConfig(variant=variant, iterations=1, days_per_rollout=2)
    s = init_ppo(env32, cfg)
    batch = collect(env32, cfg, s, env32.scenario.split.train[:2])
    assert {batch[k].dtype for k in ("act", "logp", "rew", "val")} == {torch.float32}
    s = train_ppo(env32, cfg, state=s)
    assert s.iteration == 1 and torch.isfinite(torch.tensor(s.history[-1]["val/cost"]))


@pytest.mark.slow
def test_compiled_rollouts_collect_what_eager_rollouts_collect(env):
    """``rollout="compiled"`` steps a ``compile=True`` copy of the environment (the fused step:
    power flow unrolled to a fixed iteration count): the same samples to solver tolerance."""
    batches = []
    for path in ("eager", "compiled"):
        cfg = PPOConfig(iterations=1, days_per_rollout=2, rollout=path)
        s = init_ppo(env, cfg)
        batches.append(collect(_rollout_env(env, cfg, s), cfg, s, env.scenario.split.train[:2]))
        assert (s.rollout_env is None) == (path == "eager")
    assert batches[1]["rew"].dtype == torch.float64
    # no voltage in the observations: the same samples, up to the compiled kernels' rounding
    # (fused multiply-adds; measured 5e-15 on the observations, 0 elsewhere)
    for k in ("obs", "act", "logp", "val"):
        torch.testing.assert_close(batches[1][k], batches[0][k], rtol=1e-12, atol=1e-12, msg=k)
    # rewards carry the constraint terms, from power flows solved to 1e-8 p.u. either way
    torch.testing.assert_close(batches[1]["rew"], batches[0]["rew"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="rollout must be one of"):
        PPOConfig(rollout="jit")
