"""Batched, differentiable three-phase power flow: :class:`PowerFlow` and its result.

The formulation and its justification are in ``docs/powerflow.md``; the iteration and the implicit
gradient are in :mod:`.implicit`, the constant network matrices in :mod:`.ports`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..compiling import compile_own
from ..network.feeder import Feeder
from ..network.grounding import why_floating
from .implicit import PortSolve, Settings, conj_load, residual_jacobian
from .ports import build_ports, make_network
from .unrolled import UnrolledNetwork, iterate, line_outputs, node_outputs


class PowerFlowError(RuntimeError):
    """Raised (with ``on_nonconvergence="raise"``) when scenarios fail to converge."""

    def __init__(self, message: str, failed: torch.Tensor):
        super().__init__(message)
        self.failed = failed


@dataclass
class PowerFlowResult:
    """Solution of a batch of power flows; ``...`` is the batch shape of the inputs.

    v: ``(..., n_nodes)`` complex node voltages, V (node order = ``feeder.nodes``).
    v_pu: ``(..., n_nodes)`` voltage magnitudes in p.u. of each node's line-to-neutral base.
    i_line_a: ``(..., n_line_phases)`` complex terminal-1 phase currents of every line, A
        (order = :attr:`PowerFlow.line_phase_names`).
    line_loading: ``(..., n_line_phases)`` ``|i_line_a| / normamps`` (0 where no rating).
    s_sub_kva: ``(...,)`` complex power the source delivers into the feeder, kVA.
    s_load_kva: ``(...,)`` complex power drawn by all loads and injections at the solution, kVA.
    losses_kva: ``(...,)`` complex losses of the power-delivery elements (capacitors count as
        negative reactive losses, as in OpenDSS), kVA.
    converged: ``(...,)`` bool; iterations: ``(...,)`` fixed-point (+ Newton) iterations;
    residual: ``(...,)`` last step (fixed point) or residual (Newton), p.u. of no-load voltage.
    contraction: ``(...,)`` the fixed point's observed contraction rate, 1: the ratio
        ``step_k / step_(k-1)`` of its last two steps at the iteration ``k`` its result was
        recorded (``step`` = largest change of a port-voltage component, p.u. of the no-load
        port voltage), the rate its stopping test used, unclamped; an estimate of the spectral
        radius of the fixed-point map's derivative (:meth:`PowerFlow.jacobian`). NaN where no
        ratio exists (stopped at the first iteration); for scenarios Newton finished, the rate
        at which the fixed point gave up (typically ``>= 1``). No gradient
        (``docs/powerflow.md``, conditioning).

    Everything but ``v``, ``v_pu`` and the convergence fields is computed on first access (the line
    currents are one more matrix product), so a caller that needs only ``v_pu`` pays only for it.
    """

    v_pu: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    contraction: torch.Tensor
    v: torch.Tensor = field(repr=False, default=None)
    _line_currents: object = field(repr=False, default=None)
    _powers: object = field(repr=False, default=None)

    @cached_property
    def i_line_a(self) -> torch.Tensor:
        return self._line_currents()[0]

    @cached_property
    def line_loading(self) -> torch.Tensor:
        return self._line_currents()[1]

    @cached_property
    def s_sub_kva(self) -> torch.Tensor:
        return self._powers()[0]

    @cached_property
    def s_load_kva(self) -> torch.Tensor:
        return self._powers()[1]

    @cached_property
    def losses_kva(self) -> torch.Tensor:
        return self.s_sub_kva - self.s_load_kva


def magnitude(z: torch.Tensor) -> torch.Tensor:
    """``|z|`` of a complex tensor: the 2-norm of its (re, im) view, ~3x faster than
    ``z.abs()`` (whose hypot guards against overflow no voltage or current needs) and with
    zero gradient at 0."""
    return torch.linalg.vector_norm(torch.view_as_real(z), dim=-1)


def _cplx(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


class PowerFlow:
    """Batched three-phase unbalanced power flow on one feeder, differentiable by implicit gradient.

    Parameters
    ----------
    feeder: the network (:func:`gridedge_env.load_feeder`).
    device, dtype: where and in which real precision to solve (``torch.float64`` default,
        ``torch.float32`` for speed at ~1e-6 p.u. accuracy).
    injection_nodes: node indices (or ``"bus.phase"`` names) that may carry wye injections
        ``s_kva``; ``"all"`` (default) allows every node with a path to ground. Fewer nodes make
        solves cheaper, since the iteration runs over the loads' and these nodes' ports only.
        A floating node (``feeder.floating_nodes()``: an ungrounded section behind delta or
        ungrounded-wye windings) is a ``ValueError`` naming it: an injection there has no
        return path.
    load_model: ``"pq"`` (default) treats every feeder load as constant power; ``"zip"`` uses each
        load's own OpenDSS model (constant power / current / impedance parts). Injections ``s_kva``
        are always constant power.
    tol: convergence tolerance on the largest per-port voltage step, p.u.
    max_iter: fixed-point iterations before a scenario is handed to Newton.
    newton_iter: Newton iterations for scenarios the fixed point fails on (0 disables).
    on_nonconvergence: ``"raise"`` (default) raises :class:`PowerFlowError` naming the failed
        scenarios; ``"flag"`` returns them with ``converged=False``, their last finite iterate (or
        the no-load voltages) and zero gradient.
    compile: start the fixed point with ``settings.unroll`` iterations (5 in float64, 4 in
        float32: enough for ~all scenarios at the default tolerances) compiled by
        ``torch.compile`` into one block (constant-power ports on the dense backend; otherwise
        ignored): every scenario then runs at least that many iterations, at a third of the
        eager cost. Same results to rounding; seconds of compilation on the first solve.
    backend: ``"dense"`` (port matrices, any device), ``"sparse"`` (SciPy sparse LU, CPU, for
        feeders of thousands of nodes; its Newton fallback and direct adjoint factorise the
        sparse node-space Jacobian) or ``"auto"`` (default: sparse on the CPU above 3,000 nodes
        or ports).
    acceleration: ``"auto"`` (default: Anderson on the sparse backend, the plain fixed point on
        the dense one, whose results and iteration counts it leaves as they were),
        ``"anderson"`` (type-II Anderson acceleration of depth 5 with a safeguard, either
        backend) or ``"none"`` (the plain fixed point). See ``docs/powerflow.md``, convergence
        on large feeders.
    """

    def __init__(self, feeder: Feeder, device="cpu", dtype=torch.float64, *,
                 injection_nodes="all", load_model: str = "pq", tol: float | None = None,
                 max_iter: int = 60, newton_iter: int = 20, on_nonconvergence: str = "raise",
                 backend: str = "auto", compile: bool = False, acceleration: str = "auto"):
        if dtype not in (torch.float64, torch.float32):
            raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if load_model not in ("pq", "zip"):
            raise ValueError(f"load_model must be 'pq' or 'zip', got {load_model!r}")
        if acceleration not in ("auto", "anderson", "none"):
            raise ValueError("acceleration must be 'auto', 'anderson' or 'none', got "
                             f"{acceleration!r}")
        if on_nonconvergence not in ("raise", "flag"):
            raise ValueError(f"on_nonconvergence must be 'raise' or 'flag', got {on_nonconvergence!r}")
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # compare equal to tensors' cuda:N
            device = torch.device("cuda", torch.cuda.current_device())
        self.feeder, self.device, self.dtype = feeder, device, dtype
        self.load_model, self.on_nonconvergence = load_model, on_nonconvergence
        tol = (1e-10 if dtype == torch.float64 else 1e-6) if tol is None else tol
        # compile: the first fixed-point iterations as one torch.compile'd block (constant-power
        # ports, dense backend), fusing each iteration's element-wise work around its GEMM
        block = compile_own(iterate) if compile else None
        self.settings = Settings(tol, max_iter, newton_iter, block,
                                 unroll=5 if dtype == torch.float64 else 4)
        self.injection_nodes = self._node_indices(injection_nodes)
        self.ports = build_ports(feeder, self.injection_nodes)
        self.network = make_network(feeder, self.ports, self.device, dtype, backend)
        if acceleration == "auto":
            acceleration = "anderson" if self.network.kind == "sparse" else "none"
        self.settings.acceleration = acceleration
        # ... and the outputs (node voltages, line currents) as two fused real stages
        self._compiled_outputs = (compile_own(node_outputs),
                                   compile_own(line_outputs)) \
            if compile and self.network.kind == "dense" else None
        self._to_tensors()

    # ------------------------------------------------------------------ setup
    def _node_indices(self, nodes) -> np.ndarray:
        floating = self.feeder.floating_nodes()
        if isinstance(nodes, str) and nodes == "all":
            return np.setdiff1d(np.arange(self.feeder.n_nodes), floating)
        out = []
        for k in nodes:
            if isinstance(k, str):
                out.append(self.feeder.node_index(k))
            elif not 0 <= int(k) < self.feeder.n_nodes:
                raise IndexError(f"injection node index {k} out of range [0, {self.feeder.n_nodes})")
            else:
                out.append(int(k))
        out = np.unique(np.asarray(out, dtype=np.int64))
        bad = np.intersect1d(out, floating)
        if len(bad):
            raise ValueError(f"injection_nodes: {why_floating(self.feeder, int(bad[0]))}")
        return out

    def _not_injection(self, node: int) -> ValueError:
        """The error for ``s_kva`` at ``node``, which is not an injection node."""
        if node in self.feeder.floating_nodes():
            return ValueError(f"s_kva is non-zero at {why_floating(self.feeder, node)}")
        return ValueError(f"s_kva is non-zero at node {self.feeder.nodes[node]!r}, which is not "
                          "one of this PowerFlow's injection_nodes")

    def _to_tensors(self) -> None:
        p, f = self.ports, self.feeder
        cd, rd, dev = _cplx(self.dtype), self.dtype, self.device

        def t(x, dtype=cd):
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)

        a_v = self.network.a_v
        self._x0 = t(np.stack([a_v.real, a_v.imag])[None], rd)  # (1, 2, m) no-load start
        self._inv_base = t(np.tile(1.0 / np.abs(a_v), 2)[None], rd)
        self._base_v = t(f.base_kv_ln * 1e3, rd)
        line_of_row, _ = f.line_phase_rows()
        amps = f.line_normamps[line_of_row]
        self._inv_amps = t(np.where(amps > 0, 1.0 / np.where(amps > 0, amps, 1.0), 0.0), rd)
        self._inj_nodes = torch.as_tensor(p.injection_nodes, device=dev)
        self._inj_port = torch.as_tensor(p.injection_port, device=dev)
        port_of_node = np.full(f.n_nodes, -1, dtype=np.int64)
        port_of_node[p.injection_nodes] = p.injection_port
        self._port_of_node = torch.as_tensor(port_of_node, device=dev)
        self._at_cache = None
        # ZIP coefficient of every load term (s_P in VA, c_I in A, y_Z in S), planar, and their
        # per-port sums (the fast path when every load shares one scale per scenario).
        zip_va = f.term_zip_kva * 1e3
        if self.load_model == "pq":
            zip_va = np.concatenate([zip_va.sum(1, keepdims=True), 0 * zip_va[:, 1:]], axis=1)
        vn = f.term_vnom_v[:, None]
        coef = (zip_va / np.concatenate([np.ones_like(vn), vn, vn**2], axis=1)).T  # (3, terms)
        per_port = np.zeros((3, p.m), dtype=np.complex128)
        np.add.at(per_port, (slice(None), p.term_port), coef)
        self._term_coef = t(np.stack([coef.real, coef.imag], axis=1), rd)  # (3, 2, terms)
        self._port_coef = t(np.stack([per_port.real, per_port.imag], axis=1), rd)  # (3, 2, m)
        self._term_port = torch.as_tensor(p.term_port, device=dev)
        self._term_load = torch.as_tensor(f.term_load, device=dev)
        self._has_zi = self.load_model == "zip" and bool(np.any(f.term_zip_kva[:, 1:] != 0))
        src = f.source
        k = len(f.source_emf_v)
        self._src_nodes = torch.as_tensor(src.conductor_nodes[:k], device=dev)
        ys = src.y_prim[:k, :k]
        self._src_y = t(ys)
        self._src_emf = t(f.source_emf_v)
        line_names = f.line_names
        self.line_phase_names = tuple(
            f"{line_names[li]}.{f.nodes[f.elements[f.lines[li]].conductor_nodes[r]].split('.')[1]}"
            for li, r in zip(*f.line_phase_rows(), strict=True)
        )

    @property
    def n_ports(self) -> int:
        return self.ports.m

    def unrolled_network(self):
        """The constants of :func:`.unrolled.unrolled_solve` (dense backend; None otherwise).
        It solves constant-power port loads only: the feeder's own loads must be off or PQ
        and added by the caller."""
        net = self.network
        if net.kind != "dense":
            return None
        if getattr(self, "_unrolled_net", None) is not None:
            return self._unrolled_net
        m = self.n_ports
        self._unrolled_net = UnrolledNetwork(
            inv_a=self._inv_base[0, :m], a_pu_il=net._a_il, mc_il=net._mc_il, w_il=net._w_il,
            zc_il=net._zc_il, inv_base_v=1.0 / self._base_v, line_0_il=net._line_0_il,
            line_k_il=net._line_k_il, inv_amps=self._inv_amps,
            port_a=torch.as_tensor(self.ports.port_a, device=self.device),
            port_b=torch.as_tensor(self.ports.port_b, device=self.device))
        return self._unrolled_net

    def ports_of(self, nodes) -> torch.Tensor:
        """Port index ``(k,)`` of each of ``nodes`` (which must be injection nodes)."""
        return self._at_ports(torch.as_tensor(nodes, device=self.device))

    # ------------------------------------------------------------------ inputs
    def _at_ports(self, at) -> torch.Tensor:
        """Ports of the nodes ``at`` ``(k,)``, checked to be injection nodes (cached per tensor)."""
        if self._at_cache is not None and self._at_cache[0] is at:
            return self._at_cache[1]
        nodes = torch.as_tensor(at, device=self.device)
        if nodes.ndim != 1 or nodes.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"at must be a 1-D tensor of node indices, got {tuple(nodes.shape)} "
                             f"{nodes.dtype}")
        n = self.feeder.n_nodes
        if len(nodes) and not (0 <= int(nodes.min()) and int(nodes.max()) < n):
            raise IndexError(f"at has node indices outside [0, {n})")
        ports = self._port_of_node[nodes]
        if bool((ports < 0).any()):
            bad = int(nodes[ports < 0][0])
            if bad in self.feeder.floating_nodes():
                raise ValueError(f"at names {why_floating(self.feeder, bad)}")
            raise ValueError(f"at names node {self.feeder.nodes[bad]!r}, which is not one of this "
                             "PowerFlow's injection_nodes")
        if isinstance(at, torch.Tensor):
            self._at_cache = (at, ports)
        return ports

    def _check(self, s_kva, load_scale, values: bool = True, at=None):
        f, cd = self.feeder, _cplx(self.dtype)
        if s_kva is None:
            return None, *self._check_scale(load_scale, ())
        if not isinstance(s_kva, torch.Tensor):
            raise TypeError(f"s_kva must be a complex torch.Tensor, got {type(s_kva).__name__}")
        if s_kva.dtype != cd:
            raise TypeError(f"s_kva must have dtype {cd} for a {self.dtype} PowerFlow "
                            f"(complex kW + j kvar), got {s_kva.dtype}")
        if s_kva.device != self.device:
            raise ValueError(f"s_kva is on {s_kva.device}, the PowerFlow on {self.device}")
        width = f.n_nodes if at is None else len(at)
        if s_kva.ndim == 0 or s_kva.shape[-1] != width:
            what = (f"one entry per node of {f.name!r}" if at is None
                    else "one entry per node of `at`")
            raise ValueError(f"s_kva must have shape (..., {width}) ({what}), "
                             f"got {tuple(s_kva.shape)}")
        bad = ~torch.isfinite(torch.view_as_real(s_kva)).all(-1) if values else None
        if values and bool(bad.any()):
            where = torch.nonzero(bad)[0].tolist()
            node = where[-1] if at is None else int(at[where[-1]])
            raise ValueError(f"s_kva has a NaN/inf entry at index {tuple(where)} "
                             f"(node {f.nodes[node]!r})")
        if values and at is None and len(self.injection_nodes) < f.n_nodes:
            outside = torch.ones(f.n_nodes, dtype=torch.bool, device=self.device)
            outside[self._inj_nodes] = False
            nz = (s_kva[..., outside] != 0).reshape(-1, int(outside.sum())).any(0)
            if bool(nz.any()):
                raise self._not_injection(int(torch.nonzero(outside)[int(torch.nonzero(nz)[0])]))
        scale, batch = self._check_scale(load_scale, s_kva.shape[:-1])
        return s_kva.expand(*batch, width), scale, batch

    def _check_scale(self, load_scale, s_batch):
        n_loads = self.feeder.n_loads
        if isinstance(load_scale, torch.Tensor) and load_scale.device != self.device:
            raise ValueError(f"load_scale is on {load_scale.device}, the PowerFlow on {self.device}")
        if isinstance(load_scale, (int, float)):  # a plain number: checked without a kernel
            if not math.isfinite(load_scale):
                raise ValueError(f"load_scale is {load_scale}")
            scale = torch.full((), float(load_scale), dtype=self.dtype, device=self.device)
        else:
            scale = torch.as_tensor(load_scale, dtype=self.dtype, device=self.device)
            if not bool(torch.isfinite(scale).all()):
                raise ValueError("load_scale has NaN/inf entries")
        if scale.ndim == 0:
            scale = scale.reshape(1)
        try:
            batch = torch.broadcast_shapes(tuple(s_batch), scale.shape[:-1])
            scale = scale.expand(*batch, n_loads)
        except RuntimeError:
            raise ValueError(f"load_scale of shape {tuple(scale.shape)} does not broadcast to "
                             f"(batch..., n_loads={n_loads}) with s_kva batch shape "
                             f"{tuple(s_batch)}") from None
        return scale, batch

    def _coefficients(self, s_kva, scale, ports=None, no_loads: bool = False):
        """Planar ZIP coefficients per port, ``(B, 2, m)`` each: s_P (VA), c_I (A), y_Z (S);
        c_I and y_Z are None unless some load has constant-current/impedance parts.
        ``s_kva``: ``(B, n_nodes)``, or ``(B, k)`` injected at ``ports`` ``(k,)``;
        ``no_loads``: the feeder's loads are scaled by a literal 0 (skip them)."""
        if no_loads and s_kva is not None and ports is not None:  # the environment's path
            inj = s_kva.new_zeros(s_kva.shape[0], self.n_ports).index_add(1, ports, s_kva)
            return torch.stack([inj.real, inj.imag], dim=1) * 1e3, None, None
        s_p = self._scaled(scale, 0)
        if s_kva is not None and ports is not None:  # complex index_add: the fast one
            inj = s_kva.new_zeros(s_kva.shape[0], self.n_ports).index_add(1, ports, s_kva)
            s_p = s_p + torch.stack([inj.real, inj.imag], dim=1) * 1e3
        elif s_kva is not None and len(self._inj_nodes):
            inj = torch.stack([s_kva.real, s_kva.imag], dim=1)[:, :, self._inj_nodes] * 1e3
            s_p = s_p.index_add(2, self._inj_port, inj)
        if not self._has_zi:
            return s_p, None, None
        return s_p, self._scaled(scale, 1), self._scaled(scale, 2)

    def _scaled(self, scale, part: int) -> torch.Tensor:
        """ZIP part ``part`` of the feeder's loads at ``scale`` ``(B, n_loads)``: ``(B, 2, m)``."""
        if scale.stride(-1) == 0:  # expanded from (B, 1): one factor for every load
            return scale[:, :1, None] * self._port_coef[part]
        term = scale[:, None, self._term_load] * self._term_coef[part]  # (B, 2, terms)
        out = torch.zeros(scale.shape[0], 2, self.n_ports, dtype=term.dtype, device=term.device)
        return out.index_add(2, self._term_port, term)

    # ------------------------------------------------------------------ solve
    def solve(self, s_kva: torch.Tensor | None = None, load_scale=1.0, *, at=None,
              check: bool = True) -> PowerFlowResult:
        """Solve a batch of power flows.

        s_kva: ``(..., n_nodes)`` complex power (kW + j kvar) consumed by wye injections at each
            node on top of the feeder's loads; negative real part = generation. ``None``: zero.
        load_scale: scale of the feeder's own loads, broadcastable to ``(..., n_loads)``
            (a float, ``(B, 1)`` per scenario, or ``(B, n_loads)`` per load); 0 removes them.
            A feeder's generators, PV systems and storage are load terms too
            (``feeder.load_params[i]["kind"]``) and scale alike: hold them at 1 per load to
            keep their snapshot output.
        at: ``(k,)`` node indices, each one of ``injection_nodes``: ``s_kva`` is then
            ``(..., k)``, what is injected at each of these nodes (entries at the same node add
            up), which spares building the ``(..., n_nodes)`` tensor (the environment's path).
        check: validate values (NaN/inf, injections only at ``injection_nodes``); callers that
            build ``s_kva`` themselves (the environment) pass False to skip the scan. Types and
            shapes are always checked.
        Gradients flow to ``s_kva`` and ``load_scale`` through the implicit function theorem.
        """
        coeffs, batch = self._inputs(s_kva, load_scale, at, check)
        x, conv, iters, resid, rate = self._port_solve(coeffs)
        return self._result(x, coeffs, conv, iters, resid, rate, batch)

    def jacobian(self, s_kva: torch.Tensor | None = None, load_scale=1.0, *,
                 at=None) -> torch.Tensor:
        """The power-flow Jacobian at each scenario's solution, ``(..., 2m, 2m)`` (no gradient).

        ``J = ∂F/∂x = I - M D`` of the port-space residual ``F(x) = x - a - M i(x)``
        (:mod:`.implicit`; ``m`` = :attr:`n_ports`, ``D = ∂i/∂x``), in the flattened planar
        layout (rows and columns: ``Re u`` of every port, then ``Im u``), scaled to p.u. of the
        no-load port voltages ``|a|`` (``S J S^-1``, ``S = diag(1/|a|)``: the variables the fixed
        point iterates on, so that a 0.48 kV and a 4.16 kV port weigh alike). It is the
        matrix the Newton fallback solves with and whose transpose the implicit gradient
        inverts; ``I - J = M D`` is the fixed-point map's derivative, whose spectral radius
        :attr:`PowerFlowResult.contraction` estimates. Arguments as :meth:`solve`; scenarios
        that did not converge (``on_nonconvergence="flag"``) get the Jacobian at their returned
        iterate. Dense: for feeders of up to a few thousand ports.
        """
        with torch.no_grad():
            coeffs, batch = self._inputs(s_kva, load_scale, at, True)
            x = self._port_solve(coeffs)[0]
            jac = residual_jacobian(self.network, coeffs, x)
        s = self._inv_base[0]  # (2m,) 1 / |a| on both planar halves
        jac = jac * s[:, None] / s[None, :]
        return jac.reshape(tuple(batch) + jac.shape[1:])

    def _inputs(self, s_kva, load_scale, at, check):
        """Checked inputs as the planar ZIP coefficients ``(B, 2, m)`` and the batch shape."""
        ports = None if at is None or s_kva is None else self._at_ports(at)
        s_kva, scale, batch = self._check(s_kva, load_scale, check, at)
        s_flat = None if s_kva is None else s_kva.reshape(-1, s_kva.shape[-1])
        scale = scale.reshape(math.prod(batch), self.feeder.n_loads)  # n_loads may be 0
        no_loads = isinstance(load_scale, (int, float)) and load_scale == 0
        return self._coefficients(s_flat, scale, ports, no_loads), batch

    def _port_solve(self, coeffs):
        """:class:`.implicit.PortSolve` on the flat batch; raises on non-convergence if asked."""
        bsz, m = coeffs[0].shape[0], self.n_ports
        x, conv, iters, resid, rate = PortSolve.apply(
            self.network, self._inv_base, self.settings, self._x0.expand(bsz, 2, m), *coeffs)
        if self.on_nonconvergence == "raise" and not bool(conv.all()):
            failed = torch.nonzero(~conv).squeeze(-1)
            raise PowerFlowError(
                f"power flow on {self.feeder.name!r} did not converge for {len(failed)} of {bsz} "
                f"scenarios (flat indices {failed[:10].tolist()}; residual "
                f"{resid[failed[:3]].tolist()} p.u.); use on_nonconvergence='flag' to get them "
                "flagged instead", failed)
        return x, conv, iters, resid, rate

    def _result(self, x, coeffs, conv, iters, resid, rate, batch) -> PowerFlowResult:
        if not bool(conv.all()):  # no gradient through scenarios that did not converge
            ok = conv[:, None, None]
            coeffs = tuple(None if c is None else torch.where(ok, c, c.detach()) for c in coeffs)
        u = torch.complex(x[:, 0], x[:, 1])  # (B, m) port voltages, V
        if self._compiled_outputs is not None and coeffs[1] is None and coeffs[2] is None:
            nodes, lines = self._compiled_outputs  # real, interleaved: compiled and fused
            net = self.unrolled_network()
            g_il, v_il, v_pu = nodes(torch.view_as_real(u), coeffs[0].transpose(1, 2), net)
            g, v = torch.view_as_complex(g_il), torch.view_as_complex(v_il)

            def currents():
                i_il, loading = lines(g_il, net)
                return torch.view_as_complex(i_il), loading
        else:
            g = conj_load(u, *(None if c is None else torch.complex(c[:, 0], c[:, 1])
                                for c in coeffs))  # conj(-i): what the ports draw
            v = self.network.node_voltages(g)
            v_pu = magnitude(v) / self._base_v

            def currents():
                i_line = self.network.line_currents(g, v)
                return i_line, magnitude(i_line) * self._inv_amps

        def shape(t):
            return t.reshape(tuple(batch) + tuple(t.shape[1:]))

        def line_currents():
            return tuple(shape(t) for t in currents())

        def powers():
            vs = v[:, self._src_nodes]  # (B, k) source-bus voltages
            i_src = (self._src_emf - vs) @ self._src_y.T  # Y_s (E - V)
            s_sub = (vs * i_src.conj()).sum(-1) / 1e3
            return shape(s_sub), shape((u * g).sum(-1) / 1e3)

        return PowerFlowResult(
            v=shape(v), v_pu=shape(v_pu), converged=shape(conv), iterations=shape(iters),
            residual=shape(resid), contraction=shape(rate), _line_currents=line_currents,
            _powers=powers)
