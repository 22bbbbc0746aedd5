"""Where agents sit on the feeder and which device each one runs.

Households replace the feeder's spot loads: each load bus-phase receives a number of households
(one per agent) proportional to its spot-load kW, by the largest-remainder method, so the feeder's
load distribution is preserved. A delta load term between phases ``a`` and ``b`` credits its kW to
phase ``a`` (households connect phase-to-neutral). Nodes without a path to ground (an ungrounded
section behind delta windings, ``Feeder.floating_nodes``) get no households: their spot load is
left out, not moved elsewhere. Device kinds are drawn in exact proportions
(largest remainder again) and shuffled over the households with a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network.feeder import Feeder

#: Device kinds, in the order of the ``kind`` codes.
KINDS = ("battery", "heatpump", "generator")


@dataclass(frozen=True)
class Placement:
    """Per agent (``N``): node index, device kind code (index into :data:`KINDS`), and index
    among the agents of its kind (the ``17`` of ``heatpump_17``)."""

    node: np.ndarray  # (N,) int
    kind: np.ndarray  # (N,) int
    kind_index: np.ndarray  # (N,) int

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


def place_agents(feeder: Feeder, n_agents: int, mix: dict[str, float], seed: int) -> Placement:
    """Place ``n_agents`` households on ``feeder`` with device shares ``mix`` (by kind name)."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise ValueError(f"device mix names unknown kinds {sorted(unknown)}; known: {KINDS}")
    if n_agents < 1:
        raise ValueError(f"n_agents must be >= 1, got {n_agents}")
    node = np.repeat(np.arange(feeder.n_nodes), largest_remainder(n_agents,
                                                                   household_weights(feeder)))
    shares = np.array([float(mix.get(k, 0.0)) for k in KINDS])
    rng = np.random.default_rng(seed)
    kind = rng.permutation(np.repeat(np.arange(len(KINDS)), largest_remainder(n_agents, shares)))
    kind_index = np.zeros(n_agents, dtype=np.int64)
    for k in range(len(KINDS)):  # three kinds: a loop over kinds, not agents
        sel = kind == k
        kind_index[sel] = np.arange(int(sel.sum()))
    return Placement(node=node, kind=kind, kind_index=kind_index)
