"""Where agents sit on the feeder and which device each one runs.

Households replace the feeder's spot loads: each load bus-phase receives a number of households
(one per agent) proportional to its spot-load kW, by the largest-remainder method, so the feeder's
load distribution is preserved. A delta load term between phases ``a`` and ``b`` credits its kW to
phase ``a`` (households connect phase-to-neutral). Nodes without a path to ground (an ungrounded
section behind delta windings, ``Feeder.floating_nodes``) get no households: their spot load is
left out, not moved elsewhere. Device kinds are drawn in exact proportions
(largest remainder again) and shuffled over the households with a seed.

Split-phase secondaries (North American 120/240 V services, as on the IEEE 8500-node feeder):
with ``connection="split-phase"`` a bus that has exactly two nodes, both grounded and both
carrying load, is one *service*; its households connect to both legs (``Placement.legs``), half
their power on each leg to neutral, as the feeder's own loads there are modelled (EPRI's file
splits each load's kW equally between its two 120 V terms). A household's voltage is the mean of
its legs'. Other loaded nodes receive single-phase households as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network.feeder import Feeder

#: Device kinds, in the order of the ``kind`` codes.
KINDS = ("battery", "heatpump", "generator")

#: How households connect: ``"phase"`` (one node, phase to neutral) or ``"split-phase"`` (both
#: legs of a split-phase service where the feeder has one, half the power on each).
CONNECTIONS = ("phase", "split-phase")


@dataclass(frozen=True)
class Placement:
    """Per agent (``N``): node index, device kind code (index into :data:`KINDS`), index among
    the agents of its kind (the ``17`` of ``heatpump_17``) and the nodes of its legs ``(N, L)``:
    ``L = 1`` (every household phase to neutral: ``legs[:, 0] == node``) or ``L = 2`` (split-phase
    households on two nodes, each carrying half the power; a single-phase household in such a
    scenario has both legs on its node)."""

    node: np.ndarray  # (N,) int: the first leg's node
    kind: np.ndarray  # (N,) int
    kind_index: np.ndarray  # (N,) int
    legs: np.ndarray | None = None  # (N, L) int; None: (N, 1), the node

    def __post_init__(self):
        if self.legs is None:
            object.__setattr__(self, "legs", np.asarray(self.node)[:, None])
        if self.legs.shape[0] != len(self.node) or not np.array_equal(self.legs[:, 0], self.node):
            raise ValueError("Placement.legs must be (N, L) with legs[:, 0] == node")

    @property
    def n_agents(self) -> int:
        return len(self.node)

    def names(self) -> list[str]:
        """Agent names ``<kind>_<index>``: ``battery_0``, ``heatpump_17``, ``generator_3``."""
        return [f"{KINDS[k]}_{i}" for k, i in zip(self.kind, self.kind_index, strict=True)]


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` summing exactly to ``total``."""
    weights = np.asarray(weights, dtype=np.float64)
    if total < 0 or weights.sum() <= 0 or np.any(weights < 0):
        raise ValueError(f"cannot split {total} by weights {weights.tolist()[:8]}...")
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    short = total - counts.sum()
    counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


def spot_load_kw_per_node(feeder: Feeder) -> np.ndarray:
    """``(n_nodes,)`` nominal spot-load kW credited to each node (delta terms to phase ``a``)."""
    w = np.zeros(feeder.n_nodes)
    np.add.at(w, feeder.term_a, feeder.term_zip_kva.sum(1).real)
    return w


def household_weights(feeder: Feeder) -> np.ndarray:
    """``(n_nodes,)`` spot-load kW that draws households: :func:`spot_load_kw_per_node`, zero at
    floating nodes (``Feeder.floating_nodes``), where a household's phase-to-neutral connection
    has no return path. Raises when no grounded node carries load."""
    w = spot_load_kw_per_node(feeder)
    floating = feeder.floating_nodes()
    w[floating] = 0.0
    if not (w > 0).any():
        where = (f"; its only loads are in ungrounded sections "
                 f"({', '.join(feeder.nodes[i] for i in floating)})" if len(floating) else "")
        raise ValueError(f"feeder {feeder.name!r} has no grounded node with spot load to place "
                         f"households on{where}")
    return w


def split_phase_services(feeder: Feeder, weights: np.ndarray) -> np.ndarray:
    """``(S, 2)`` node pairs of the split-phase services: buses with exactly two nodes, both
    with positive household ``weights`` (``(n_nodes,)``, zero where floating), in node order."""
    by_bus: dict[str, list[int]] = {}
    for i, name in enumerate(feeder.nodes):  # build time, once per scenario
        by_bus.setdefault(name.rsplit(".", 1)[0], []).append(i)
    pairs = [sorted(n) for n in by_bus.values() if len(n) == 2 and (weights[n] > 0).all()]
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def connections(feeder: Feeder, connection: str) -> tuple[np.ndarray, np.ndarray]:
    """Where households can connect: ``(C, L)`` leg nodes and ``(C,)`` spot-load kW weights.
    ``"phase"``: every node (``L = 1``, :func:`household_weights`); ``"split-phase"``: each
    split-phase service (:func:`split_phase_services`, weight the kW of both legs) and every
    other loaded node on both legs (``L = 2``). Raises when ``"split-phase"`` finds none."""
    w = household_weights(feeder)
    if connection == "phase":
        return np.arange(feeder.n_nodes)[:, None], w
    if connection != "split-phase":
        raise ValueError(f"household connection must be one of {CONNECTIONS}, got {connection!r}")
    pairs = split_phase_services(feeder, w)
    if not len(pairs):
        raise ValueError(f"feeder {feeder.name!r} has no split-phase service (a bus with exactly "
                         "two grounded nodes that both carry load); use connection 'phase'")
    single = np.setdiff1d(np.flatnonzero(w > 0), pairs.ravel())
    legs = np.concatenate([pairs, np.repeat(single[:, None], 2, axis=1)])
    weight = np.concatenate([w[pairs].sum(1), w[single]])
    order = np.argsort(legs[:, 0], kind="stable")
    return legs[order], weight[order]


def place_agents(feeder: Feeder, n_agents: int, mix: dict[str, float], seed: int,
                 connection: str = "phase") -> Placement:
    """Place ``n_agents`` households on ``feeder`` with device shares ``mix`` (by kind name),
    each connected as ``connection`` says (:data:`CONNECTIONS`, :func:`connections`)."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"device mix names unknown kinds {sorted(unknown)}; known: {KINDS}")
    if n_agents < 1:
        raise ValueError(f"n_agents must be >= 1, got {n_agents}")
    conn, weight = connections(feeder, connection)
    legs = np.repeat(conn, largest_remainder(n_agents, weight), axis=0)
    node = legs[:, 0]
    shares = np.array([float(mix.get(k, 0.0)) for k in KINDS])
    rng = np.random.default_rng(seed)
    kind = rng.permutation(np.repeat(np.arange(len(KINDS)), largest_remainder(n_agents, shares)))
    kind_index = np.zeros(n_agents, dtype=np.int64)
    for k in range(len(KINDS)):  # three kinds: a loop over kinds, not agents
        sel = kind == k
        kind_index[sel] = np.arange(int(sel.sum()))
    return Placement(node=node, kind=kind, kind_index=kind_index, legs=legs)
