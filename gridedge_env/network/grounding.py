"""Which nodes have a conductive path to ground, and which float.

A node *floats* when no chain of conductors joins it to ground: it lies in a section fed only
through delta or ungrounded-wye transformer windings (the secondary of IEEE 123's delta-delta
``transformer.xfm1``, bus 610). There the line-to-line voltages and the currents are defined by the
network, but the common (zero-sequence) voltage of the section is set only by OpenDSS's tiny
anti-float admittances (``ppm_antifloat``, 1 ppm of the winding's rating to ground): a
phase-to-ground injection has no return path (10 kW at ``610.1`` gives ~1e5 p.u.), and the
node-to-ground voltages there are ill-conditioned (``docs/powerflow.md``, error budget).

The test is structural, from each element's conductors (``Element.conductor_nodes``, ground = -1):

- a transformer joins the conductors of each winding (its coils), never one winding to another;
- a delta-connected shunt element (capacitor, reactor) joins its phase conductors;
- every other element (line, switch, wye capacitor or reactor, the source) joins conductor ``k``
  of its first terminal to conductor ``k`` of its second;
- conductors whose primitive-admittance row is zero (a delta winding's unused neutral) join
  nothing.

Loads are not paths: a phase-to-ground load on an ungrounded section has no return either.
Line charging capacitance and anti-float admittances do not count (they are not conductors).
``tests/gridedge_env/network/test_grounding.py`` checks the rule against the null space of the
network admittance without its shunts.

Connectivity to the *source* is a different, looser question (:func:`disconnected_nodes`): any
element joins all its live conductors, across all its terminals and windings, and ground is not a
path. A floating section fed through a delta winding is connected (the winding's coupling carries
its voltages); a bus that no line, switch or transformer reaches (an island, a line hanging from
a bus nothing feeds, a load on a bus of its own) is not, and would make the network admittance
singular. :class:`~gridedge_env.network.feeder.Feeder` refuses such a feeder on construction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .element import Element

if TYPE_CHECKING:  # the feeder calls into this module; only its type is needed here
    from .feeder import Feeder


def conductor_groups(el: Element) -> list[np.ndarray]:
    """Groups of ``el``'s conductor positions that it joins conductively (see module docstring)."""
    k = len(el.conductor_nodes)
    live = np.abs(el.y_prim).sum(1) > 0
    pos = np.arange(k)
    if el.cls == "transformer":
        w = int(el.params.get("windings", 2))
        groups = np.array_split(pos, w) if k % w == 0 else [pos]
    elif str(el.params.get("conn", "wye")).lower() == "delta":
        groups = [pos]
    elif k % 2 == 0:
        groups = [np.array([j, j + k // 2]) for j in range(k // 2)]
    else:
        groups = [pos]
    return [g[live[g]] for g in groups if live[g].sum() > 1]


def _components(n_vertices: int, groups) -> np.ndarray:
    """Component label of every vertex, the vertices of each group joined (scipy's
    ``connected_components`` on the star graph of every group)."""
    pairs = [(np.full(len(g) - 1, g[0]), g[1:]) for g in map(np.asarray, groups) if len(g) > 1]
    rows = np.concatenate([r for r, _ in pairs]) if pairs else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([c for _, c in pairs]) if pairs else np.zeros(0, dtype=np.int64)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)[1]


def _union_find(feeder: Feeder) -> np.ndarray:
    """Component of every vertex: the ``n`` nodes and ground (vertex ``n``), joined within each
    element's conductor groups (:func:`conductor_groups`)."""
    n = feeder.n_nodes
    groups = []
    for el in feeder.elements + (feeder.source,):  # setup only, once per feeder
        vertex = np.where(el.conductor_nodes >= 0, el.conductor_nodes, n)
        groups += [vertex[g] for g in conductor_groups(el)]
    return _components(n + 1, groups)


def floating_sections(feeder: Feeder) -> list[np.ndarray]:
    """Node indices of each conductively connected section without a path to ground."""
    roots = _union_find(feeder)
    ground = roots[-1]
    nodes = roots[:-1]
    return [np.flatnonzero(nodes == r) for r in np.unique(nodes[nodes != ground])]


def why_floating(feeder: Feeder, node: int) -> str:
    """One sentence naming ``node``'s ungrounded section and the windings that feed it."""
    section = next(s for s in feeder.floating_sections() if node in s)
    nodes = set(section.tolist())
    feeders = sorted(el.name for el in feeder.elements
                     if el.cls == "transformer" and nodes & set(el.conductor_nodes.tolist()))
    via = f" fed only through {', '.join(feeders)}" if feeders else ""
    return (f"node {feeder.nodes[node]!r} of feeder {feeder.name!r} has no path to ground: it lies "
            f"in an ungrounded section ({', '.join(feeder.nodes[i] for i in section)}){via} "
            "(delta or ungrounded-wye windings), so a phase-to-ground injection there has no return "
            "path")


def disconnected_nodes(feeder: Feeder) -> np.ndarray:
    """Sorted indices of the nodes with no conductive path to the source (see module docstring).

    Each element (and the source) joins all its live conductors (nonzero ``y_prim`` row) that are
    not ground; the nodes reached from the source's are connected, the rest are returned."""
    groups = []
    for el in feeder.elements + (feeder.source,):  # setup only, once per feeder
        live = np.abs(el.y_prim).sum(1) > 0
        groups.append(el.conductor_nodes[live & (el.conductor_nodes >= 0)])
    roots = _components(feeder.n_nodes, groups)
    src = feeder.source.conductor_nodes
    fed = np.unique(roots[src[src >= 0]])
    return np.flatnonzero(~np.isin(roots, fed))


def describe_disconnected(feeder: Feeder, nodes: np.ndarray, shown: int = 5) -> str:
    """One sentence naming the first ``shown`` buses of ``nodes`` (disconnected node indices),
    their count, and elements that touch them."""
    buses = list(dict.fromkeys(feeder.nodes[i].split(".", 1)[0] for i in nodes))
    lost = set(nodes.tolist())
    touching = [el.name for el in feeder.elements if lost & set(el.conductor_nodes.tolist())]
    loads = [feeder.load_names[k] for k in np.unique(feeder.term_load[
        np.isin(feeder.term_a, nodes) | np.isin(feeder.term_b, nodes)])]
    more = f" (first {shown} of {len(buses)})" if len(buses) > shown else ""
    where = ", ".join((touching + loads)[:shown])
    via = f"; elements there: {where}" if where else ""
    return (f"feeder {feeder.name!r}: {len(buses)} bus(es) ({len(nodes)} nodes) have no conductive "
            f"path to the source {feeder.source.name}: {', '.join(buses[:shown])}{more}{via}. "
            "No line, switch or transformer joins them to the source-fed network (an island or a "
            "bus nothing feeds); its admittance matrix would be singular")
