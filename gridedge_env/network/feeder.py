"""The feeder: everything the power flow needs, as plain numpy arrays.

A :class:`Feeder` is an immutable description of a three-phase unbalanced distribution network in
phase coordinates. It knows nothing about agents, devices or OpenDSS; it is produced by
:mod:`gridedge_env.opendss.importer` (or read from the bundled JSON files) and consumed by
:class:`gridedge_env.PowerFlow`.

Conventions
-----------
- ``nodes`` are ``"bus.phase"`` strings in lower case (``"632.1"``); the ground (OpenDSS node 0) is
  not a node and is written ``-1`` wherever a node index is expected.
- Every power-delivery element (line, switch, transformer, regulator, capacitor, reactor) and the
  source carry their *primitive admittance matrix* ``y_prim`` in siemens over their conductors, in the
  order of ``conductor_nodes``. The network admittance is their sum (:meth:`Feeder.y_bus`).
- Loads are stored per *term*: a two-terminal element between node ``a`` and node ``b`` (``b = -1``
  for ground). A wye load has one term per phase, a three-phase delta load one term per phase pair.
  ``term_zip_kva[:, k]`` is the complex power (kW + j kvar) the term consumes at nominal voltage in
  its constant-power (k=0), constant-current (k=1) and constant-impedance (k=2) parts.
- Voltages are in volts, currents in amperes, powers in kVA unless a name says otherwise.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .element import Element
from .grounding import describe_disconnected, disconnected_nodes, floating_sections

FORMAT_VERSION = 1



@dataclass(frozen=True)
class Feeder:
    """A three-phase feeder in phase coordinates. See the module docstring for conventions.

    Attributes
    ----------
    name: feeder name (``"ieee13"``).
    nodes: ``(n,)`` node names ``"bus.phase"`` in solver order.
    base_kv_ln: ``(n,)`` line-to-neutral base voltage of each node, kV.
    elements: power-delivery elements with their primitive admittances.
    source: the slack source (a Vsource); ``source.params["e_volts"]`` holds its EMF per conductor.
    source_emf_v: ``(k,)`` complex EMF behind the source impedance, volts, one per source conductor.
    lines: indices into ``elements`` of the lines and switches whose currents are reported.
    line_normamps: ``(n_lines,)`` normal ampere rating of each line (OpenDSS ``normamps``).
    load_names: ``(n_loads,)`` names of the feeder's own loads (``"load.671"``), and of its
        generation (``"generator.g1"``, ``"pvsystem.pv1"``, ``"storage.s1"``): terms with
        negative consumption at their snapshot output, which ``load_scale`` scales like loads.
    load_params: per load, what the exporter needs (bus spec, conn, kV, kW, kvar, model);
        generation carries ``"kind"`` (``"generator"``, ``"pvsystem"``, ``"storage"``).
    term_a, term_b: ``(n_terms,)`` node indices of each load term (``term_b = -1``: ground).
    term_load: ``(n_terms,)`` index of the load each term belongs to.
    term_zip_kva: ``(n_terms, 3)`` complex power consumed at nominal voltage, kVA, split into
        constant-power, constant-current and constant-impedance parts (sum = nominal kW + j kvar).
    term_vnom_v: ``(n_terms,)`` nominal voltage across the term, volts (for the I and Z parts).
    bus_coords: bus name -> (x, y), for plots.
    taps: transformer name -> per-winding taps (pu) the admittances were built with.
    meta: provenance (source file, importer version, tap mode, frequency).
    """

    name: str
    nodes: tuple[str, ...]
    base_kv_ln: np.ndarray
    elements: tuple[Element, ...]
    source: Element
    source_emf_v: np.ndarray
    lines: np.ndarray
    line_normamps: np.ndarray
    load_names: tuple[str, ...]
    load_params: tuple[dict, ...]
    term_a: np.ndarray
    term_b: np.ndarray
    term_load: np.ndarray
    term_zip_kva: np.ndarray
    term_vnom_v: np.ndarray
    bus_coords: dict = field(default_factory=dict)
    taps: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        lost = disconnected_nodes(self)
        if lost.size:
            raise ValueError(describe_disconnected(self, lost))

    # ------------------------------------------------------------------ derived
    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_loads(self) -> int:
        return len(self.load_names)

    @property
    def n_lines(self) -> int:
        return len(self.lines)

    @property
    def line_names(self) -> tuple[str, ...]:
        return tuple(self.elements[i].name for i in self.lines)

    @property
    def source_nodes(self) -> np.ndarray:
        """Node indices of the source bus conductors (the slack terminal)."""
        c = self.source.conductor_nodes
        return c[c >= 0]

    def node_index(self, name: str) -> int:
        """Index of node ``"bus.phase"`` (case-insensitive); ``KeyError`` naming it otherwise."""
        try:
            return self._node_lookup()[name.lower()]
        except KeyError:
            raise KeyError(f"feeder {self.name!r} has no node {name!r}") from None

    def _node_lookup(self) -> dict[str, int]:
        lookup = self.__dict__.get("_lookup")
        if lookup is None:
            lookup = {n: i for i, n in enumerate(self.nodes)}
            object.__setattr__(self, "_lookup", lookup)
        return lookup

    def floating_sections(self) -> list[np.ndarray]:
        """Node indices of each section with no conductive path to ground (fed only through
        delta or ungrounded-wye windings; :mod:`.grounding`). Computed once per feeder."""
        sections = self.__dict__.get("_floating")
        if sections is None:
            sections = floating_sections(self)
            object.__setattr__(self, "_floating", sections)
        return sections

    def floating_nodes(self) -> np.ndarray:
        """Sorted indices of the nodes with no path to ground: no phase-to-ground injection,
        agent or wye load belongs there; their node-to-ground voltage is set only by
        anti-float admittances (``docs/feeders.md``, floating nodes)."""
        s = self.floating_sections()
        return np.sort(np.concatenate(s)) if s else np.zeros(0, dtype=np.int64)

    def line_phase_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Which rows of each line's ``y_prim`` give its terminal-1 phase currents.

        Returns ``(line_of_row, row_in_element)``, both ``(n_line_phases,)``: line ``l``'s
        terminal 1 has ``phases`` conductors, the first ``phases`` rows of its primitive matrix.
        """
        line_of_row, row = [], []
        for li, ei in enumerate(self.lines):
            nph = int(self.elements[ei].params["phases"])
            line_of_row += [li] * nph
            row += list(range(nph))
        return np.asarray(line_of_row, dtype=np.int64), np.asarray(row, dtype=np.int64)

    def y_bus_sparse(self, include_source: bool = True):
        """Sparse (SciPy CSC) ``(n, n)`` complex nodal admittance, siemens; see :meth:`y_bus`."""
        rows, cols, vals = [], [], []
        for el in self.elements + ((self.source,) if include_source else ()):
            idx = el.conductor_nodes
            keep = np.flatnonzero(idx >= 0)
            r, c = np.meshgrid(idx[keep], idx[keep], indexing="ij")
            rows.append(r.ravel())
            cols.append(c.ravel())
            vals.append(el.y_prim[np.ix_(keep, keep)].ravel())
        n = self.n_nodes
        return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, n))

    def y_bus(self, include_source: bool = True) -> np.ndarray:
        """Dense ``(n, n)`` complex nodal admittance of the network (ground eliminated), siemens.

        Includes every element's primitive admittance and, if ``include_source``, the source's
        Thevenin admittance (the Norton form the solver uses). Loads are not included.
        """
        return self.y_bus_sparse(include_source).toarray()

    def source_current_a(self) -> np.ndarray:
        """``(n,)`` Norton injection of the source, ``Y_source @ E``, amperes."""
        # The EMF sits behind the series admittance Y_11 between the source bus (terminal 1) and
        # ground (terminal 2, checked by the importer), so the Norton current is Y_11 @ E.
        k = len(self.source_emf_v)
        i = np.zeros(self.n_nodes, dtype=np.complex128)
        np.add.at(i, self.source.conductor_nodes[:k], self.source.y_prim[:k, :k] @ self.source_emf_v)
        return i

    def with_taps(self, taps: dict[str, float]) -> Feeder:
        """A copy with two-winding transformers (regulators) at new winding-2 taps (pu).

        OpenDSS refers a winding's admittances to its tapped voltage, so moving winding 2 from
        tap ``t0`` to ``t1`` scales its rows and columns of ``y_prim`` by ``t0 / t1`` (checked
        against re-imports from OpenDSS in the tests). ``taps``: transformer name -> tap.
        """
        by_name = {e.name: i for i, e in enumerate(self.elements)}
        elements = list(self.elements)
        new_taps = dict(self.taps)
        for name, tap in taps.items():
            key = f"transformer.{name.lower().removeprefix('transformer.')}"
            if key not in by_name:
                raise KeyError(f"feeder {self.name!r} has no transformer {name!r}")
            el = elements[by_name[key]]
            old = self.taps[key.split(".", 1)[1]]
            if len(old) != 2:
                raise ValueError(f"{key}: only two-winding transformers can be re-tapped")
            if not 0.5 < tap < 1.5:
                raise ValueError(f"{key}: tap {tap} outside (0.5, 1.5)")
            k = len(el.conductor_nodes) // 2
            f = np.ones(2 * k)
            f[k:] = old[1] / tap
            elements[by_name[key]] = dataclasses.replace(el, y_prim=el.y_prim * np.outer(f, f))
            new_taps[key.split(".", 1)[1]] = [old[0], float(tap)]
        return dataclasses.replace(self, elements=tuple(elements), taps=new_taps)

    def with_capacitors_open(self, names) -> Feeder:
        """A copy with the capacitor banks ``names`` (``"capbank0a"`` or
        ``"capacitor.capbank0a"``) switched open: every step's state 0 (``params["states"]``,
        which the OpenDSS cross-check applies to the original model) and no admittance (OpenDSS
        keeps 1e-12 S across an open bank; checked against OpenDSS in the tests). Raises naming
        an unknown capacitor."""
        by_name = {e.name: i for i, e in enumerate(self.elements)}
        elements = list(self.elements)
        for name in names:
            key = f"capacitor.{name.lower().removeprefix('capacitor.')}"
            if key not in by_name:
                raise KeyError(f"feeder {self.name!r} has no capacitor {name!r}")
            el = elements[by_name[key]]
            steps = max(1, len(re.findall(r"\d", str(el.params.get("states", "[1]")))))
            elements[by_name[key]] = dataclasses.replace(
                el, y_prim=np.zeros_like(el.y_prim),
                params={**el.params, "states": f"[{' '.join(['0'] * steps)}]"})
        return dataclasses.replace(self, elements=tuple(elements))

    def with_source_pu(self, pu: float) -> Feeder:
        """A copy whose source EMF is ``pu`` times its base (the substation voltage setpoint)."""
        if not 0.5 < pu < 1.5:
            raise ValueError(f"source pu must be in (0.5, 1.5), got {pu}")
        old = float(self.source.params.get("pu", 1.0))
        src = dataclasses.replace(self.source, params={**self.source.params, "pu": pu})
        return dataclasses.replace(self, source=src, source_emf_v=self.source_emf_v * pu / old)

    def without_loads(self) -> Feeder:
        """A copy without the feeder's own loads (the network only). A power flow built on it
        has ports at its injection nodes alone: what a model that replaces the loads (the
        environment's households) solves, with no dead load ports in its fixed point."""
        none = np.zeros(0, dtype=np.int64)
        return dataclasses.replace(self, load_names=(), load_params=(), term_a=none,
                                   term_b=none, term_load=none,
                                   term_zip_kva=np.zeros((0, 3), dtype=np.complex128),
                                   term_vnom_v=np.zeros(0))

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict:
        """A JSON-ready dict (complex numbers as ``[re, im]`` pairs, full float precision)."""

        def cplx(a):
            a = np.asarray(a, dtype=np.complex128)
            return np.stack([a.real, a.imag], axis=-1).tolist()

        def elem(e: Element):
            return {
                "name": e.name,
                "conductor_nodes": np.asarray(e.conductor_nodes).tolist(),
                "y_prim": cplx(e.y_prim),
                "params": e.params,
            }

        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "nodes": list(self.nodes),
            "base_kv_ln": np.asarray(self.base_kv_ln).tolist(),
            "elements": [elem(e) for e in self.elements],
            "source": elem(self.source),
            "source_emf_v": cplx(self.source_emf_v),
            "lines": np.asarray(self.lines).tolist(),
            "line_normamps": np.asarray(self.line_normamps).tolist(),
            "load_names": list(self.load_names),
            "load_params": list(self.load_params),
            "term_a": np.asarray(self.term_a).tolist(),
            "term_b": np.asarray(self.term_b).tolist(),
            "term_load": np.asarray(self.term_load).tolist(),
            "term_zip_kva": cplx(self.term_zip_kva),
            "term_vnom_v": np.asarray(self.term_vnom_v).tolist(),
            "bus_coords": {k: list(v) for k, v in self.bus_coords.items()},
            "taps": self.taps,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict, origin: str = "<dict>") -> Feeder:
        """Inverse of :meth:`to_json`; ``origin`` names the file in error messages."""
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{origin}: feeder format_version {version!r} is not supported "
                f"(this gridedge reads version {FORMAT_VERSION})"
            )

        def cplx(a):
            a = np.asarray(a, dtype=np.float64)
            return a[..., 0] + 1j * a[..., 1]

        def elem(e):
            return Element(
                name=e["name"],
                conductor_nodes=np.asarray(e["conductor_nodes"], dtype=np.int64),
                y_prim=cplx(e["y_prim"]).reshape(len(e["conductor_nodes"]), -1),
                params=e["params"],
            )

        try:
            return cls(
                name=d["name"],
                nodes=tuple(d["nodes"]),
                base_kv_ln=np.asarray(d["base_kv_ln"], dtype=np.float64),
                elements=tuple(elem(e) for e in d["elements"]),
                source=elem(d["source"]),
                source_emf_v=cplx(d["source_emf_v"]),
                lines=np.asarray(d["lines"], dtype=np.int64),
                line_normamps=np.asarray(d["line_normamps"], dtype=np.float64),
                load_names=tuple(d["load_names"]),
                load_params=tuple(d["load_params"]),
                term_a=np.asarray(d["term_a"], dtype=np.int64),
                term_b=np.asarray(d["term_b"], dtype=np.int64),
                term_load=np.asarray(d["term_load"], dtype=np.int64),
                term_zip_kva=cplx(d["term_zip_kva"]).reshape(-1, 3),
                term_vnom_v=np.asarray(d["term_vnom_v"], dtype=np.float64),
                bus_coords={k: tuple(v) for k, v in d.get("bus_coords", {}).items()},
                taps=d.get("taps", {}),
                meta=d.get("meta", {}),
            )
        except KeyError as exc:
            raise ValueError(f"{origin}: feeder file lacks field {exc.args[0]!r}") from None

    def save(self, path: str | Path) -> None:
        """Write the feeder as gzip-compressed JSON (``.json.gz``)."""
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        with gzip.GzipFile(path, "wb", mtime=0) as fh:  # mtime=0: reproducible bytes
            fh.write(data)

    @classmethod
    def load(cls, path: str | Path) -> Feeder:
        """Read a feeder written by :meth:`save`."""
        path = Path(path)
        try:
            with gzip.open(path, "rb") as fh:
                d = json.loads(fh.read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a gridedge feeder file ({exc})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: not a gridedge feeder file (top level is not an object)")
        return cls.from_json(d, origin=str(path))
