"""Synthetic radial three-phase feeders of any size, for scaling tests and benchmarks.

:func:`synthetic_radial` grows a random tree of three-phase overhead line sections from a 12.47 kV
source and puts a balanced-ish wye load on every phase of every bus. Total demand is fixed (about
5 MW at 0.95 power factor) whatever the size, so voltages stay plausible from 10 to 10,000 buses.
The line impedance is the IEEE 13-node configuration 601 phase-impedance matrix (Kersting,
*Distribution System Modeling and Analysis*), the source a 0.1 + j0.5 Ω (positive sequence) grid.
The feeder is built directly (no OpenDSS); it exports to OpenDSS like any other feeder.
"""

from __future__ import annotations

import numpy as np

from .feeder import Element, Feeder

KV_LL = 12.47
#: IEEE 13 configuration 601 phase impedance, ohm per mile (Kersting's Table).
_Z601_OHM_PER_MILE = np.array([
    [0.3465 + 1.0179j, 0.1560 + 0.5017j, 0.1580 + 0.4236j],
    [0.1560 + 0.5017j, 0.3375 + 1.0478j, 0.1535 + 0.3849j],
    [0.1580 + 0.4236j, 0.1535 + 0.3849j, 0.3414 + 1.0348j],
])
#: its shunt susceptance, microsiemens per mile
_B601_US_PER_MILE = np.array([[6.2998, -1.9958, -1.2595],
                              [-1.9958, 5.9597, -0.7417],
                              [-1.2595, -0.7417, 5.6386]])
_MILE_KM = 1.609344


def _line(name, nodes_from, nodes_to, length_km, bus_from, bus_to) -> Element:
    miles = length_km / _MILE_KM
    ys = np.linalg.inv(_Z601_OHM_PER_MILE * miles)
    ysh = 1j * _B601_US_PER_MILE * 1e-6 * miles / 2
    y = np.block([[ys + ysh, -ys], [-ys, ys + ysh]])
    params = {"phases": 3, "buses": [bus_from, bus_to], "normamps": 400.0, "emergamps": 600.0}
    return Element(name, np.concatenate([nodes_from, nodes_to]), y, params)


def _source(nodes) -> tuple[Element, np.ndarray]:
    z1, z0 = 0.1 + 0.5j, 0.3 + 1.5j
    zs, zm = (z0 + 2 * z1) / 3, (z0 - z1) / 3
    ys = np.linalg.inv(np.full((3, 3), zm) + np.eye(3) * (zs - zm))
    y = np.block([[ys, -ys], [-ys, ys]])
    emf = KV_LL * 1e3 / np.sqrt(3) * np.exp(-2j * np.pi / 3 * np.arange(3))
    params = {"phases": 3, "buses": ["sourcebus", "sourcebus.0.0.0"], "basekv": KV_LL, "pu": 1.0,
              "angle": 0.0, "frequency": 60.0}
    return Element("vsource.source", np.concatenate([nodes, [-1, -1, -1]]), y, params), emf


def synthetic_radial(n_buses: int, seed: int = 0, total_kw: float = 5000.0) -> Feeder:
    """A random radial feeder with ``n_buses`` load buses (``3 * (n_buses + 1)`` nodes)."""
    if n_buses < 1:
        raise ValueError(f"n_buses must be >= 1, got {n_buses}")
    rng = np.random.default_rng(seed)
    buses = ["sourcebus"] + [f"b{k}" for k in range(1, n_buses + 1)]
    nodes = tuple(f"{b}.{p}" for b in buses for p in (1, 2, 3))
    bus_nodes = np.arange(3 * len(buses)).reshape(-1, 3)
    # Attach each bus to one of the last 8 buses: long, branching laterals like a real feeder.
    parent = [0] + [int(rng.integers(max(0, k - 8), k)) for k in range(1, n_buses)]
    lengths = rng.uniform(0.03, 0.2, n_buses) * min(1.0, 60.0 / n_buses) ** 0.5
    elements = tuple(
        _line(f"line.l{k + 1}", bus_nodes[parent[k]], bus_nodes[k + 1], lengths[k],
              buses[parent[k]], buses[k + 1])
        for k in range(n_buses))
    source, emf = _source(bus_nodes[0])
    kw = rng.uniform(0.5, 1.5, (n_buses, 3))
    kw *= total_kw / kw.sum()
    s = kw * (1 + 1j * np.tan(np.arccos(0.95)))
    term_a = bus_nodes[1:].reshape(-1)
    vnom = KV_LL * 1e3 / np.sqrt(3)
    zip_kva = np.zeros((len(term_a), 3), dtype=np.complex128)
    zip_kva[:, 0] = s.reshape(-1)
    load_params = tuple(
        {"bus1": f"{buses[1 + k // 3]}.{k % 3 + 1}", "phases": 1, "conn": "wye", "kv": vnom / 1e3,
         "kw": float(s.reshape(-1)[k].real), "kvar": float(s.reshape(-1)[k].imag), "model": 1}
        for k in range(len(term_a)))
    x, y = np.zeros(len(buses)), np.zeros(len(buses))
    for k in range(1, len(buses)):  # a simple layout for plots: depth down, branch across
        x[k], y[k] = x[parent[k - 1]] + rng.uniform(-1, 1), y[parent[k - 1]] - 1.0
    return Feeder(
        name=f"synthetic{n_buses}", nodes=nodes, base_kv_ln=np.full(len(nodes), vnom / 1e3),
        elements=elements, source=source, source_emf_v=emf,
        lines=np.arange(n_buses), line_normamps=np.full(n_buses, 400.0),
        load_names=tuple(f"load.l{k}" for k in range(len(term_a))), load_params=load_params,
        term_a=term_a, term_b=np.full(len(term_a), -1), term_load=np.arange(len(term_a)),
        term_zip_kva=zip_kva, term_vnom_v=np.full(len(term_a), vnom),
        bus_coords={b: (float(x[i]), float(y[i])) for i, b in enumerate(buses)},
        meta={"generator": "synthetic_radial", "seed": seed, "total_kw": total_kw,
              "frequency_hz": 60.0},
    )
