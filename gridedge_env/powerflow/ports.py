"""Ports: the two-terminal places where power is drawn, and the network seen from them.

A port is a node pair ``(a, b)`` (``b = -1`` is ground) at which a load term or a wye injection
draws current. All non-linearity of the power flow sits at the ports, so the fixed point can be
solved in port space (``m`` complex unknowns) instead of node space (``n``):

    V = w + Z C i,        u = C^T V = a + M i,        M = C^T Z C,  a = C^T w,

with ``Z = Y^-1`` the network impedance (source Thevenin admittance included, loads excluded),
``w = Z i_source`` the no-load voltages, ``C`` the ``(n, m)`` port incidence and ``i`` the currents
the ports inject (minus what the loads draw). This module builds these constant matrices once per
feeder; they are shared by every scenario and every iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network.feeder import Feeder

# Above this many nodes the network is factorised sparsely instead of inverted densely.
DENSE_NODE_LIMIT = 3000


@dataclass(frozen=True)
class PortModel:
    """Constant port-space matrices (numpy, complex128). Shapes: n nodes, m ports, r line rows."""

    port_a: np.ndarray  # (m,) node index of the port's first terminal
    port_b: np.ndarray  # (m,) node index of the second terminal, -1 = ground
    term_port: np.ndarray  # (n_terms,) port of each feeder load term
    injection_nodes: np.ndarray  # (k,) nodes that accept wye injections s_kva
    injection_port: np.ndarray  # (k,) their ports
    a_v: np.ndarray  # (m,) no-load port voltage, V
    m_ohm: np.ndarray  # (m, m) port impedance M = C^T Z C, ohm
    w_v: np.ndarray  # (n,) no-load node voltage, V
    zc_ohm: np.ndarray  # (n, m) Z C: node voltage per port current, ohm
    line_i0_a: np.ndarray  # (r,) no-load line-phase current, A
    line_k_ohm: np.ndarray  # (r, m) line-phase current per port current (dimensionless)


def _ports(feeder: Feeder, injection_nodes: np.ndarray):
    pairs: dict[tuple[int, int], int] = {}

    def port(a: int, b: int) -> int:
        return pairs.setdefault((int(a), int(b)), len(pairs))

    pairs_ab = zip(feeder.term_a, feeder.term_b, strict=True)
    term_port = np.array([port(a, b) for a, b in pairs_ab], dtype=np.int64)
    inj_port = np.array([port(k, -1) for k in injection_nodes], dtype=np.int64)
    ab = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    return ab[:, 0], ab[:, 1], term_port, inj_port


def _solve_network(y: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``Y^-1 rhs`` for a (n, k) right-hand side; sparse LU above ``DENSE_NODE_LIMIT`` nodes."""
    if y.shape[0] <= DENSE_NODE_LIMIT:
        return np.linalg.solve(y, rhs)
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    return spla.splu(sp.csc_matrix(y)).solve(rhs)


def _line_rows(feeder: Feeder) -> np.ndarray:
    """(r, n) matrix giving each line's terminal-1 phase currents from the node voltages."""
    line_of_row, row = feeder.line_phase_rows()
    yb = np.zeros((len(row), feeder.n_nodes), dtype=np.complex128)
    for r, (li, k) in enumerate(zip(line_of_row, row, strict=True)):
        el = feeder.elements[feeder.lines[li]]
        keep = el.conductor_nodes >= 0
        np.add.at(yb[r], el.conductor_nodes[keep], el.y_prim[k, keep])
    return yb


def build_port_model(feeder: Feeder, injection_nodes) -> PortModel:
    """Factorise the network once and project it onto the ports (one-off, numpy)."""
    injection_nodes = np.asarray(injection_nodes, dtype=np.int64).reshape(-1)
    pa, pb, term_port, inj_port = _ports(feeder, injection_nodes)
    n, m = feeder.n_nodes, len(pa)
    c = np.zeros((n, m), dtype=np.complex128)
    c[pa, np.arange(m)] = 1.0
    grounded = pb < 0
    c[pb[~grounded], np.flatnonzero(~grounded)] = -1.0
    y = feeder.y_bus()
    sol = _solve_network(y, np.concatenate([feeder.source_current_a()[:, None], c], axis=1))
    w, zc = sol[:, 0], sol[:, 1:]
    yb = _line_rows(feeder)
    return PortModel(
        port_a=pa, port_b=pb, term_port=term_port, injection_nodes=injection_nodes,
        injection_port=inj_port, a_v=c.T @ w, m_ohm=c.T @ zc, w_v=w, zc_ohm=zc,
        line_i0_a=yb @ w, line_k_ohm=yb @ zc,
    )
