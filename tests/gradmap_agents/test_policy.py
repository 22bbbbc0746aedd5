"""Stacked policies: independent agents, batch shapes, normalisation, groups by kind."""

import pytest
import torch

from gradmap_agents.policy import StackedPolicy, kind_groups, observation_stats


def _policy(n=6, f=7, groups=None, seed=0, dtype=torch.float64):
    return StackedPolicy(n, f, groups or [(slice(0, n), (8, 8))], seed=seed, dtype=dtype)


def test_changing_one_agent_changes_only_its_actions_and_gradients():
    pol = _policy()
    obs = torch.randn(5, 6, 7, dtype=torch.float64)
    a0 = pol(obs)
    with torch.no_grad():
        pol.nets[0].w1[2] += 0.5  # agent 2's second layer
    a1 = pol(obs)
    changed = (a1 - a0).abs().amax(0) > 0
    assert changed.tolist() == [False, False, True, False, False, False]
    # gradients: a loss of agent 4's actions reaches agent 4's parameters only
    pol.zero_grad()
    pol(obs)[:, 4].sum().backward()
    for p in pol.parameters():
        nonzero = p.grad.flatten(1).abs().amax(1) > 0
        assert nonzero.tolist() == [False, False, False, False, True, False]


def test_agents_do_not_share_parameters():
    pol = _policy()
    same = torch.randn(1, 7, dtype=torch.float64).expand(6, 7)  # every agent sees the same
    a = pol(same)
    assert len(set(a.tolist())) == 6


def test_an_agent_sees_only_its_own_observation():
    pol = _policy()
    obs = torch.randn(3, 6, 7, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda o: pol(o).sum(0), obs)  # (6, 3, 6, 7)
    touched = jac.abs().sum((1, 3)) > 0  # action of agent i vs observation of agent j
    assert torch.equal(touched, torch.eye(6, dtype=torch.bool))


@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
def test_batch_shape_invariance(lead):
    pol = _policy()
    obs = torch.randn(*lead, 6, 7, dtype=torch.float64)
    a = pol(obs)
    assert a.shape == (*lead, 6)
    flat = pol(obs.reshape(-1, 6, 7)).reshape(*lead, 6)
    torch.testing.assert_close(a, flat, rtol=0, atol=0)
    # a transposed (feature-major) view, as the environment hands out, gives the same
    fm = obs.reshape(-1, 6, 7).transpose(1, 2).contiguous().transpose(1, 2)
    torch.testing.assert_close(pol(fm).reshape(*lead, 6), a, rtol=0, atol=1e-15)


def test_actions_are_bounded_and_start_near_zero():
    pol = StackedPolicy(6, 7, [(slice(0, 6), (8,))], seed=1)
    a = pol(torch.randn(1000, 6, 7, dtype=torch.float64) * 5)
    assert a.abs().max() < 1 and a.abs().mean() < 0.3


def test_normalisation_is_applied_and_agent_weights_are_exported():
    pol = _policy()
    obs = torch.randn(50, 6, 7, dtype=torch.float64) * 3 + 10
    mean, std = observation_stats(obs)
    pol.set_normalisation(mean, std)
    net = pol.nets[0]
    w = pol.agent(3)
    x = (obs[:, 3] - w["obs_mean"]) / w["obs_std"]
    for layer in range(net.n_layers):
        x = torch.tanh(x @ w[f"w{layer}"] + w[f"b{layer}"])
    torch.testing.assert_close(x[:, 0], pol(obs)[:, 3])
    const = torch.ones(20, 6, 7, dtype=torch.float64)  # a feature that never moves: std 1
    assert torch.equal(observation_stats(const)[1], torch.ones(6, 7, dtype=torch.float64))


def test_kinds_with_other_sizes_form_groups():
    slices = {"battery": slice(0, 3), "heatpump": slice(3, 5), "generator": slice(5, 6)}
    groups = kind_groups(slices, (8,), {"generator": (4, 4)})
    assert [(g[0].start, g[0].stop, g[1]) for g in groups] == [(0, 5, (8,)), (5, 6, (4, 4))]
    pol = _policy(groups=groups)
    assert len(pol.nets) == 2 and pol(torch.randn(2, 6, 7, dtype=torch.float64)).shape == (2, 6)
    with pytest.raises(ValueError, match="cover agents"):
        StackedPolicy(6, 7, [(slice(0, 3), (8,))])
    with pytest.raises(ValueError, match=r"observations must be \(\.\.\., 6, 7\)"):
        pol(torch.zeros(2, 5, 7, dtype=torch.float64))


def test_float32_policy_in_a_float64_environment():
    """The default precision: float64 observations in, float64 actions out, gradients through
    both casts, and the same actions as the float64 policy to float32 rounding."""
    p32, p64 = _policy(dtype=torch.float32), _policy(dtype=torch.float64)
    p64.load_state_dict({k: v.double() for k, v in p32.state_dict().items()})
    obs = torch.randn(4, 6, 7, dtype=torch.float64, requires_grad=True)
    a = p32(obs)
    assert a.dtype == torch.float64 and p32.nets[0].w0.dtype == torch.float32
    torch.testing.assert_close(a, p64(obs), rtol=0, atol=1e-6)
    (g,) = torch.autograd.grad(a.sum(), obs)
    assert g.dtype == torch.float64 and g.abs().sum() > 0
