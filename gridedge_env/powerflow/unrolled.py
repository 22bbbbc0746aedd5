"""A whole constant-power solve as one fixed-shape function, for ``torch.compile``.

Rollouts without gradients (RL) need the voltages and line loadings and whether each scenario
converged, nothing else. :func:`unrolled_solve` runs a fixed number of fixed-point iterations
from the no-load point (the iteration of :mod:`.implicit`, in p.u. of ``|a|``), applies the same
stopping test to the last step, and computes the outputs. It has no data-dependent control flow,
so a caller can compile it into one graph together with its own element-wise work (the
environment's whole step does). Scenarios it reports unconverged must be solved again by
:meth:`.PowerFlow.solve`, which iterates on (and falls back to Newton): callers check
``converged.all()``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class UnrolledSolution(NamedTuple):
    """What :func:`unrolled_solve` returns (``B`` scenarios, ``n`` nodes, ``r`` line phases)."""

    v: torch.Tensor  # (B, n, 2) node voltages, V, interleaved re, im
    v_pu: torch.Tensor  # (B, n) |V| / base, p.u.
    i_line: torch.Tensor  # (B, r, 2) line-phase currents, A
    line_loading: torch.Tensor  # (B, r) |I| / normamps
    converged: torch.Tensor  # (B,) bool: the last iterate passes the stopping test
    step: torch.Tensor  # (B,) the last step, p.u. of |a|
    contraction: torch.Tensor  # (B,) last step / the one before (unclamped; NaN for 0 / 0)


class UnrolledNetwork(NamedTuple):
    """The dense network's constant tensors :func:`unrolled_solve` needs (``m`` ports, ``n``
    nodes, ``r`` line phases; ``_il``: interleaved re, im)."""

    inv_a: torch.Tensor  # (m,) 1 / |a|, 1/V
    a_pu_il: torch.Tensor  # (1, 2m) a / |a|
    mc_il: torch.Tensor  # (2m, 2m) g -> -|a|^-1 M conj(g)
    w_il: torch.Tensor  # (1, 2n) no-load node voltages, V
    zc_il: torch.Tensor  # (2m, 2n) g -> -Z C conj(g)
    inv_base_v: torch.Tensor  # (n,) 1 / base voltage, 1/V
    line_0_il: torch.Tensor  # (1, 2r) no-load line currents, A
    line_k_il: torch.Tensor  # (2m, 2r) g -> -Y_b Z C conj(g)
    inv_amps: torch.Tensor  # (r,) 1 / normamps (0: unrated)
    port_a: torch.Tensor  # (m,) long: node of each port's first terminal
    port_b: torch.Tensor  # (m,) long: node of its second terminal (-1: ground)


def _div(s, u):
    """``s / u`` for interleaved ``(..., 2)`` real tensors."""
    ur, ui, sr, si = u[..., 0], u[..., 1], s[..., 0], s[..., 1]
    inv = 1.0 / (ur * ur + ui * ui)
    return torch.stack([(sr * ur + si * ui) * inv, (si * ur - sr * ui) * inv], dim=-1)


def iterate(u, s_pu, a_pu_il, mc_il, n_iter: int):
    """``n_iter >= 2`` fixed-point iterations of the p.u. iterate ``u`` ``(B, m, 2)`` for
    constant-power loads ``s_pu = s_P / |a|``, in real arithmetic so that ``torch.compile``
    fuses each iteration's element-wise work into one kernel around its GEMM. Returns the last
    iterate and the last two step sizes ``(B,)``."""
    b, m = u.shape[:2]
    prev = last = None
    for _ in range(n_iter):
        un = torch.addmm(a_pu_il, _div(s_pu, u).reshape(b, 2 * m), mc_il).reshape(b, m, 2)
        prev, last = last, (un - u).abs().amax(dim=(1, 2))
        u = un
    return u, prev, last


def node_outputs(u, s_va, net: UnrolledNetwork):
    """Port loads ``g = s / u`` ``(B, m, 2)`` (A), node voltages ``V = w - Z C conj(g)``
    ``(B, n, 2)`` (V) and ``|V| / base`` ``(B, n)``, for port voltages ``u`` (V) and
    constant-power loads ``s_va`` (VA), both ``(B, m, 2)``."""
    b, m = s_va.shape[:2]
    g = _div(s_va, u)
    v = torch.addmm(net.w_il, g.reshape(b, 2 * m), net.zc_il).reshape(b, -1, 2)
    return g, v, torch.linalg.vector_norm(v, dim=-1) * net.inv_base_v


def line_outputs(g, net: UnrolledNetwork):
    """Line-phase currents ``(B, r, 2)`` (A) and loadings ``(B, r)`` for port loads ``g``."""
    b = g.shape[0]
    i_line = torch.addmm(net.line_0_il, g.reshape(b, -1), net.line_k_il).reshape(b, -1, 2)
    return i_line, torch.linalg.vector_norm(i_line, dim=-1) * net.inv_amps


def unrolled_solve(net: UnrolledNetwork, s_va: torch.Tensor, n_iter: int, tol: float,
                   floor: float) -> UnrolledSolution:
    """Solve constant-power port loads ``s_va`` ``(B, m, 2)`` (VA drawn, interleaved) with
    ``n_iter >= 3`` iterations: an :class:`UnrolledSolution`. The outputs are those of the last
    iterate, the one the stopping test certifies; ``contraction`` is the ratio of the last two
    steps, the rate that test uses (unclamped: ``PowerFlowResult.contraction`` at iteration
    ``n_iter``).
    """
    b, m = s_va.shape[:2]
    inv_a = net.inv_a[:, None]
    s_pu = s_va * inv_a  # s / |a|: the load of the p.u. iterate
    u, _, step = iterate(net.a_pu_il.reshape(1, m, 2).expand(b, m, 2), s_pu, net.a_pu_il,
                         net.mc_il, n_iter - 1)
    # iteration n_iter: node voltages from the last iterate's port loads, ports read off them
    g, v, v_pu = node_outputs(u / inv_a, s_va, net)
    u_last = (v[:, net.port_a] - torch.where(net.port_b[:, None] >= 0,
                                             v[:, net.port_b.clamp(min=0)], 0.0)) * inv_a
    last = (u_last - u).abs().amax(dim=(1, 2))
    ratio = last / step
    rho = torch.clamp(ratio, max=0.99)  # nan (0 / 0) fails the test below but the floor's
    converged = (last * rho <= tol * (1 - rho)) | (last <= floor)
    i_line, loading = line_outputs(g, net)
    return UnrolledSolution(v, v_pu, i_line, loading, converged, last, ratio)
