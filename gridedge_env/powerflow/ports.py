"""Ports, and the network seen from them, in a dense and a sparse form.

A port is a node pair ``(a, b)`` (``b = -1`` is ground) at which a load term or a wye injection
draws current. All non-linearity of the power flow sits at the ports, so the fixed point runs in
port space (``m`` complex unknowns):

    V = w + Z C i,        u = C^T V = a + M i,        M = C^T Z C,  a = C^T w,

with ``Z = Y^-1`` (source Thevenin admittance included, loads excluded), ``w = Z i_source`` the
no-load voltages, ``C`` the ``(n, m)`` port incidence and ``i`` the currents the ports inject.

Two interchangeable operators apply ``M``, ``M^H`` (the real transpose of ``M`` in planar form,
used by the adjoint) and ``V = w + Z C i``:

- :class:`DenseNetwork` (any device): ``M`` and ``Z C`` as dense real planar matrices, one GEMM each.
  Best up to a few thousand nodes and ports.
- :class:`SparseNetwork` (CPU): a SciPy sparse LU of ``Y``, one batched triangular solve per
  application. For feeders of ~10,000 nodes, where ``M`` and ``Z C`` would not fit or pay. It
  also gives the node-space Jacobian ``Y - C D C^T`` (real planar, sparse) that its Newton
  fallback and direct adjoint factorise, one straggler scenario at a time.

Planar layout: complex ``(B, m)`` tensors are real ``(B, 2, m)`` (axis 1: re, im), flattened to
``(B, 2m)`` for matrix products, which act on row vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ..network.feeder import Feeder

#: ``backend="auto"`` picks the sparse operator above this many nodes or ports (CPU only).
DENSE_LIMIT = 3000
#: Right-hand sides per SuperLU solve of :class:`SparseNetwork`: a training batch of 32 days x 48
#: steps at once is 1,536 columns of 8,531 complex node values (210 MB), far out of cache, and
#: SuperLU sweeps every column through each supernode; solving in blocks keeps a block's
#: columns in cache through the whole triangular sweep (measured: ``docs/powerflow.md``).
SOLVE_BLOCK = 32


@dataclass(frozen=True)
class Ports:
    """Port structure (numpy). ``m`` ports, ``n_terms`` load terms, ``k`` injection nodes."""

    port_a: np.ndarray  # (m,) node index of the port's first terminal
    port_b: np.ndarray  # (m,) node index of the second terminal, -1 = ground
    term_port: np.ndarray  # (n_terms,) port of each feeder load term
    injection_nodes: np.ndarray  # (k,) nodes that accept wye injections s_kva
    injection_port: np.ndarray  # (k,) their ports

    @property
    def m(self) -> int:
        return len(self.port_a)

    def incidence(self, n: int) -> sp.csc_matrix:
        """``C``, ``(n, m)``: +1 at each port's first node, -1 at its second (if not ground)."""
        m = self.m
        grounded = self.port_b < 0
        rows = np.concatenate([self.port_a, self.port_b[~grounded]])
        cols = np.concatenate([np.arange(m), np.flatnonzero(~grounded)])
        vals = np.concatenate([np.ones(m), -np.ones(int((~grounded).sum()))])
        return sp.csc_matrix((vals, (rows, cols)), shape=(n, m))


def build_ports(feeder: Feeder, injection_nodes) -> Ports:
    """One port per distinct terminal pair of the load terms and the injection nodes."""
    injection_nodes = np.asarray(injection_nodes, dtype=np.int64).reshape(-1)
    pairs: dict[tuple[int, int], int] = {}

    def port(a, b) -> int:
        return pairs.setdefault((int(a), int(b)), len(pairs))

    term_port = np.array([port(a, b) for a, b in zip(feeder.term_a, feeder.term_b, strict=True)],
                         dtype=np.int64)
    inj_port = np.array([port(k, -1) for k in injection_nodes], dtype=np.int64)
    ab = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    return Ports(ab[:, 0], ab[:, 1], term_port, injection_nodes, inj_port)


def line_rows(feeder: Feeder) -> sp.csr_matrix:
    """``(r, n)`` sparse map from node voltages to each line's terminal-1 phase currents."""
    line_of_row, row = feeder.line_phase_rows()
    rows, cols, vals = [], [], []
    for r, (li, k) in enumerate(zip(line_of_row, row, strict=True)):
        el = feeder.elements[feeder.lines[li]]
        keep = el.conductor_nodes >= 0
        rows.append(np.full(int(keep.sum()), r))
        cols.append(el.conductor_nodes[keep])
        vals.append(el.y_prim[k, keep])
    if not rows:
        return sp.csr_matrix((0, feeder.n_nodes), dtype=np.complex128)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(row), feeder.n_nodes))


def _planar_matrix(a: np.ndarray) -> np.ndarray:
    """Real ``(2p, 2q)`` matrix acting on planar row vectors as ``x @ A^T`` does on complex ones."""
    ar, ai = a.real.T, a.imag.T
    return np.block([[ar, ai], [-ai, ar]])


def _conj_interleaved(a: np.ndarray) -> np.ndarray:
    """Real ``(2q, 2p)`` matrix taking interleaved ``[re g_0, im g_0, ...]`` row vectors to the
    interleaved ``A conj(g)`` (``a``: complex ``(p, q)``)."""
    ar, ai = a.real.T, a.imag.T  # (q, p)
    out = np.empty((2 * a.shape[1], 2 * a.shape[0]))
    out[0::2, 0::2], out[0::2, 1::2] = ar, ai  # re g contributes A_r re g + j A_i re g
    out[1::2, 0::2], out[1::2, 1::2] = ai, -ar  # conj: -j im g contributes A_i im g - j A_r im g
    return out


class DenseNetwork:
    """Dense port-space operator (see module docstring); tensors on ``device`` in ``dtype``."""

    kind = "dense"

    def __init__(self, feeder: Feeder, ports: Ports, device, dtype):
        n = feeder.n_nodes
        c = ports.incidence(n).toarray()
        y = feeder.y_bus()
        sol = np.linalg.solve(y, np.concatenate([feeder.source_current_a()[:, None], c], axis=1))
        w, zc = sol[:, 0], sol[:, 1:]
        a = c.T @ w
        yb = line_rows(feeder)

        def t(x):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)

        self.a_v = a
        self.a = t(np.concatenate([a.real, a.imag])[None])  # (1, 2m)
        mpp = c.T @ zc
        self.mt = t(_planar_matrix(mpp))  # (2m, 2m)
        # the iteration in p.u. of |a| (see implicit.fixed_point): u~ <- a/|a| - D^-1 M conj(g)
        a_pu = a / np.abs(a)
        self._a_il = t(np.stack([a_pu.real, a_pu.imag], axis=1).reshape(1, -1))  # (1, 2m)
        self._mc_il = t(_conj_interleaved(-mpp / np.abs(a)[:, None]))  # (2m, 2m), interleaved
        # g -> V = w - Z C conj(g) and g -> I_line = Yb w - Yb Z C conj(g), interleaved
        self._w_il = t(np.stack([w.real, w.imag], axis=1).reshape(1, -1))  # (1, 2n)
        self._zc_il = t(_conj_interleaved(-zc))  # (2m, 2n)
        line_0 = yb @ w
        self._line_0_il = t(np.stack([line_0.real, line_0.imag], axis=1).reshape(1, -1))
        self._line_k_il = t(_conj_interleaved(-(yb @ zc)))  # (2m, 2r)
        self.w_v, self.n, self.r = w, n, yb.shape[0]

    def m_apply(self, i_flat: torch.Tensor) -> torch.Tensor:
        """``a + M i`` for planar ``(B, 2m)``."""
        return torch.addmm(self.a, i_flat, self.mt)

    def mh_apply(self, lam_flat: torch.Tensor) -> torch.Tensor:
        """``M^H λ`` (the real transpose of ``M``) for planar ``(B, 2m)``."""
        return lam_flat @ self.mt.T

    def fixed_point_map(self, g: torch.Tensor) -> torch.Tensor:
        """``(a - M conj(g)) / |a|`` for complex ``(B, m)``: one GEMM on the interleaved real
        view (the fixed point's iterate in p.u. of the no-load port voltages)."""
        b, m = g.shape
        out = torch.addmm(self._a_il, torch.view_as_real(g).reshape(b, 2 * m), self._mc_il)
        return torch.view_as_complex(out.reshape(b, m, 2))

    def node_voltages(self, g: torch.Tensor) -> torch.Tensor:
        """Complex node voltages ``(B, n)`` for port loads ``g = conj(-i)`` ``(B, m)``;
        differentiable."""
        b, m = g.shape
        out = torch.addmm(self._w_il, torch.view_as_real(g).reshape(b, 2 * m), self._zc_il)
        return torch.view_as_complex(out.reshape(b, self.n, 2))

    def line_currents(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Complex terminal-1 line-phase currents ``(B, r)`` (``v``: unused here)."""
        b, m = g.shape
        out = torch.addmm(self._line_0_il, torch.view_as_real(g).reshape(b, 2 * m),
                          self._line_k_il)
        return torch.view_as_complex(out.reshape(b, self.r, 2))


class _SparseLinear(torch.autograd.Function):
    """``y = solve(x)`` for a fixed linear map given as numpy callables (forward and adjoint)."""

    @staticmethod
    def forward(ctx, x, fwd, adj):
        ctx.adj = adj
        return fwd(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.adj(g), None, None


class SparseNetwork:
    """Sparse port-space operator on the CPU: a SciPy LU of ``Y`` shared by all scenarios."""

    kind = "sparse"

    def __init__(self, feeder: Feeder, ports: Ports, device, dtype):
        if torch.device(device).type != "cpu":
            raise ValueError("the sparse backend runs on the CPU; use backend='dense' on "
                             f"{device} (or a smaller feeder)")
        self.n, self.dtype = feeder.n_nodes, dtype
        self.c = ports.incidence(self.n)
        y = feeder.y_bus_sparse()
        self.lu = spla.splu(y)
        # real planar forms for the Newton fallback and the direct adjoint (node space)
        self._y_real = sp.bmat([[y.real, -y.imag], [y.imag, y.real]], format="csc")
        self._c_real = sp.block_diag([self.c, self.c], format="csc")  # (2n, 2m)
        w = self.lu.solve(feeder.source_current_a())
        a = self.c.T @ w
        self.a_v, self.w_v = a, w
        self.a = torch.as_tensor(np.concatenate([a.real, a.imag])[None], dtype=dtype)
        self._inv_abs_a = torch.as_tensor(1 / np.abs(a), dtype=dtype)
        self._w = torch.as_tensor(np.concatenate([w.real, w.imag])[None], dtype=dtype)
        self._yb = line_rows(feeder)
        self.r = self._yb.shape[0]

    # numpy helpers: planar (B, 2q) <-> complex (q, B)
    @staticmethod
    def _cols(x: torch.Tensor) -> np.ndarray:
        z = x.detach().numpy().astype(np.float64)
        q = z.shape[1] // 2
        return (z[:, :q] + 1j * z[:, q:]).T

    def _rows(self, z: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.concatenate([z.real.T, z.imag.T], axis=1), dtype=self.dtype)

    def _by_blocks(self, f, z: np.ndarray) -> np.ndarray:
        """``f`` (a chain of sparse products and one LU solve) applied to the columns of ``z``
        ``(q, B)`` in blocks of :data:`SOLVE_BLOCK`: the same numbers, computed in cache. The
        loop runs over column blocks (48 for a 32-day batch), each one batched solve."""
        b = z.shape[1]
        if b <= SOLVE_BLOCK:
            return f(z)
        return np.concatenate([f(z[:, j:j + SOLVE_BLOCK]) for j in range(0, b, SOLVE_BLOCK)],
                              axis=1)

    def _zc(self, i_flat, trans="N"):
        """``C^T Z C i`` (``trans="N"``) or ``C^T Z^H C λ`` (``"H"``), planar ``(B, 2m)``."""
        return self._rows(self._by_blocks(
            lambda z: self.c.T @ self.lu.solve(self.c @ z, trans=trans), self._cols(i_flat)))

    def m_apply(self, i_flat):
        return self.a + self._zc(i_flat)

    def fixed_point_map(self, g: torch.Tensor) -> torch.Tensor:
        """``(a - M conj(g)) / |a|`` for complex ``(B, m)`` (via the planar ``a + M i``,
        ``i = -conj g``)."""
        b, m = g.shape
        out = self.m_apply(torch.cat([-g.real, g.imag], dim=1)).reshape(b, 2, m)
        return torch.complex(out[:, 0], out[:, 1]) * self._inv_abs_a

    def mh_apply(self, lam_flat):
        return self._zc(lam_flat, "H")

    def node_voltages(self, g: torch.Tensor) -> torch.Tensor:
        """Complex node voltages ``(B, n)`` for port loads ``g = conj(-i)``; differentiable."""
        b = g.shape[0]

        def fwd(x):
            return self._rows(self._by_blocks(lambda z: self.lu.solve(self.c @ z), self._cols(x)))

        def adj(gr):
            return self._rows(self._by_blocks(
                lambda z: self.c.T @ self.lu.solve(z, trans="H"), self._cols(gr)))

        i_flat = torch.cat([-g.real, g.imag], dim=1)
        v = (self._w + _SparseLinear.apply(i_flat, fwd, adj)).reshape(b, 2, self.n)
        return torch.complex(v[:, 0], v[:, 1])

    # node space, one scenario at a time (Newton fallback and direct adjoint: stragglers only)
    def node_jacobian(self, d: np.ndarray) -> sp.csc_matrix:
        """Real ``(2n, 2n)`` ``Y - C D C^T``, the Jacobian of the node residual
        ``Y V - C i(C^T V) - i_source`` (planar columns ``[Re V, Im V]``), for the port-current
        derivative blocks ``d = ∂i/∂u`` ``(m, 2, 2)`` (row: re/im of i, column: re/im of u)."""
        m = d.shape[0]
        k = np.arange(m)
        rows = np.concatenate([k, k, k + m, k + m])
        cols = np.concatenate([k, k + m, k, k + m])
        vals = np.concatenate([d[:, 0, 0], d[:, 0, 1], d[:, 1, 0], d[:, 1, 1]])
        dm = sp.csc_matrix((vals, (rows, cols)), shape=(2 * m, 2 * m))
        return (self._y_real - self._c_real @ dm @ self._c_real.T).tocsc()

    def incidence_planar(self) -> sp.csc_matrix:
        """``C`` in real planar form, ``(2n, 2m)``."""
        return self._c_real

    def line_currents(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Complex terminal-1 line-phase currents ``(B, r)`` from the node voltages ``v``."""
        b = v.shape[0]

        def fwd(x):
            return self._rows(self._yb @ self._cols(x))

        def adj(gr):
            return self._rows(self._yb.conj().T @ self._cols(gr))

        out = _SparseLinear.apply(torch.cat([v.real, v.imag], dim=1), fwd, adj)
        out = out.reshape(b, 2, self.r)
        return torch.complex(out[:, 0], out[:, 1])


def make_network(feeder: Feeder, ports: Ports, device, dtype, backend: str = "auto"):
    """The operator for ``backend`` (``"dense"``, ``"sparse"`` or ``"auto"``)."""
    if backend == "auto":
        big = max(feeder.n_nodes, ports.m) > DENSE_LIMIT
        backend = "sparse" if big and torch.device(device).type == "cpu" else "dense"
    if backend == "dense":
        return DenseNetwork(feeder, ports, device, dtype)
    if backend == "sparse":
        return SparseNetwork(feeder, ports, device, dtype)
    raise ValueError(f"backend must be 'auto', 'dense' or 'sparse', got {backend!r}")
