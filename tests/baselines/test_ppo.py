"""MAPPO and IPPO: the same start and multipliers as GradMAP (normalisation days across the
year, no-control initial actions, the training config's DualConfig), rewards that sum to the
Lagrangian, GAE over whole days, correct log-probabilities, value normalisation, shared actors,
budget counters, and short training runs that are finite and reproducible."""

import dataclasses

import pytest
import torch

from baselines.ppo import (
    PPOConfig,
    SharedPolicy,
    ValueNorm,
    _log_prob,
    _rollout_env,
    collect,
    gae,
    global_state_stats,
    init_ppo,
    iterate,
    train_ppo,
)
from gradmap_agents.config import DualConfig, TrainConfig
from gradmap_agents.dual import dual_ascent, init_duals, penalty, tightened
from gradmap_agents.evaluate import evaluate
from gradmap_agents.train import init_state, normalisation_days
from gridedge_env.core import global_state, reset, step
from gridedge_env.rollout import no_control, rollout

COUNTERS = ("train/wall_seconds", "train/cpu_seconds", "train/env_gradients", "train/day_steps")
DUAL = DualConfig()  # the training config's defaults: what GradMAP starts from


@pytest.fixture(scope="module")
def ippo(env):
    """A fresh IPPO state (the default configuration) and its configuration."""
    cfg = PPOConfig()
    return init_ppo(env, cfg, DUAL), cfg


def test_log_prob_is_the_gaussian_density():
    mu, a = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    log_std = torch.randn(3, dtype=torch.float64)
    ref = torch.distributions.Normal(mu, log_std.exp()).log_prob(a)
    torch.testing.assert_close(_log_prob(a, mu, log_std), ref)


def test_normalisation_days_span_the_year(env):
    """The split is in date order; the normalisation days (PPO's and GradMAP's) are drawn across
    it, so every month is among them, and the outdoor temperature they see is the year's."""
    days = normalisation_days(env, 0)
    dates = env.scenario.profiles.dates
    months = {dates[int(d)][5:7] for d in days}
    assert len(days) == 64 and len(months) >= 11, sorted(months)
    assert {dates[int(d)][5:7] for d in env.scenario.split.train[:64]} <= {"01", "02", "03"}
    train = env.scenario.split.train
    assert set(days.tolist()) <= set(train.tolist())
    assert not torch.equal(days, normalisation_days(env, 1))  # seeded
    assert torch.equal(days, normalisation_days(env, 0))


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_normalisation_of_actors_and_critics_comes_from_the_normalisation_days(env, variant, ippo):
    """Actor, IPPO critic and MAPPO's global-state statistics all equal those of the no-control
    rollouts of ``normalisation_days``; the global-state ones are those of the states
    ``core.global_state`` builds, step by step."""
    s = ippo[0] if variant == "ippo" else init_ppo(env, PPOConfig(variant="mappo"), DUAL)
    days = normalisation_days(env, 0)
    _, roll = evaluate(env, no_control(env), days)
    x = roll.obs.reshape(-1, env.n_agents, env.obs_dim)
    net = s.actor.nets[0]
    torch.testing.assert_close(net.obs_mean.double(), x.mean(0), rtol=1e-6, atol=1e-6)
    if variant == "ippo":
        torch.testing.assert_close(s.critic.obs_mean, net.obs_mean)
        torch.testing.assert_close(s.critic.obs_std, net.obs_std)
        return
    sub = days[:3]  # the states core.global_state builds along three no-control days
    state, obs = reset(env, len(sub), days=sub)
    act, states = no_control(env), []
    for t in range(env.n_steps):
        states.append(global_state(env, state))
        state, out = step(env, state, act(obs, t, state))
        obs = out.obs
    _, sub_roll = evaluate(env, no_control(env), sub)
    mean, std = global_state_stats(env, sub_roll)
    gs = torch.stack(states, 1).flatten(0, 1)
    torch.testing.assert_close(mean, gs.mean(0), rtol=1e-9, atol=1e-9)
    moving = gs.std(0) > 1e-3
    torch.testing.assert_close(std[moving], gs.std(0)[moving], rtol=1e-9, atol=1e-9)
    full_mean, _ = global_state_stats(env, roll)
    torch.testing.assert_close(s.critic.mean, full_mean.float())


def test_initial_actions_are_the_no_control_actions_and_gradmaps(env, ippo):
    """The initial actor acts as no control does, within the initial-policy rule (targets
    clipped to +-0.95; output layer a ridge fit): generators off, batteries idle, heat pumps on
    their thermostat; and it is exactly GradMAP's initial policy (same seed and sizes)."""
    s, _ = ippo
    days = env.scenario.split.validation[:16]
    with torch.no_grad():
        roll = rollout(env, days, s.actor)
        ref = rollout(env, days, no_control(env))
    sl = env.kind_slices
    gen, bat, hp = (roll.actions[..., sl[k]] for k in ("generator", "battery", "heatpump"))
    assert float(gen.max()) < -0.9 and float(bat.abs().max()) < 0.05
    hp_err = (hp - ref.actions[..., sl["heatpump"]].clamp(-0.95, 0.95)).abs()
    assert float(hp_err.mean()) < 0.05
    assert float(roll.cost.mean()) < 1.1 * float(ref.cost.mean())  # 4 % more, measured
    gm = init_state(env, TrainConfig(env="ieee13-50-v0")).policy
    for a, b in zip(s.actor.parameters(), gm.parameters(), strict=True):
        assert torch.equal(a, b)


def test_shared_actor_starts_near_no_control_and_exports_its_offsets(env):
    """One network for all agents fits the no-control actions less closely than independent
    ones (the observations do not name the device kind; per-agent offsets set the means):
    measured mean errors 0.04 (generators), 0.09 (batteries), 0.11 (heat pumps)."""
    s = init_ppo(env, PPOConfig(shared_actor=True), DUAL)
    days = env.scenario.split.validation[:8]
    with torch.no_grad():
        roll = rollout(env, days, s.actor)
        ref = rollout(env, days, no_control(env))
    err = (roll.actions - ref.actions.clamp(-0.95, 0.95)).abs()
    for kind, sl in env.kind_slices.items():
        assert float(err[..., sl].mean()) < 0.15, kind
    assert float(roll.actions[..., env.kind_slices["generator"]].max()) < -0.75
    # agent(i) is what a device runs: the shared net with agent i's offset in its output bias
    w = s.actor.agent(3)
    x = (roll.obs[0, 5, 3].float() - w["obs_mean"]) / w["obs_std"]
    y = torch.tanh(torch.tanh(x @ w["w0"] + w["b0"]) @ w["w1"] + w["b1"])
    torch.testing.assert_close(y.reshape(()).double(), roll.actions[0, 5, 3], rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant,scheme", [("ippo", "rising"), ("mappo", "signed")])
def test_rewards_sum_to_minus_the_lagrangian_of_the_days(env, variant, scheme):
    """Agents' rewards over a day add up to minus (cost + sum mu g) with g GradMAP's constraint
    terms (margins, scheme), re-simulated from the recorded actions with GradMAP's rollout."""
    cfg = PPOConfig(variant=variant)
    dual = DualConfig(init_voltage_gbp_per_pu=3e4, init_line_gbp=2e3, scheme=scheme)
    s = init_ppo(env, cfg, dual)
    days = env.scenario.split.train[[1, 40, 100]]  # line overload, overvoltage, none
    batch = collect(env, cfg, dual, s, days)
    b, n_t, n = batch["act"].shape
    assert batch["rew"].shape == batch["val"].shape == batch["logp"].shape == (b, n_t, n)
    assert batch["obs"].shape == (b, n_t, n, env.obs_dim)
    assert (batch["gs"] is None) == (variant == "ippo")
    acts = batch["act"]
    with torch.no_grad():
        roll = rollout(env, days, lambda o, t, st: acts[:, t], path="stepwise")
    cons = tightened(env, roll.v_pu, roll.line_loading, dual.margin_pu, dual.line_margin,
                     scheme=scheme)
    lagr = roll.cost + penalty(s.duals, cons)
    torch.testing.assert_close(-batch["rew"].sum((1, 2)), lagr, rtol=1e-10, atol=1e-8)
    for got, want in zip(batch["cons"][:3], cons[:3], strict=True):
        torch.testing.assert_close(got, want)
    net = penalty(s.duals, cons)
    assert float(net.abs().sum()) > 0  # the network term is in it
    assert (float(net.min()) < 0) == (scheme == "signed")  # slack is rewarded when signed
    assert torch.equal(batch["roll"].cost, roll.cost)


def test_multipliers_start_and_step_as_the_training_configs(env):
    """The initial multipliers are GradMAP's (init_state) for the same DualConfig, whatever its
    granularity; each iteration takes the same projected ascent step on the batch's terms; a
    fixed DualConfig keeps them; the signed scheme lowers the multipliers of slack limits."""
    dual = DualConfig(granularity="node", init_voltage_gbp_per_pu=55.0, init_line_gbp=7.0,
                      scheme="signed", lr_voltage=1e3)
    s = init_ppo(env, PPOConfig(days_per_rollout=2), dual)
    gm = init_state(env, TrainConfig(env="ieee13-50-v0", dual=dual))
    for a, b in zip(s.duals, gm.duals, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(s.duals.v_over_pu, init_duals(env, "node", 55.0, 7.0).v_over_pu)
    cfg = PPOConfig(days_per_rollout=2, iterations=1)
    before, gen = s.duals, s.generator.get_state()
    days = env.scenario.split.train[torch.randperm(len(env.scenario.split.train),
                                                   generator=s.generator)[:2]]
    batch = collect(env, cfg, dual, s, days)
    s.generator.set_state(gen)
    m = iterate(env, cfg, dual, s)
    want = dual_ascent(before, batch["cons"], dual.lr_voltage, dual.lr_line, dual.max_gbp)
    for a, b in zip(s.duals, want, strict=True):
        torch.testing.assert_close(a, b)
    assert float(s.duals.v_over_pu.min()) < 55.0  # signed: slack lowers a multiplier
    assert all(k in m for k in ("dual/v_mean", "train/cost", "train/nonconverged"))
    kept = s.duals
    iterate(env, cfg, dataclasses.replace(dual, fixed=True), s)
    assert all(torch.equal(a, b) for a, b in zip(s.duals, kept, strict=True))


def _gae_by_hand(rew, val, gamma, lam):
    """The GAE recursion over one day ``(T,)``, terminal after the last step."""
    adv, last = torch.zeros_like(rew), 0.0
    for t in reversed(range(len(rew))):
        nxt = val[t + 1] if t + 1 < len(rew) else 0.0
        last = rew[t] + gamma * nxt - val[t] + gamma * lam * last
        adv[t] = last
    return adv, adv + val


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.95), (1.0, 1.0)])
def test_gae_ends_each_day_at_its_last_step(gamma, lam):
    """Advantages and targets of whole days: the recursion by hand, no bootstrap past a day's
    last step (nor into the next day); with gamma = lam = 1 the target is the rest of the day's
    reward, terminal term included."""
    g = torch.Generator().manual_seed(3)
    rew = torch.randn(3, 48, 2, dtype=torch.float64, generator=g)
    val = torch.randn(3, 48, 2, dtype=torch.float64, generator=g)
    adv, ret = gae(rew, val, gamma, lam)
    assert adv.shape == ret.shape == (3, 48, 2)
    for d in range(3):
        for i in range(2):
            a, r = _gae_by_hand(rew[d, :, i], val[d, :, i], gamma, lam)
            torch.testing.assert_close(adv[d, :, i], a)
            torch.testing.assert_close(ret[d, :, i], r)
    torch.testing.assert_close(adv[:, -1], rew[:, -1] - val[:, -1])  # terminal: no bootstrap
    val2 = val.clone()
    val2[1:] += 100.0  # other days' values do not reach day 0
    torch.testing.assert_close(gae(rew, val2, gamma, lam)[0][0], adv[0])
    if gamma == lam == 1.0:
        torch.testing.assert_close(ret, rew.flip(1).cumsum(1).flip(1))


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


@pytest.mark.parametrize("variant,gamma", [("ippo", 1.0), ("mappo", 0.99)])
def test_short_training_is_finite_validated_counted_and_reproducible(env, variant, gamma):
    cfg = PPOConfig(variant=variant, iterations=2, days_per_rollout=2, epochs=1, eval_every=1,
                    gamma=gamma)
    runs = [train_ppo(env, cfg, DUAL) for _ in range(2)]
    h = runs[0].history
    assert [r["iteration"] for r in h] == [1, 2]
    assert all(torch.isfinite(p).all() for p in runs[0].actor.parameters())
    assert [r["val/cost"] for r in h] == [r["val/cost"] for r in runs[1].history]  # same seed
    # the budget counters of every validation record: present, growing, no environment gradient
    for k in COUNTERS:
        assert all(k in r for r in h), k
    assert [r["train/day_steps"] for r in h] == [2 * env.n_steps * i for i in (1, 2)]
    assert all(r["train/env_gradients"] == 0 for r in h)
    for k in ("train/wall_seconds", "train/cpu_seconds"):
        assert 0 < h[0][k] < h[1][k], k
    s = runs[0]
    assert (s.train_seconds, s.cpu_seconds, s.day_steps) == tuple(
        h[-1][k] for k in ("train/wall_seconds", "train/cpu_seconds", "train/day_steps"))


def test_a_budget_ends_a_run_with_a_huge_iteration_cap(env):
    """``iterations`` is only a cap: with a huge one (compare's, under a wall-time budget) the
    run still validates on schedule and ends where ``should_stop`` says."""
    records = []
    s = train_ppo(env, PPOConfig(iterations=10 ** 12, days_per_rollout=2, epochs=1,
                                 eval_every=2), DUAL, progress_fn=records.append,
                  should_stop=lambda: len(records) >= 3)
    assert s.iteration == 3 and [r["iteration"] for r in s.history] == [2]
    # the training rollouts' metrics, as GradMAP logs them (power-flow iterations included)
    for k in ("train/cost", "train/nonconverged", "train/pf_iterations_mean",
              "train/pf_contraction_max"):
        assert all(k in r for r in records), k
    assert records[0]["train/pf_iterations_mean"] > 0


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="variant"):
        PPOConfig(variant="qmix")
    with pytest.raises(ValueError, match="epochs"):
        PPOConfig(epochs=0)
    with pytest.raises(ValueError, match="gamma=1.5"):
        PPOConfig(gamma=1.5)
    with pytest.raises(TypeError):  # the multipliers are the training config's DualConfig
        PPOConfig(init_voltage_gbp_per_pu=1e4)


@pytest.mark.parametrize("variant", ["ippo", "mappo"])
def test_float32_environment_collects_and_updates_in_float32(variant):
    """The fused compiled step (and a plain float32 environment) take float32 actions: the
    rollout keeps the environment's dtype throughout."""
    from gridedge_env.registry import env_params

    env32 = env_params("ieee13-50-v0", dtype=torch.float32)
    cfg = PPOConfig(variant=variant, iterations=1, days_per_rollout=2)
    s = init_ppo(env32, cfg, DUAL)
    batch = collect(env32, cfg, DUAL, s, env32.scenario.split.train[:2])
    assert {batch[k].dtype for k in ("act", "logp", "rew", "val")} == {torch.float32}
    s = train_ppo(env32, cfg, DUAL, state=s)
    assert s.iteration == 1 and torch.isfinite(torch.tensor(s.history[-1]["val/cost"]))


@pytest.mark.slow
def test_compiled_rollouts_collect_what_eager_rollouts_collect(env):
    """``rollout="compiled"`` steps a ``compile=True`` copy of the environment (the fused step:
    power flow unrolled to a fixed iteration count): the same samples to solver tolerance."""
    batches = []
    for path in ("eager", "compiled"):
        cfg = PPOConfig(iterations=1, days_per_rollout=2, rollout=path)
        s = init_ppo(env, cfg, DUAL)
        batches.append(collect(_rollout_env(env, cfg, s), cfg, DUAL, s,
                               env.scenario.split.train[:2]))
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
