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
it fails on get damped Newton steps on the dense port Jacobian (dense network), or on the sparse
node-space Jacobian ``Y - C D C^T`` (sparse network). On the sparse network the fixed point is
Anderson-accelerated by default (:func:`anderson_fixed_point`).

Backward (implicit function theorem, no unrolled iterations): with ``ḡ = ∂L/∂x`` at the solution,
solve ``J_x^T λ = ḡ`` for ``J_x = I - M D``, ``D = ∂i/∂x`` (2x2 blocks per port), by the adjoint
fixed point ``λ <- ḡ + D^T M^T λ`` (same contraction and cost as the forward), or a direct solve
(dense, or sparse in node space) for scenarios it does not converge on; then
``∂L/∂θ = (∂i/∂θ)^T M^T λ``.

Tensors here are real and planar, ``(B, 2, m)`` (axis 1: re, im), so elementwise work is
contiguous; matrices act on the flattened ``(B, 2m)`` layout as row vectors: ``x_flat @ MT`` with
``MT = [[Mr^T, Mi^T], [-Mi^T, Mr^T]]`` the real form of ``M^T``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla
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
    ``acceleration``: ``"none"`` (plain fixed point, :func:`fixed_point`) or ``"anderson"``
    (:func:`anderson_fixed_point` with ``depth`` stored differences).
    """

    def __init__(self, tol: float, max_iter: int, newton_iter: int, unrolled=None,
                 unroll: int = 4, acceleration: str = "none", depth: int = 5):
        self.tol, self.max_iter, self.newton_iter = tol, max_iter, newton_iter
        self.unrolled, self.unroll = unrolled, unroll
        self.acceleration, self.depth = acceleration, depth


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


class _AndersonHistory:
    """Per-scenario differences of the last ``depth`` residuals ``ΔF`` and map values ``ΔG``,
    one real buffer ``(B, 2, depth, N)`` (so their Gram matrices are one batched product),
    written round-robin (the least squares does not care about order); ``count`` ``(B,)``
    differences stored since the last restart (older slots are masked, not cleared)."""

    def __init__(self, bsz: int, depth: int, n: int, like: torch.Tensor):
        self.buf = like.new_zeros(bsz, 2, depth, n)
        self.count = torch.zeros(bsz, dtype=torch.int64, device=like.device)
        self.depth = depth
        # per scenario: the last accepted residual and map value (B, N), its step size, whether
        # the current iterate is an accelerated one, and the largest Ritz estimate ρ (0: none)
        self.f_prev = self.g_prev = None
        self.step_prev = np.full(bsz, np.inf)
        self.accel = np.zeros(bsz, dtype=bool)
        self.rho = np.zeros(bsz)

    def judge(self, step: np.ndarray, tol: float, floor: float):
        """For the steps ``|f|`` ``(B,)`` of the current iterates: ``(reject, done)``, the
        safeguard's rejections and the scenarios whose stopping test passes."""
        reject = self.accel & ~(step < self.step_prev)  # NaN steps are rejected too
        rho = np.where(self.rho > 0, np.minimum(self.rho, 0.99), 0.99)
        done = ((step * rho / (1 - rho) <= tol) | (step <= floor)) & ~reject
        return reject, done

    def advance(self, f, g, step, reject, tol) -> torch.Tensor:
        """The next iterates ``(B, N)`` from the residuals ``f`` and map values ``g``: Anderson
        where accepted, the previous plain step (and a restart) where ``reject``."""
        rt = torch.from_numpy(reject).to(f.device)
        if self.f_prev is not None:
            self.push(f - self.f_prev, g - self.g_prev, ~rt)
        self.restart(rt)
        u_next, ritz = self.mix(f, g)
        # ρ from steps above the rounding noise only: differences of noise-sized steps give
        # meaningless Ritz values (and ρ is a property of the solution, settled by then)
        fresh = (step >= 1e3 * tol) & ~reject
        self.rho = np.where(fresh, np.maximum(self.rho, ritz), self.rho)
        if self.f_prev is None:
            self.f_prev, self.g_prev = f, g
        else:  # rejected rows: the plain step from the iterate the rejected one came from
            u_next = torch.where(rt[:, None], self.g_prev, u_next)
            self.f_prev = torch.where(rt[:, None], self.f_prev, f)
            self.g_prev = torch.where(rt[:, None], self.g_prev, g)
        self.accel = (self.count > 0).cpu().numpy() & ~reject
        self.step_prev = np.where(reject, self.step_prev, step)
        return u_next

    def push(self, df: torch.Tensor, dg: torch.Tensor, rows: torch.Tensor) -> None:
        """Store one difference ``(B, N)`` for the scenarios ``rows`` ``(B,)`` (bool)."""
        idx = torch.nonzero(rows).squeeze(-1)
        slot = (self.count % self.depth)[idx]
        self.buf[idx, 0, slot] = df[idx]
        self.buf[idx, 1, slot] = dg[idx]
        self.count = torch.where(rows, self.count + 1, self.count)

    def restart(self, rows: torch.Tensor) -> None:
        self.count = torch.where(rows, 0, self.count)

    def keep(self, rows: np.ndarray) -> None:
        """Keep the scenarios ``rows`` ``(B,)`` (bool) only."""
        rt = torch.from_numpy(rows).to(self.buf.device)
        self.buf, self.count = self.buf[rt], self.count[rt]
        if self.f_prev is not None:
            self.f_prev, self.g_prev = self.f_prev[rt], self.g_prev[rt]
        self.step_prev, self.accel, self.rho = (a[rows] for a in
                                                (self.step_prev, self.accel, self.rho))

    def mix(self, f: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """The type-II Anderson iterate ``g - ΔG γ``, ``γ = argmin |f - ΔF γ|`` (regularised
        normal equations, one ``depth x depth`` solve per scenario, batched), and a Ritz
        estimate of the spectral radius of the map's derivative ``J``: the largest eigenvalue
        magnitude of ``ΔU^+ ΔG`` (``ΔU = ΔG - ΔF``, ``ΔG ≈ J ΔU``), the projection of ``J`` on
        the stored steps. ``(B, N)`` tensor and ``(B,)`` numpy; rows with no history get ``g``
        and 0. The inner products are one batched product on the device; the ``(B, 2d, 2d)``
        algebra runs batched in NumPy on the host (~100x faster than torch's batched small
        solves here, whose per-call overhead is ~5 ms on the 2-core CPU), one small copy."""
        d, bsz = self.depth, f.shape[0]
        flat = self.buf.reshape(bsz, 2 * d, -1)
        gram = torch.cat([flat @ flat.transpose(1, 2), flat @ f.unsqueeze(-1)], dim=2)
        gram = gram.cpu().numpy().astype(np.float64)  # (B, 2d, 2d + 1)
        mask = (np.arange(d)[None, :] < np.minimum(self.count.cpu().numpy(), d)[:, None]) * 1.0
        bad = ~np.isfinite(gram).all(axis=(1, 2))  # a diverged scenario: no mixing, ρ 0
        gram[bad], mask[bad] = 0.0, 0.0
        outer = mask[:, :, None] * mask[:, None, :]
        ff, fg, gg = gram[:, :d, :d], gram[:, :d, d:2 * d], gram[:, d:, d:2 * d]
        fix = np.eye(d) * (1 - mask)[:, None, :]  # unit diagonal on empty slots: their γ is 0

        def solve(a, rhs):
            a = a * outer
            reg = 1e-12 * np.maximum(a.diagonal(axis1=1, axis2=2).max(-1), 1e-300)
            return np.linalg.solve(a + reg[:, None, None] * np.eye(d) + fix, rhs)

        gamma = solve(ff, (gram[:, :d, 2 * d] * mask)[..., None])[..., 0]  # (B, d)
        gamma = np.where(np.isfinite(gamma), gamma, 0.0)
        gt = torch.as_tensor(gamma, dtype=f.dtype, device=f.device).unsqueeze(1)
        u_next = g - (gt @ flat[:, d:]).squeeze(1)
        uu = gg - fg - fg.transpose(0, 2, 1) + ff  # ΔU·ΔU
        ug = gg - fg.transpose(0, 2, 1)  # ΔU·ΔG
        with np.errstate(all="ignore"):
            h = solve(uu, ug * outer)
            ritz = np.abs(np.linalg.eigvals(np.where(np.isfinite(h), h, 0.0))).max(-1)
        return u_next, np.nan_to_num(ritz, nan=0.0)


def anderson_fixed_point(net, inv_base, coeffs, x0, cfg: Settings):
    """Anderson-accelerated (type II, depth ``cfg.depth``) Z-bus fixed point over a batch;
    returns what :func:`fixed_point` returns.

    Same map and variables as :func:`fixed_point` (complex port voltages in p.u. of ``|a|``).
    Per scenario, with ``f_k = G(u_k) - u_k``: ``u_(k+1) = G(u_k) - ΔG γ``, ``γ`` the least
    squares fit of ``f_k`` by the stored residual differences ``ΔF`` (one small solve per
    scenario, batched). Safeguard: an accelerated iterate whose step ``|f|`` (largest re/im
    component) is not below that of the iterate it came from is rejected, replaced by the
    plain step ``G`` of that iterate, and the history restarts. The stopping test is
    :func:`fixed_point`'s, ``|f| ρ / (1 - ρ) <= tol`` for the returned ``G(u_k)``, with ``ρ``
    the largest Ritz estimate of the map's spectral radius seen so far while ``|f| >= 1e3 tol``
    (0.99 before one exists, clamped at 0.99), since the steps' own ratio is the accelerated
    rate, not ``ρ``, and differences of steps near the rounding noise carry no information;
    ``contraction`` records that ``ρ``. Scenarios leave the batch when they finish.
    """
    bsz, m, dev = x0.shape[0], x0.shape[2], x0.device
    inv_a = inv_base[:, :m]
    u0 = torch.complex(x0[:, 0], x0[:, 1]) * inv_a
    s_p, c_i, y_z = (_complex(c) for c in coeffs)
    ca = (s_p * inv_a, c_i, None if y_z is None else y_z / inv_a)
    out = u0.clone()
    iters = np.zeros(bsz, dtype=np.int64)
    resid = np.full(bsz, np.inf)
    rate = np.full(bsz, np.nan)
    conv = np.zeros(bsz, dtype=bool)
    active = np.arange(bsz)
    hist = _AndersonHistory(bsz, cfg.depth, 2 * m, torch.view_as_real(u0).reshape(bsz, -1))
    u = u0
    floor = 50 * torch.finfo(x0.dtype).eps
    for k in range(1, cfg.max_iter + 1):
        g = net.fixed_point_map(conj_load(u, *ca))
        gr = torch.view_as_real(g).reshape(len(active), 2 * m)
        fr = gr - torch.view_as_real(u).reshape(len(active), 2 * m)
        step = fr.abs().amax(-1).cpu().numpy().astype(np.float64)
        reject, done = hist.judge(step, cfg.tol, floor)
        dead = ~(step <= 10.0) & ~hist.accel  # a plain step diverging or non-finite: Newton's
        last = k == cfg.max_iter
        leave = done | dead | last
        if leave.any():
            idx = active[leave]
            it = torch.from_numpy(idx).to(dev)
            conv[idx], iters[idx] = done[leave], k
            resid[idx] = np.where(reject, hist.step_prev, step)[leave]
            rate[idx] = hist.rho[leave]
            lt = torch.from_numpy(leave).to(dev)
            plain = torch.from_numpy((done | (last & ~reject))[leave]).to(dev)[:, None]
            before = u0[it] if hist.g_prev is None else \
                torch.view_as_complex(hist.g_prev[lt].reshape(-1, m, 2))
            res = torch.where(plain, g[lt], before)
            out[it] = torch.where(torch.from_numpy(dead[leave]).to(dev)[:, None], u0[it], res)
            keep = ~leave
            if not keep.any():
                break
            kt = torch.from_numpy(keep).to(dev)
            active, step, reject = active[keep], step[keep], reject[keep]
            gr, fr, ca = gr[kt], fr[kt], _rows(ca, kt)
            hist.keep(keep)
        u_next = hist.advance(fr, gr, step, reject, cfg.tol)
        u = torch.view_as_complex(u_next.reshape(len(active), m, 2).contiguous())
    u = out / inv_a
    x = torch.stack([u.real, u.imag], dim=1)
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


def _planar(x: torch.Tensor) -> np.ndarray:
    """``(2, m)`` planar tensor -> ``(2m,)`` float64 numpy."""
    return x.detach().reshape(-1).cpu().numpy().astype(np.float64)


def sparse_newton(net, inv_base, coeffs, x0, cfg: Settings):
    """Damped Newton on ``F(x) = x - a - M i(x)`` on a :class:`.ports.SparseNetwork`, for the
    scenarios its fixed point failed on, started from ``x0``; returns what :func:`newton` does.

    The port-space step ``J dx = F``, ``J = I - M D``, is solved in node space, where the
    matrix is sparse: with ``y = Z C D dx`` it is ``(Y - C D C^T) y = C D F`` and
    ``dx = F + C^T y`` (one SciPy ``splu`` per step). The residual stays the port-space one
    (one solve with the factorised ``Y``; forming ``Y V`` instead loses digits to ``Y``'s
    conditioning), judged as in :func:`newton` (or converged when a full step is below
    ``tol``: what remains is rounding noise); the step is halved while ``|F|_2`` grows, and
    a scenario stops when 8 halvings do not reduce it. Stragglers are few, so this loops
    over them one scenario at a time; the batched path is the fixed point.
    """
    bsz, _, m = x0.shape
    x = x0.clone()
    conv = torch.zeros(bsz, dtype=torch.bool)
    resid = torch.full((bsz,), float("inf"), dtype=x0.dtype)
    iters = torch.zeros(bsz, dtype=torch.int64)
    c = net.incidence_planar()
    for b in range(bsz):  # stragglers only (see docstring)
        cb = _rows(coeffs, slice(b, b + 1))
        xb = x0[b:b + 1]
        f = xb - _apply(net, cb, xb)
        r = float(_step_size(f, inv_base))
        for k in range(1, cfg.newton_iter + 1):
            d = _jacobian_blocks(xb, cb)[0].cpu().numpy().astype(np.float64)  # (m, 2, 2)
            fp = _planar(f[0])
            df = np.concatenate([d[:, 0, 0] * fp[:m] + d[:, 0, 1] * fp[m:],
                                 d[:, 1, 0] * fp[:m] + d[:, 1, 1] * fp[m:]])
            y = spla.splu(net.node_jacobian(d)).solve(c @ df)
            dx = torch.as_tensor(fp + c.T @ y, dtype=x0.dtype).reshape(1, 2, m)
            if not bool(torch.isfinite(dx).all()):
                break
            # halve the step while the merit |F|_2 (scaled to p.u.) grows: the Newton step is a
            # descent direction for it, not for the largest component the stopping test uses
            # (8 halvings; none decreasing it: a local minimum of |F|, typically no solution
            # near, e.g. past the voltage-collapse nose: stop there)
            t, merit = 1.0, float(torch.linalg.vector_norm(f.reshape(1, -1) * inv_base))
            for _ in range(8):
                xn = xb - t * dx
                fn = xn - _apply(net, cb, xn)
                if float(torch.linalg.vector_norm(fn.reshape(1, -1) * inv_base)) < merit:
                    break
                t /= 2
            else:
                break
            xb, f, r = xn, fn, float(_step_size(fn, inv_base))
            iters[b] = k
            # a full step below tol leaves an error far below it (quadratic convergence): the
            # residual left is the rounding noise of evaluating it, which may exceed tol on
            # an ill-conditioned Y
            if r <= cfg.tol or (t == 1.0 and float(_step_size(dx, inv_base)) <= cfg.tol):
                conv[b] = True
                break
        x[b], resid[b] = xb[0], r
    return x, conv, iters, resid


def _sparse_adjoint_direct(net, d: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``J_x^T λ = g`` solved directly for each scenario ``(B, 2, m)`` (sparse network).

    With ``y = Z^T C λ`` it becomes ``(Y - C D C^T)^T y = C g`` (the Newton fallback's node
    Jacobian, transposed) and ``λ = g + D^T C^T y``: one sparse factorisation per scenario
    (the stragglers the adjoint fixed point failed on).
    """
    c = net.incidence_planar()
    out = torch.empty_like(g)
    for b in range(g.shape[0]):  # stragglers only
        db = d[b].cpu().numpy().astype(np.float64)  # (m, 2, 2)
        gb = _planar(g[b])
        y = spla.splu(net.node_jacobian(db)).solve(c @ gb, trans="T")
        z = c.T @ y
        m = db.shape[0]
        lam = gb + np.concatenate([db[:, 0, 0] * z[:m] + db[:, 1, 0] * z[m:],
                                   db[:, 0, 1] * z[:m] + db[:, 1, 1] * z[m:]])
        out[b] = torch.as_tensor(lam, dtype=g.dtype).reshape(2, m)
    return out


def _plain_adjoint(adjoint_map, g, scale, tol, cfg: Settings):
    """``λ <- adjoint_map(λ)`` from ``g`` until the estimated error is below ``tol`` (relative
    to ``scale`` ``(B,)``); returns ``λ`` and the per-scenario ``done`` flags."""
    bsz = g.shape[0]
    lam, prev = g, torch.zeros(bsz, dtype=g.dtype, device=g.device)
    done = torch.zeros(bsz, dtype=torch.bool, device=g.device)
    for _ in range(cfg.max_iter):
        new = adjoint_map(lam)
        step = (new - lam).reshape(bsz, -1).abs().amax(-1) / scale
        rho = (step / prev).nan_to_num(0.99).clamp(max=0.99)
        lam, prev = new, step
        done = (step * rho / (1 - rho) <= tol) | (step <= 50 * torch.finfo(g.dtype).eps)
        if bool(done.all()) or not bool(torch.isfinite(step).any()):
            break
    return lam, done


def _anderson_adjoint(adjoint_map, g, scale, tol, cfg: Settings):
    """:func:`_plain_adjoint` with the forward's Anderson acceleration, safeguard and
    stopping test (:func:`anderson_fixed_point`; the map is linear, so Anderson acts like
    restarted GMRES). Every scenario iterates until all are done; each keeps the iterate at
    which it first passed."""
    bsz, n = g.shape[0], g[0].numel()
    inv = torch.where(scale > torch.finfo(g.dtype).tiny, 1 / scale, 1.0)[:, None]
    hist = _AndersonHistory(bsz, cfg.depth, n, g.reshape(bsz, -1))
    lam, out = g, g.clone()
    done = np.zeros(bsz, dtype=bool)
    floor = 50 * torch.finfo(g.dtype).eps
    for _ in range(cfg.max_iter):
        gr = adjoint_map(lam).reshape(bsz, n) * inv  # in units of max |g|
        fr = gr - lam.reshape(bsz, n) * inv
        step = fr.abs().amax(-1).cpu().numpy().astype(np.float64)
        reject, now = hist.judge(step, tol, floor)
        new = now & ~done
        if new.any():
            nt = torch.from_numpy(new).to(g.device)
            out[nt] = (gr[nt] / inv[nt]).reshape(-1, *g.shape[1:])
            done = done | new
        if done.all() or not np.isfinite(step).any():
            break
        lam = (hist.advance(fr, gr, step, reject, tol) / inv).reshape(g.shape)
    return out, torch.from_numpy(done).to(g.device)


def adjoint(net, coeffs, x, g, cfg: Settings):
    """Solve ``J_x^T λ = g`` per scenario; returns ``μ = M^T λ``, ``(B, 2, m)`` (module doc).

    Fixed-point adjoint ``λ <- g + D^T M^T λ`` (Anderson-accelerated when the forward is),
    stopped like the forward iteration (estimated error below ``tol`` relative to
    ``max |g|``); a direct solve for scenarios it fails on:
    dense on the dense network, sparse in node space on the sparse one
    (:func:`_sparse_adjoint_direct`), so no gradient is left inexact.
    """
    bsz, _, m = x.shape
    d = _jacobian_blocks(x, coeffs)  # (B, m, 2, 2)
    d00, d01, d10, d11 = (d[..., i, j].contiguous() for i in (0, 1) for j in (0, 1))
    scale = g.reshape(bsz, -1).abs().amax(-1).clamp_min(torch.finfo(g.dtype).tiny)
    tol = max(cfg.tol, 50 * torch.finfo(g.dtype).eps)

    def adjoint_map(lam):  # g + D^T M^T lam, in place (no autograd in backward)
        mu = net.mh_apply(lam.reshape(len(lam), 2 * m)).reshape(len(lam), 2, m)
        mu0, mu1 = mu[:, 0], mu[:, 1]
        new = torch.empty_like(lam)
        torch.addcmul(g[:, 0], d00, mu0, out=new[:, 0]).addcmul_(d10, mu1)
        torch.addcmul(g[:, 1], d01, mu0, out=new[:, 1]).addcmul_(d11, mu1)
        return new

    if cfg.acceleration == "anderson":
        lam, done = _anderson_adjoint(adjoint_map, g, scale, tol, cfg)
    else:
        lam, done = _plain_adjoint(adjoint_map, g, scale, tol, cfg)
    if not bool(done.all()) and net.kind == "dense":  # stragglers (Newton-solved): direct solve
        idx = torch.nonzero(~done).squeeze(-1)
        jac = _dense_jacobian(net.mt, d[idx])
        sol = torch.linalg.solve(jac.transpose(-1, -2), g[idx].reshape(len(idx), 2 * m, 1))
        lam = lam.clone()
        lam[idx] = sol.reshape(len(idx), 2, m)
    elif not bool(done.all()):  # sparse network: node-space direct solve for the stragglers
        idx = torch.nonzero(~done).squeeze(-1)
        lam = lam.clone()
        lam[idx] = _sparse_adjoint_direct(net, d[idx], g[idx])
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
        solver = anderson_fixed_point if cfg.acceleration == "anderson" else fixed_point
        x, conv, iters, resid, rate = solver(net, inv_base, coeffs, x0, cfg)
        if cfg.newton_iter > 0 and not bool(conv.all()):
            idx = torch.nonzero(~conv).squeeze(-1)
            if net.kind == "dense":  # from the no-load voltages, as always
                xn, cn, itn, rn = newton(net, inv_base, _rows(coeffs, idx), x0[idx], cfg)
            else:  # from the fixed point's last iterate (no-load where it diverged)
                xn, cn, itn, rn = sparse_newton(net, inv_base, _rows(coeffs, idx), x[idx], cfg)
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
