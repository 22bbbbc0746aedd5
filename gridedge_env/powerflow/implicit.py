"""The port-space fixed point, its Newton fallback, and its implicit gradient.

Residual (port space, see :mod:`.ports`), with ``x = [Re u, Im u]`` the port voltages and ``θ`` the
load coefficients:

    F(x, θ) = x - a - M i(x, θ) = 0,
    i(u) = -( conj(s_P) / conj(u) + conj(c_I) u / |u| + conj(y_Z) u ),

for the constant-power (``s_P``, VA), constant-current (``c_I = s_I / V_nom``, A) and
constant-impedance (``y_Z = s_Z / V_nom^2``, S) parts of what each port draws.

Forward: the Z-bus fixed point ``x <- a + M i(x)`` (OpenDSS's and power-grid-model's iterative
current method) for all scenarios at once, in complex form, one GEMM per iteration, converged
scenarios dropped from the active set; it stops when the estimated distance to the fixed point,
``step * rho / (1 - rho)`` (``rho`` the observed contraction rate), is below ``tol``. Scenarios
it fails on get damped Newton steps on the dense port Jacobian.

Backward (implicit function theorem, no unrolled iterations): with ``ḡ = ∂L/∂x`` at the solution,
solve ``J_x^T λ = ḡ`` for ``J_x = I - M D``, ``D = ∂i/∂x`` (2x2 blocks per port), by the adjoint
fixed point ``λ <- ḡ + D^T M^T λ`` (same contraction and cost as the forward), or a dense solve for
scenarios it does not converge on; then ``∂L/∂θ = (∂i/∂θ)^T M^T λ``.

Tensors here are real and planar, ``(B, 2, m)`` (axis 1: re, im), so elementwise work is
contiguous; matrices act on the flattened ``(B, 2m)`` layout as row vectors: ``x_flat @ MT`` with
``MT = [[Mr^T, Mi^T], [-Mi^T, Mr^T]]`` the real form of ``M^T``.
"""

from __future__ import annotations

import numpy as np
import torch


def port_current(x: torch.Tensor, s_p, c_i=None, y_z=None) -> torch.Tensor:
    """Current each port injects, ``(B, 2, m)``, for port voltages ``x`` ``(B, 2, m)``, V.

    ``s_p`` (VA), ``c_i`` (A), ``y_z`` (S): ``(B, 2, m)`` planar ZIP coefficients (None: 0). All
    three parts draw ``(α u_r + β u_i) + j (α u_i - β u_r)`` with ``(α, β)`` = ``s_P / |u|^2``,
    ``c_I / |u|`` and ``y_Z`` respectively (real, imaginary parts).
    """
    ur, ui = x[:, 0], x[:, 1]
    if not torch.is_grad_enabled():
        return _port_current_inplace(ur, ui, s_p, c_i, y_z)
    mag2 = ur * ur + ui * ui
    alpha, beta = s_p[:, 0] / mag2, s_p[:, 1] / mag2
    if c_i is not None:
        inv = torch.rsqrt(mag2)
        alpha, beta = alpha + c_i[:, 0] * inv, beta + c_i[:, 1] * inv
    if y_z is not None:
        alpha, beta = alpha + y_z[:, 0], beta + y_z[:, 1]
    return torch.stack([-(alpha * ur + beta * ui), beta * ur - alpha * ui], dim=1)


def _port_current_inplace(ur, ui, s_p, c_i, y_z):
    """:func:`port_current` without autograd: in-place, ~4x fewer memory passes (hot loop)."""
    inv = torch.reciprocal(ur * ur + ui * ui)
    alpha, beta = s_p[:, 0] * inv, s_p[:, 1] * inv
    if c_i is not None:
        inv.sqrt_()
        alpha.addcmul_(c_i[:, 0], inv)
        beta.addcmul_(c_i[:, 1], inv)
    if y_z is not None:
        alpha.add_(y_z[:, 0])
        beta.add_(y_z[:, 1])
    out = torch.empty((ur.shape[0], 2, ur.shape[1]), dtype=ur.dtype, device=ur.device)
    torch.mul(alpha, ur, out=out[:, 0]).addcmul_(beta, ui).neg_()
    torch.mul(beta, ur, out=out[:, 1]).addcmul_(alpha, ui, value=-1)
    return out


def _step_size(dx: torch.Tensor, inv_base: torch.Tensor) -> torch.Tensor:
    """Largest change of a port voltage component in p.u. of its no-load magnitude: ``(B,)``."""
    return dx.reshape(dx.shape[0], -1).abs().mul_(inv_base).amax(dim=-1)


def _jacobian_blocks(x, coeffs):
    """``D = ∂i/∂x`` as ``(B, m, 2, 2)`` blocks (row: re/im of i, column: re/im of u)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        i = port_current(x, *coeffs)
        rows = [torch.autograd.grad(i[:, k].sum(), x, retain_graph=k == 0)[0] for k in (0, 1)]
    return torch.stack(rows, dim=1).permute(0, 3, 1, 2)  # (B, 2(i), 2(u), m) -> (B, m, 2, 2)


def _dense_jacobian(mt: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``J = I - M D`` as ``(B, 2m, 2m)`` in the flattened planar layout (column convention)."""
    b, m = d.shape[:2]
    mr = mt.T.reshape(2 * m, 2, m)  # M in column form: [r, part i, port k]
    md = torch.einsum("rik,bkij->brjk", mr, d).reshape(b, 2 * m, 2 * m)
    return torch.eye(2 * m, dtype=d.dtype, device=d.device) - md


def residual_jacobian(net, coeffs, x: torch.Tensor) -> torch.Tensor:
    """``J = ∂F/∂x = I - M D`` at port voltages ``x`` ``(B, 2, m)`` (V), as ``(B, 2m, 2m)`` in
    the flattened planar layout (column convention: ``dF = J dx``). ``M D`` is the derivative
    of the fixed-point map ``x -> a + M i(x)``. Dense, on either network (the sparse one's ``M``
    is formed column by column: for up to a few thousand ports)."""
    if net.kind == "dense":
        mt = net.mt
    else:
        eye = torch.eye(2 * x.shape[2], dtype=x.dtype, device=x.device)
        mt = net.m_apply(eye) - net.a  # row k: M applied to unit current k (row convention)
    return _dense_jacobian(mt, _jacobian_blocks(x, coeffs))


class Settings:
    """Solver settings shared by forward and backward (plain attributes, set by PowerFlow).

    ``unrolled``: None, or a (compiled) :func:`.unrolled.iterate` the fixed point starts with
    for constant-power ports on the dense network; ``unroll``: how many iterations it runs.
    """

    def __init__(self, tol: float, max_iter: int, newton_iter: int, unrolled=None,
                 unroll: int = 4):
        self.tol, self.max_iter, self.newton_iter = tol, max_iter, newton_iter
        self.unrolled, self.unroll = unrolled, unroll


def _apply(net, coeffs, x):
    """One fixed-point map ``a + M i(x)`` on ``(B, 2, m)`` (``net``: a ports.*Network)."""
    b, _, m = x.shape
    return net.m_apply(port_current(x, *coeffs).reshape(b, 2 * m)).reshape(b, 2, m)


def _rows(coeffs, keep):
    return tuple(None if c is None else c[keep] for c in coeffs)


def conj_load(u: torch.Tensor, s_p, c_i, y_z) -> torch.Tensor:
    """``conj(-i(u))`` in complex form, ``(B, m)``: ``s_P / u + c_I conj(u) / |u| + y_Z conj(u)``
    (coefficients complex ``(B, m)`` or None). One complex division for constant-power ports."""
    g = s_p / u
    if c_i is not None:
        g = g + c_i * u.conj() / u.abs()
    if y_z is not None:
        g = g + y_z * u.conj()
    return g


def _complex(c):
    return None if c is None else torch.complex(c[:, 0], c[:, 1])


def fixed_point(net, inv_base, coeffs, x0, cfg: Settings):
    """Z-bus fixed point over a batch. Returns ``x, converged, iterations, residual,
    contraction``.

    The iterate is complex, ``u <- a - M conj(g(u))`` with ``g`` = :func:`conj_load`, kept in
    p.u. of ``|a|``, so an iteration is one complex division, one real GEMM on the interleaved
    (re, im) view (``net.fixed_point_map``) and the step size. The per-scenario bookkeeping
    (contraction rate, stopping test, active set) runs in numpy on the ``(B,)`` step sizes: one
    device-to-host copy of ``B`` numbers per iteration, which the stopping test needs anyway. A
    scenario's ``iterations``, ``residual`` and ``contraction`` are recorded when it first passes
    the test; it leaves the batch once the finished ones are a quarter of it, so its result may
    be a later, more accurate iterate.

    ``contraction`` ``(B,)``: the observed rate ``step_k / step_(k-1)`` at the recorded iteration
    ``k`` (``step_k`` = largest change of a port-voltage component at iteration ``k``, p.u. of
    ``|a|``), unclamped: the rate the stopping test used (it clamps it at 0.99). It estimates the
    spectral radius of the fixed-point map's derivative ``M D`` at the solution. NaN where no
    ratio exists (recorded at ``k = 1``, or ``0 / 0``); for a scenario that diverged (handed to
    Newton) it is the rate at which the fixed point gave up, typically ``>= 1``.
    """
    bsz, m, dev = x0.shape[0], x0.shape[2], x0.device
    # Iterate in p.u. of the no-load port voltages |a| (u = |a| u~): the step size is then the
    # plain largest re/im change, and the scaling sits in the network matrix and in the loads:
    # s_P / u = (s_P / |a|) / u~, c_I conj(u) / |u| = c_I conj(u~) / |u~|, y_Z conj(u) =
    # (y_Z |a|) conj(u~).
    inv_a = inv_base[:, :m]  # (1, m) 1 / |a|
    u0 = torch.complex(x0[:, 0], x0[:, 1]) * inv_a
    s_p, c_i, y_z = (_complex(c) for c in coeffs)
    ca = (s_p * inv_a, c_i, None if y_z is None else y_z / inv_a)
    u = None  # filled lazily: when every scenario stops together, the last iterate is u
    iters = np.zeros(bsz, dtype=np.int64)
    resid = np.full(bsz, np.inf)
    rate = np.full(bsz, np.nan)
    conv = np.zeros(bsz, dtype=bool)
    active = np.arange(bsz)
    ua = u0
    prev = np.zeros(bsz)
    recorded = np.zeros(bsz, dtype=bool)  # per active row: its result is already recorded
    floor = 50 * torch.finfo(x0.dtype).eps
    k0, pending = 0, None
    if (cfg.unrolled is not None and net.kind == "dense" and c_i is None and y_z is None
            and 2 <= cfg.unroll <= cfg.max_iter):  # the first iterations as one compiled block
        u_il, s_prev, s_last = cfg.unrolled(torch.view_as_real(u0), torch.view_as_real(ca[0]),
                                            net._a_il, net._mc_il, cfg.unroll)
        ua = torch.view_as_complex(u_il.contiguous())
        prev = s_prev.cpu().numpy().astype(np.float64)
        k0, pending = cfg.unroll - 1, s_last.cpu().numpy().astype(np.float64)
    for k in range(k0 + 1, cfg.max_iter + 1):
        if pending is not None:  # the unrolled block's last step: judge it like any other
            step, pending = pending, None
        else:
            un = net.fixed_point_map(conj_load(ua, *ca))
            dx = torch.view_as_real(un) - torch.view_as_real(ua)  # (B_active, m, 2)
            step = dx.abs_().reshape(len(active), 2 * m).amax(dim=-1)  # 6x faster than inf-norm
            step = step.cpu().numpy().astype(np.float64)
            ua = un
        # A contraction with rate rho leaves |x - x*| <= rho / (1 - rho) * step: stop on that
        # error estimate (rho from successive steps; 0.99 before there are two), not the bare
        # step, so slow contraction near voltage collapse does not stop early and fast
        # contraction does not iterate in vain.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = step / prev if k > 1 else np.full(len(step), np.nan)
        rho = np.minimum(ratio, 0.99) if k > 1 else np.full(len(step), 0.99)
        prev = step
        est = step * rho / (1 - rho)
        if k < cfg.max_iter and est.min() > cfg.tol and step.max() <= 10.0 and step.min() > floor:
            continue  # nobody stops this iteration (the common case: a few numpy calls)
        done = (est <= cfg.tol) | (step <= floor)  # floor: rounding noise
        dead = ~(step <= 10.0)  # diverging or non-finite: leave it to Newton
        new = (done | dead | (k == cfg.max_iter)) & ~recorded
        if new.any():  # first time a scenario meets the test: that is its result's record
            idx = active[new]
            conv[idx], iters[idx], resid[idx] = done[new] & ~dead[new], k, step[new]
            rate[idx] = ratio[new]
            recorded = recorded | new
        if u is None and recorded.all() and not dead.any() and len(active) == bsz:
            u = ua  # the common case: all scenarios together, no copies
            break
        # Finished scenarios leave the active set once they are a quarter of it (or all of it;
        # diverging ones at once); until then they ride along, their iterate only improving,
        # which is cheaper than shrinking the batch for a few rows.
        leave = dead | (recorded if recorded.mean() >= 0.25 else np.zeros_like(recorded))
        if k == cfg.max_iter:
            leave[:] = True
        if not leave.any():
            continue
        if u is None:
            u = u0.clone()
        rows = torch.from_numpy(leave).to(dev)
        idx_t = torch.from_numpy(active[leave]).to(dev)
        u[idx_t] = torch.where(torch.from_numpy(dead[leave]).to(dev)[:, None], u0[idx_t],
                               ua[rows])
        keep = torch.from_numpy(~leave).to(dev)
        active, prev, recorded = active[~leave], prev[~leave], recorded[~leave]
        ua, ca = ua[keep], _rows(ca, keep)
        if len(active) == 0:
            break
    u = u / inv_a
    x = torch.stack([u.real, u.imag], dim=1)
    if dev.type == "cpu":  # zero-copy views of the numpy records
        return (x, torch.from_numpy(conv), torch.from_numpy(iters),
                torch.from_numpy(resid).to(x0.dtype), torch.from_numpy(rate).to(x0.dtype))
    # elsewhere the four records as one host-to-device copy (one synchronisation, not one each)
    rec = torch.from_numpy(np.stack([conv, iters, resid, rate])).to(dev)
    return x, rec[0] != 0, rec[1].long(), rec[2].to(x0.dtype), rec[3].to(x0.dtype)


def newton(net, inv_base, coeffs, x0, cfg: Settings):
    """Damped Newton on ``F(x) = x - a - M i(x)`` with dense port Jacobians (stragglers only)."""
    bsz, _, m = x0.shape
    x = x0.clone()
    conv = torch.zeros(bsz, dtype=torch.bool, device=x0.device)
    resid = torch.full((bsz,), float("inf"), dtype=x0.dtype, device=x0.device)
    iters = torch.zeros(bsz, dtype=torch.int64, device=x0.device)
    f = x - _apply(net, coeffs, x)
    for k in range(1, cfg.newton_iter + 1):
        jac = _dense_jacobian(net.mt, _jacobian_blocks(x, coeffs))
        dx = torch.linalg.solve(jac, f.reshape(bsz, 2 * m, 1)).reshape(bsz, 2, m)
        dx = torch.nan_to_num(dx, nan=0.0, posinf=0.0, neginf=0.0)
        # Halve the step while the residual grows (keeps the iterate out of the |u| -> 0 pole).
        t = torch.ones(bsz, 1, 1, dtype=x.dtype, device=x.device)
        r0 = _step_size(f, inv_base)
        for _ in range(8):
            xn = x - t * dx
            fn = xn - _apply(net, coeffs, xn)
            worse = ~(_step_size(fn, inv_base) <= r0) & ~conv
            if not bool(worse.any()):
                break
            t = torch.where(worse[:, None, None], t / 2, t)
        x = torch.where(conv[:, None, None], x, xn)
        f = x - _apply(net, coeffs, x)
        r = _step_size(f, inv_base)
        newly = (r <= cfg.tol) & ~conv
        iters = torch.where(newly, k, iters)
        conv = conv | newly
        resid = torch.where(conv, torch.minimum(resid, r), r)
        if bool(conv.all()):
            break
    return x, conv, iters, resid


def adjoint(net, coeffs, x, g, cfg: Settings):
    """Solve ``J_x^T λ = g`` per scenario; returns ``μ = M^T λ``, ``(B, 2, m)`` (module doc).

    Fixed-point adjoint ``λ <- g + D^T M^T λ``, stopped like the forward iteration (estimated
    error below ``tol`` relative to ``max |g|``); a dense solve for scenarios it fails on
    (dense network only; with the sparse one the last iterate stands).
    """
    bsz, _, m = x.shape
    d = _jacobian_blocks(x, coeffs)  # (B, m, 2, 2)
    d00, d01, d10, d11 = (d[..., i, j].contiguous() for i in (0, 1) for j in (0, 1))
    scale = g.reshape(bsz, -1).abs().amax(-1).clamp_min(torch.finfo(g.dtype).tiny)
    tol = max(cfg.tol, 50 * torch.finfo(g.dtype).eps)
    lam, prev = g, torch.zeros(bsz, dtype=g.dtype, device=g.device)
    done = torch.zeros(bsz, dtype=torch.bool, device=x.device)
    for _ in range(cfg.max_iter):
        mu = net.mh_apply(lam.reshape(bsz, 2 * m)).reshape(bsz, 2, m)
        mu0, mu1 = mu[:, 0], mu[:, 1]
        new = torch.empty_like(g)  # g + D^T mu, in place (no autograd in backward)
        torch.addcmul(g[:, 0], d00, mu0, out=new[:, 0]).addcmul_(d10, mu1)
        torch.addcmul(g[:, 1], d01, mu0, out=new[:, 1]).addcmul_(d11, mu1)
        step = (new - lam).reshape(bsz, -1).abs().amax(-1) / scale
        rho = (step / prev).nan_to_num(0.99).clamp(max=0.99)
        lam, prev = new, step
        done = (step * rho / (1 - rho) <= tol) | (step <= 50 * torch.finfo(g.dtype).eps)
        if bool(done.all()) or not bool(torch.isfinite(step).any()):
            break
    if not bool(done.all()) and net.kind == "dense":  # stragglers (Newton-solved): direct solve
        idx = torch.nonzero(~done).squeeze(-1)
        jac = _dense_jacobian(net.mt, d[idx])
        sol = torch.linalg.solve(jac.transpose(-1, -2), g[idx].reshape(len(idx), 2 * m, 1))
        lam = lam.clone()
        lam[idx] = sol.reshape(len(idx), 2, m)
    return net.mh_apply(lam.reshape(bsz, 2 * m)).reshape(bsz, 2, m)


class PortSolve(torch.autograd.Function):
    """``x*(θ)`` with ``F(x*, θ) = 0``; backward by the implicit function theorem.

    ``apply(net, inv_base, cfg, x0, s_p, c_i, y_z) -> (x, converged, iterations, residual,
    contraction)`` with ``net`` a :mod:`.ports` network operator, ``inv_base`` ``(1, 2m)``,
    ``x0`` and the coefficients ``(B, 2, m)``; ``contraction`` is the fixed point's
    (:func:`fixed_point`), also for scenarios Newton finished.
    Gradients flow to ``s_p``, ``c_i`` and ``y_z`` only (the network matrices are constants).
    Scenarios that did not converge get zero gradient.
    """

    @staticmethod
    def forward(ctx, net, inv_base, cfg, x0, s_p, c_i, y_z):
        coeffs = (s_p, c_i, y_z)
        x, conv, iters, resid, rate = fixed_point(net, inv_base, coeffs, x0, cfg)
        if cfg.newton_iter > 0 and net.kind == "dense" and not bool(conv.all()):
            idx = torch.nonzero(~conv).squeeze(-1)
            xn, cn, itn, rn = newton(net, inv_base, _rows(coeffs, idx), x0[idx], cfg)
            x[idx] = torch.where(cn[:, None, None], xn, x[idx])
            conv[idx], iters[idx] = cn, iters[idx] + itn
            resid[idx] = torch.where(cn, rn, resid[idx])
        ctx.save_for_backward(x, conv, s_p, c_i, y_z)
        ctx.cfg, ctx.net = cfg, net
        ctx.mark_non_differentiable(conv, iters, resid, rate)
        return x, conv, iters, resid, rate

    @staticmethod
    def backward(ctx, gx, _gc, _gi, _gr, _grate):
        x, conv, s_p, c_i, y_z = ctx.saved_tensors
        coeffs = (s_p, c_i, y_z)
        gx = torch.where(conv[:, None, None], gx, torch.zeros_like(gx))
        mu = adjoint(ctx.net, coeffs, x, gx, ctx.cfg)
        mu = torch.where(conv[:, None, None], mu, torch.zeros_like(mu))
        present = [k for k, c in enumerate(coeffs) if c is not None and ctx.needs_input_grad[4 + k]]
        out = [None, None, None]
        if present:
            with torch.enable_grad():
                args = [None if c is None else c.detach().requires_grad_(k in present)
                        for k, c in enumerate(coeffs)]
                i = port_current(x, *args)
                grads = torch.autograd.grad(i, [args[k] for k in present], grad_outputs=mu)
            for k, g in zip(present, grads, strict=True):
                out[k] = g
        return (None, None, None, None, *out)
