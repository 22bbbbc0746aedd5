"""GradMAP and GradMA: one update of every policy from one environment gradient.

**Environment gradient** (``gradmap-notes`` section 6). Roll all ``N`` policies over ``B``
training days with a zero perturbation ``delta`` added to every action, form the Lagrangian

    L(theta, delta) = 1/B sum_b [ cost_b + sum_{t,k} mu_{t,k} g_{b,t,k} ]                    (1)

(``cost_b`` GBP of day ``b``, ``g >= 0`` the voltage and line exceedances, ``mu`` the duals) and
backpropagate through the devices and the power flow's implicit gradient to

    G = dL/d delta at delta = 0,   (B, T, N):

the closed-loop action-space gradient at the rollout's actions ``a0 = pi_theta0(o)`` (an action
also moves later observations and so later actions; ``G`` includes that).

**GradMA** takes one optimiser step along ``dL/dtheta = sum G . d pi_theta(o) / d theta``.

**GradMAP** reuses ``G``: ``K`` epochs of minibatch optimiser steps on the proximal surrogate
over the recorded ``(o, a0, G)``, with ``d = pi_theta(o) - a0`` per (day, step, agent),

    S(theta) = sum psi(G, d) + 1/(2 eta) sum d^2                                              (2)
    clipped (default):  psi(G, d) = max(G d, G clip(d, -eps, eps))
    proximal:           psi(G, d) = G d

whose gradient at ``theta0`` (``d = 0``) is GradMA's (tested). The clipped form is pessimistic:
beyond the trust region ``|d| <= eps`` an action gains nothing from moving further along
``-G`` but is still pulled back when it moved the wrong way. With ``grad_scale="rms"`` ``G`` is
divided by its root mean square first, so ``eta`` is in action units (the unclipped minimiser
is ``d = -eta G / rms(G)``); the direction of the first step is unchanged.

**Across processes** (:mod:`.distributed`, ``torchrun``): the updates take the whole batch's
``days`` on every rank; each rank rolls out its block ``days[shard(B)]`` and backpropagates its
share of eq. (1) (its days' sum over ``B``), so its ``G`` rows are the single process's. ``L``,
``rms(G)`` and every optimiser step's parameter gradients are all-reduced; the minibatch
permutation is drawn over the global ``B T`` samples on every rank alike, and each rank adds the
surrogate gradient of the samples it holds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from gridedge_env.costs import Constraints
from gridedge_env.rollout import DayRollout, rollout

from . import distributed
from .dual import Duals, penalty, tightened


class EnvGradient(NamedTuple):
    """One environment gradient; across processes the tensors are this rank's days
    (``days[distributed.shard(B)]``) and ``loss`` is the whole batch's ``L``."""

    obs: torch.Tensor  # (B, T, N, F) recorded observations
    a0: torch.Tensor  # (B, T, N) the policy's actions
    g: torch.Tensor  # (B, T, N) dL/d delta, GBP per unit action (closed loop)
    loss: float  # L, GBP per day
    roll: DayRollout  # the rollout (costs, constraints, voltages), detached
    cons: Constraints  # the constraint terms L weighs (tightened by the margins), detached


def lagrangian(roll: DayRollout, duals: Duals, cons: Constraints | None = None) -> torch.Tensor:
    """Eq. (1): mean over the days of cost plus the duals' weighted exceedances ``cons``
    (default: the rollout's own, at the scenario's limits), GBP per day."""
    return (roll.cost + penalty(duals, roll.constraints if cons is None else cons)).mean()


def environment_gradient(env, policy, days, duals: Duals, *, param_grad: bool = False,
                         margins: tuple[float, float] = (0.0, 0.0),
                         scheme: str = "rising", recompute: bool = False) -> EnvGradient:
    """One rollout and one backward. ``param_grad``: also accumulate ``dL/dtheta`` into the
    policy's ``.grad`` (GradMA) in the same backward pass. ``margins``: voltage (p.u.) and line
    margins that tighten the constraints, ``scheme``: exceedances or signed constraint
    functions (:func:`.dual.tightened`), ``recompute``: run each step's policies and devices
    again in the backward rather than keep their tensors (:func:`~gridedge_env.rollout.rollout`;
    less memory, same gradient). Across processes this rank rolls out its block of ``days``
    (module docstring) and ``dL/dtheta`` is summed over the ranks."""
    # bound without parameter gradients unless they are wanted: the backward then skips them
    bound = policy.bind(grad=param_grad) if hasattr(policy, "bind") else policy
    roll = rollout(env, days[distributed.shard(len(days))], bound, perturb=True,
                   recompute=recompute)
    cons = tightened(env, roll.v_pu, roll.line_loading, *margins, scheme=scheme)
    loss = lagrangian(roll, duals, cons)
    if distributed.active():  # this rank's share of the batch's mean
        loss = loss * (roll.cost.shape[0] / len(days))
    total = float(distributed.all_sum(loss.detach().clone()))  # L of the whole batch
    if not math.isfinite(total):
        raise FloatingPointError(f"Lagrangian is {total} (diverged)")
    inputs = [roll.delta] + ([p for p in policy.parameters()] if param_grad else [])
    grads = torch.autograd.grad(loss, inputs)
    if param_grad:
        for p, gp in zip(policy.parameters(), grads[1:], strict=True):
            p.grad = gp
        distributed.all_sum_grads(policy.parameters())
    return EnvGradient(roll.obs, roll.actions, grads[0], total, roll.detached(),
                       Constraints(*(None if c is None else c.detach() for c in cons)))


def surrogate(policy, x, a0, g, eta: float, eps: float, form: str = "clipped") -> torch.Tensor:
    """Eq. (2) summed over the samples given: agent-major observations ``x`` ``(N, S, F)``
    (:meth:`StackedPolicy.minibatch`), ``a0`` and ``g`` ``(N, S)``."""
    d = policy.forward_agent_major(x) - a0
    linear = g * d
    if form == "clipped":
        linear = torch.maximum(linear, g * torch.clamp(d, -eps, eps))
    elif form != "proximal":
        raise ValueError(f"surrogate form must be 'clipped' or 'proximal', got {form!r}")
    return linear.sum() + (d * d).sum() / (2 * eta)


def gradma_update(env, policy, optimizer, days, duals: Duals, *, grad_scale: str = "none",
                  margins: tuple[float, float] = (0.0, 0.0), scheme: str = "rising",
                  recompute: bool = False) -> EnvGradient:
    """GradMA: one optimiser step on ``dL/dtheta`` from one environment gradient; with
    ``grad_scale="rms"`` the step's gradient is divided by ``rms(G)``, as GradMAP's ``G`` is
    (``dL/dtheta`` is linear in ``G``, so this is ``G / rms(G)`` pushed through the policies)."""
    optimizer.zero_grad(set_to_none=True)
    eg = environment_gradient(env, policy, days, duals, param_grad=True, margins=margins,
                              scheme=scheme, recompute=recompute)
    scale = _rms_scale(eg.g, grad_scale)
    if scale != 1.0:
        for p in policy.parameters():
            p.grad.mul_(scale)
    optimizer.step()
    return eg


def _rms_scale(g: torch.Tensor, grad_scale: str) -> float:
    """``1 / rms(g)`` for ``"rms"`` (over every rank's ``g``), ``1`` for ``"none"``."""
    if grad_scale == "rms":
        return 1.0 / float(distributed.mean(g.pow(2)).sqrt().clamp_min(1e-30))
    if grad_scale != "none":
        raise ValueError(f"grad_scale must be 'rms' or 'none', got {grad_scale!r}")
    return 1.0


def gradmap_update(env, policy, optimizer, days, duals: Duals, *, epochs: int, minibatches: int,
                   eta: float, eps: float, form: str = "clipped", grad_scale: str = "rms",
                   generator: torch.Generator | None = None,
                   margins: tuple[float, float] = (0.0, 0.0), scheme: str = "rising",
                   recompute: bool = False) -> EnvGradient:
    """GradMAP: one environment gradient, then ``epochs x minibatches`` steps on eq. (2)
    (across processes: over the global samples, module docstring)."""
    eg = environment_gradient(env, policy, days, duals, margins=margins, scheme=scheme,
                              recompute=recompute)
    xs = policy.sample_major(eg.obs)  # (S, F, N), S = B T samples: cast once for K epochs
    a0, g = (v.flatten(0, 1).to(xs.dtype) for v in (eg.a0, eg.g))  # (S, N)
    g = g * _rms_scale(g, grad_scale)
    n_steps = eg.obs.shape[1]
    own = distributed.shard(len(days))  # this rank's samples: global rows [first, first + S)
    first, n_samples = own.start * n_steps, len(days) * n_steps
    for _ in range(epochs):
        order = torch.randperm(n_samples, generator=generator).to(xs.device)
        for idx in order.chunk(minibatches):
            optimizer.zero_grad(set_to_none=True)
            if distributed.active():  # the minibatch's samples this rank holds, as its rows
                idx = idx[(idx >= first) & (idx < first + xs.shape[0])] - first
            x = policy.minibatch(xs, idx)  # (N, S_mb, F)
            surrogate(policy, x, a0.index_select(0, idx).T, g.index_select(0, idx).T, eta, eps,
                      form).backward()
            distributed.all_sum_grads(policy.parameters())
            optimizer.step()
    return eg
