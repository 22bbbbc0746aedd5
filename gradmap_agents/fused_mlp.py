"""Forward and backward of ``n`` stacked MLPs in two passes per layer: what every policy and
critic evaluation runs (:class:`~.policy.StackedMLP`).

The stacked MLP (``policy.py``) is mathematically

    h_0 = x,   h_l = act(W_l^T h_{l-1} + b_l),   y = out(W_L^T h_{L-1} + b_L)

per agent. Evaluated as written with autograd it is slow on a CPU for two reasons (measured,
``docs/gradmap.md``, "Policy evaluation"): ``torch.tanh`` costs about four times
``torch.sigmoid`` per element, and the agent-major layout ``(n, S, H)`` makes the last layer
(``H -> 1``) a batch of ``n`` matrix-vector products with short rows. Here:

- **tanh through the sigmoid.** ``tanh(u) = 2 sigma(2u) - 1``, so a tanh layer stores
  ``s = sigma(2u)`` and the next layer absorbs the affine map: it acts on ``s`` with weight
  ``2 W`` and bias ``b - W^T 1`` (:func:`effective_layers`). The function is the same; the
  rounding differs (about 1e-7 absolute in float32).
- **hidden-major layout.** Activations are ``(n, H, S)``: samples are the long contiguous axis
  of every GEMM, and the ``H -> 1`` layer is one long dot product per agent.
- **one hand-written backward** (:class:`_StackedMLPFunction`) that keeps only each layer's
  output and uses the activations' own backward kernels, instead of autograd's graph of
  transposes, broadcasts and copies.

The gradients are checked against autograd of the plain formula in float64
(``tests/gradmap_agents/test_fused_mlp.py``). Second derivatives are not supported (nothing here
needs them).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

HIDDEN_KERNELS = {"tanh": "sigmoid", "relu": "relu"}
"""The activation each hidden layer stores: tanh layers store ``sigma(2u)``."""


def effective_layers(layers, activation: str, obs_mean, obs_std):
    """``[(A_l, c_l)]``, ``A_l`` ``(n, in, out)``, ``c_l`` ``(n, 1, out)``: the affine maps the
    fused kernel applies to what it stores of the previous layer. The observation normalisation
    ``(x - mean) / std`` is folded into the first (``W0 / std``, ``b0 - (mean / std) W0``); with
    tanh, a hidden layer's map is doubled (it stores ``sigma(2u)``) and the next one reads
    ``2 s - 1`` (weight ``2 W``, bias ``b - W^T 1``). Differentiable in the parameters."""
    out = []
    for l, (w, b) in enumerate(layers):
        if l == 0:
            inv = 1.0 / obs_std
            w, b = w * inv[:, :, None], b - torch.bmm((obs_mean * inv)[:, None, :], w)
        if l > 0 and activation == "tanh":  # the input is s = (h + 1) / 2
            w, b = 2 * w, b - w.sum(1, keepdim=True)
        if l < len(layers) - 1 and activation == "tanh":  # store sigma(2u)
            w, b = 2 * w, 2 * b
        out.append((w, b))
    return out


class _StackedMLPFunction(torch.autograd.Function):
    """``x`` ``(n, S, in)`` and per layer ``A^T`` ``(n, out, in)``, ``c^T`` ``(n, out, 1)`` ->
    ``y`` ``(n, out, S)``. ``hidden``: ``"sigmoid"`` or ``"relu"``; ``squash``: tanh output."""

    @staticmethod
    def forward(ctx, x, hidden: str, squash: bool, *maps):
        h = x.transpose(1, 2)  # (n, in, S): a view; bmm reads the transposed blocks directly
        outs = []
        n_layers = len(maps) // 2
        for l in range(n_layers):
            z = torch.bmm(maps[2 * l], h).add_(maps[2 * l + 1])  # baddbmm: a slower broadcast
            if l < n_layers - 1:
                h = z.sigmoid_() if hidden == "sigmoid" else z.relu_()
            else:
                h = z.tanh_() if squash else z
            outs.append(h)
        ctx.hidden, ctx.squash = hidden, squash
        ctx.save_for_backward(x, *outs, *maps[0::2])
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, *rest = ctx.saved_tensors
        n_layers = len(rest) // 2
        outs, weights = rest[:n_layers], rest[n_layers:]
        g = torch.ops.aten.tanh_backward(g, outs[-1]) if ctx.squash else g
        grads = [None] * (2 * n_layers)
        for l in reversed(range(n_layers)):
            h_in = outs[l - 1] if l > 0 else x.transpose(1, 2)
            if ctx.needs_input_grad[3 + 2 * l]:
                grads[2 * l] = torch.bmm(g, h_in.transpose(1, 2))  # (n, out, in)
            if ctx.needs_input_grad[4 + 2 * l]:
                grads[2 * l + 1] = g.sum(-1, keepdim=True)
            if l == 0:
                break
            gh = _back(weights[l], g)  # (n, in, S)
            g = (torch.ops.aten.sigmoid_backward(gh, outs[l - 1]) if ctx.hidden == "sigmoid"
                 else torch.ops.aten.threshold_backward(gh, outs[l - 1], 0))
        gx = None
        if ctx.needs_input_grad[0]:
            gx = _back(weights[0], g).transpose(1, 2)  # (n, S, in)
        return (gx, None, None, *grads)


def _back(weight_t: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``A g`` for ``A^T`` ``(n, out, in)`` and ``g`` ``(n, out, S)``; with ``out = 1`` (a
    policy's last layer) an outer product, which a broadcast multiply does 3x faster than bmm."""
    a = weight_t.transpose(1, 2)
    return a * g if g.shape[1] == 1 else torch.bmm(a, g)


def fused_maps(layers, activation: str, obs_mean, obs_std) -> list:
    """The fused kernel's inputs ``[A_0^T, c_0^T, A_1^T, ...]`` (:func:`effective_layers`,
    transposed to ``(n, out, in)`` and ``(n, out, 1)``). Differentiable in the parameters; a
    caller that evaluates the same parameters many times (a rollout's steps) computes them
    once."""
    maps = []
    for a, c in effective_layers(layers, activation, obs_mean, obs_std):
        maps += [a.transpose(1, 2), c.transpose(1, 2)]
    return maps


def stacked_mlp(x: torch.Tensor, maps: list, activation: str, squash: bool) -> torch.Tensor:
    """``x`` ``(n, S, in)`` raw observations -> ``(n, S, out)``: ``n`` MLPs given by ``maps``
    (:func:`fused_maps`), hidden ``activation`` (``tanh``/``relu``), tanh output with
    ``squash`` (see the module docstring)."""
    y = _StackedMLPFunction.apply(x, HIDDEN_KERNELS[activation], squash, *maps)
    return y.transpose(1, 2)
