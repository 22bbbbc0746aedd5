"""The fused stacked-MLP kernel computes the plain formula, and its hand-written backward gives
autograd's gradients of that formula (inputs, every weight and bias)."""

import pytest
import torch

from gradmap_agents.fused_mlp import _StackedMLPFunction
from gradmap_agents.policy import ACTIVATIONS, StackedMLP, StackedPolicy


def _plain(net: StackedMLP, x):
    """The formula as written in ``policy.py``: normalise, then tanh/relu layers, autograd."""
    h = (x - net.obs_mean[:, None, :]) / net.obs_std[:, None, :]
    layers = net.layers()
    for w, b in layers[:-1]:
        h = ACTIVATIONS[net.activation](torch.bmm(h, w) + b)
    w, b = layers[-1]
    y = torch.bmm(h, w) + b
    return torch.tanh(y) if net.squash else y


def _net(hidden, activation, squash, dtype=torch.float64, out_dim=1, n=5, f=4, device="cpu"):
    g = torch.Generator().manual_seed(1)
    net = StackedMLP(n, f, hidden, out_dim, generator=g, dtype=dtype, out_scale=1.0,
                     activation=activation, squash=squash, device=device)
    with torch.no_grad():  # a non-trivial normalisation, so its fold is exercised too
        net.obs_mean.copy_(torch.rand(n, f, generator=g, dtype=dtype))
        net.obs_std.copy_(0.5 + torch.rand(n, f, generator=g, dtype=dtype))
    return net


CASES = [((), "tanh", True), ((6,), "tanh", True), ((6, 3), "tanh", True),
         ((6,), "relu", True), ((6, 3), "relu", False), ((6,), "tanh", False)]


@pytest.mark.parametrize("hidden, activation, squash", CASES)
def test_forward_and_gradients_equal_the_plain_formula(hidden, activation, squash, device):
    net = _net(hidden, activation, squash, out_dim=2, device=device)
    x = torch.randn(5, 9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x, weight = x.to(device), torch.randn(5, 9, 2, dtype=torch.float64).to(device)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    ys = [net.forward_agent_major(xs[0]), _plain(net, xs[1])]
    assert torch.allclose(ys[0], ys[1], rtol=0, atol=1e-13)
    grads = [torch.autograd.grad((y * weight).sum(), [xi, *net.parameters()])
             for y, xi in zip(ys, xs, strict=True)]
    for fused, plain in zip(*grads, strict=True):
        assert torch.allclose(fused, plain, rtol=1e-11, atol=1e-13)


def test_float32_rounding_stays_at_float32_level():
    """tanh through the sigmoid rounds differently: about 1e-7 in float32, never more."""
    net = _net((16,), "tanh", True, dtype=torch.float32)
    x = torch.randn(5, 2000, 4)
    with torch.no_grad():
        diff = (net.forward_agent_major(x) - _plain(net, x)).abs().max()
    assert float(diff) < 2e-6


def test_gradcheck_of_the_function():
    g = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=g).requires_grad_(True)

    x = rand(3, 5, 4)
    maps = (rand(3, 6, 4), rand(3, 6, 1), rand(3, 2, 6), rand(3, 2, 1))
    for hidden in ("sigmoid", "relu"):
        assert torch.autograd.gradcheck(
            lambda x, *m, hidden=hidden: _StackedMLPFunction.apply(x, hidden, True, *m),
            (x, *maps))


def test_a_bound_policy_acts_as_the_policy_and_grad_false_spares_the_parameters():
    pol = StackedPolicy(6, 4, [(slice(0, 6), (5,))], seed=0, dtype=torch.float64)
    obs = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.equal(pol.bind()(obs, 0), pol(obs))
    a = pol.bind(grad=False)(obs, 0)
    (g_obs,) = torch.autograd.grad(a.sum(), [obs])  # the closed loop still reaches observations
    assert g_obs.abs().sum() > 0
    with pytest.raises(RuntimeError):  # and the parameters are not in the graph
        torch.autograd.grad(pol.bind(grad=False)(obs, 0).sum(), [pol.nets[0].w0])
