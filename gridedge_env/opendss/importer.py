"""Import an OpenDSS model into a :class:`~gridedge_env.network.feeder.Feeder`.

This is the only module that drives OpenDSS for import (through ``opendssdirect.py``). It compiles
the master file, fixes regulator taps, and reads every power-delivery element's primitive admittance
matrix exactly as OpenDSS builds it, so transformers and regulators of every connection OpenDSS
supports, lines with full impedance and shunt matrices, switches, capacitors and reactors are
represented without re-deriving OpenDSS's models. Loads are read as parameters (model, connection,
kW, kvar, kV) and become two-terminal terms that the solver evaluates itself.

Anything the solver cannot represent (generators, PV systems, storage, current sources, a second
voltage source, two-phase delta loads, ...) is an :class:`FeederImportError` naming the element.
Controls (RegControl, CapControl, ...) are frozen at the taps/states chosen by ``taps``; meters and
monitors have no electrical effect. Both are listed in ``feeder.meta["frozen_controls"]`` and
``feeder.meta["ignored"]``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..network.feeder import Element, Feeder

IMPORTER_VERSION = 1

#: Classes with no electrical effect in a snapshot power flow (meters, monitors, curves).
_IGNORED_CLASSES = {"energymeter", "monitor", "sensor"}
#: Control classes; frozen at the state chosen at import.
_CONTROL_CLASSES = {"regcontrol", "capcontrol", "swtcontrol", "fuse", "relay", "recloser"}
_UNITS = {0: "none", 1: "mi", 2: "kft", 3: "km", 4: "m", 5: "ft", 6: "in", 7: "cm", 8: "mm"}


class FeederImportError(ValueError):
    """An OpenDSS model could not be imported; the message names the file or element."""


@contextmanager
def opendss_engine():
    """A fresh OpenDSS engine context, and the working directory restored afterwards.

    A private context means no state leaks between users (the shared default context crashed on
    some compile sequences with DSS C-API 0.14.5). OpenDSS changes the process's working
    directory (``compile`` to the script's folder, possibly a temporary one deleted afterwards;
    a new context to the engine's start-up folder), so it is put back on exit.
    """
    try:
        cwd = os.getcwd()
    except FileNotFoundError:  # already gone (someone else's compile in a deleted folder)
        cwd = None
    try:
        yield _dss().NewContext()
    finally:
        if cwd is not None:
            os.chdir(cwd)


def _dss():
    try:
        import opendssdirect as dss  # why: loads the DSS C-API library; only on import (start-up time)
    except ImportError as exc:  # pragma: no cover - opendssdirect is a dependency
        raise ImportError("importing OpenDSS models needs opendssdirect.py") from exc
    return dss


# ---------------------------------------------------------------------------------------- staging
_REF = re.compile(r"^\s*(redirect|compile|buscoords)\s+(\"[^\"]+\"|\S+)", re.IGNORECASE)


def _resolve_ci(path: Path) -> Path | None:
    """``path`` with its final component matched case-insensitively, or None."""
    if path.exists():
        return path
    if not path.parent.is_dir():
        return None
    matches = [p for p in path.parent.iterdir() if p.name.lower() == path.name.lower()]
    return matches[0] if matches else None


def _missing_case_refs(master: Path, seen: set | None = None) -> list[tuple[Path, Path]]:
    """(referenced path, existing file) pairs that only match case-insensitively."""
    seen = set() if seen is None else seen
    if master in seen:
        return []
    seen.add(master)
    out = []
    for line in master.read_text(errors="replace").splitlines():
        m = _REF.match(line.split("!")[0].split("//")[0])
        if not m:
            continue
        ref = master.parent / m.group(2).strip('"')
        found = _resolve_ci(ref)
        if found is None:
            continue  # OpenDSS reports it with its own message
        if found != ref:
            out.append((ref, found))
        if m.group(1).lower() == "redirect":
            out += _missing_case_refs(found, seen)
    return out


def stage_master(master: Path, workdir: Path) -> Path:
    """Copy the model's folder to ``workdir`` and add files under the spellings the model uses.

    Models written on Windows often ``redirect`` a file under another letter case; on a
    case-sensitive file system OpenDSS then cannot find it. Staging leaves the user's files alone.
    """
    fixes = _missing_case_refs(master)
    if not fixes:
        return master
    root = master.parent
    dst = workdir / "model"
    shutil.copytree(root, dst)
    for ref, found in fixes:
        try:
            rel_ref, rel_found = ref.relative_to(root), found.relative_to(root)
        except ValueError:
            continue
        if not (dst / rel_ref).exists():
            shutil.copy(dst / rel_found, dst / rel_ref)
    return dst / master.name


# ---------------------------------------------------------------------------------------- helpers
def _cmd(dss, command: str, where: str) -> str:
    try:
        dss.Text.Command(command)
    except Exception as exc:  # DSSException
        raise FeederImportError(f"{where}: OpenDSS rejected {command!r}: {exc}") from None
    return dss.Text.Result()


def _node_name(bus_spec: str, node: int) -> str:
    return f"{bus_spec.split('.')[0].lower()}.{node}"


def _conductor_nodes(dss, lookup: dict[str, int], name: str) -> np.ndarray:
    buses = dss.CktElement.BusNames()
    order = dss.CktElement.NodeOrder()
    ncond = dss.CktElement.NumConductors()
    idx = []
    for k, node in enumerate(order):
        if node == 0:
            idx.append(-1)
            continue
        key = _node_name(buses[k // ncond], node)
        if key not in lookup:
            raise FeederImportError(f"{name}: conductor node {key!r} is not a circuit node")
        idx.append(lookup[key])
    return np.asarray(idx, dtype=np.int64)


def _yprim(dss) -> np.ndarray:
    flat = np.asarray(dss.CktElement.YPrim(), dtype=np.float64)
    k = int(round(math.sqrt(flat.size // 2)))
    return (flat[0::2] + 1j * flat[1::2]).reshape(k, k)


def _prop(dss, element: str, prop: str) -> str:
    return _cmd(dss, f"? {element}.{prop}", element).strip()


def _element_params(dss, name: str, cls: str) -> dict:
    """What the exporter needs besides ``y_prim`` (class-specific, JSON-ready)."""
    params: dict = {
        "phases": dss.CktElement.NumPhases(),
        "buses": list(dss.CktElement.BusNames()),
    }
    if cls == "line":
        dss.Lines.Name(name.split(".", 1)[1])
        params.update(normamps=dss.Lines.NormAmps(), emergamps=dss.Lines.EmergAmps())
    elif cls == "transformer":
        for p in ("windings", "conns", "kvs", "kvas", "taps", "%rs", "xscarray", "%noloadloss",
                  "%imag", "ppm_antifloat"):
            params[p] = _prop(dss, name, p)
    elif cls == "capacitor":
        for p in ("kvar", "kv", "conn", "states"):
            params[p] = _prop(dss, name, p)
    return params


# ---------------------------------------------------------------------------------------- import
def _apply_taps(dss, taps, where: str) -> dict:
    """Fix regulator taps; return the transformer taps actually in force (name -> [pu, ...])."""
    if taps == "solved":
        dss.Solution.Solve()
        if not dss.Solution.Converged():
            raise FeederImportError(f"{where}: OpenDSS did not converge while solving regulator taps")
    elif isinstance(taps, dict):
        names = {n.lower() for n in dss.Transformers.AllNames()}
        for reg, tap in taps.items():
            if reg.lower() not in names:
                raise FeederImportError(f"{where}: taps name transformer {reg!r}, which does not exist")
            if isinstance(tap, (list, tuple)):
                _cmd(dss, f"transformer.{reg}.taps=[{' '.join(map(repr, map(float, tap)))}]", where)
            else:
                _cmd(dss, f"transformer.{reg}.wdg=2 tap={float(tap)!r}", where)
    elif taps != "file":
        raise FeederImportError(f"{where}: taps must be 'solved', 'file' or a dict, got {taps!r}")
    _cmd(dss, "set controlmode=off", where)
    out = {}
    for tname in dss.Transformers.AllNames():
        dss.Transformers.Name(tname)
        w = dss.Transformers.NumWindings()
        vals = []
        for k in range(1, w + 1):
            dss.Transformers.Wdg(k)
            vals.append(dss.Transformers.Tap())
        out[tname.lower()] = vals
    return out


def _zip_split(dss, load: str, kw: float, kvar: float) -> np.ndarray:
    """Split a load's nominal power into [constant-power, constant-current, constant-Z] parts, kVA.

    OpenDSS load models: 1 constant PQ; 2 constant Z; 3 constant P, quadratic (Z) Q; 4 P and Q as
    V**cvrwatts and V**cvrvars (1 and 2 map to I and Z); 5 constant current magnitude; 6 constant
    P, fixed Q; 7 constant P, constant-impedance Q; 8 ZIPV coefficients.
    """
    model = dss.Loads.Model()
    p, q = kw, 1j * kvar
    if model in (1, 6):
        return np.array([p + q, 0, 0])
    if model == 2:
        return np.array([0, 0, p + q])
    if model in (3, 7):
        return np.array([p, 0, q])
    if model == 5:
        return np.array([0, p + q, 0])
    if model == 4:
        cvr = (dss.Loads.CVRwatts(), dss.Loads.CVRvars())
        exps = {0.0: 0, 1.0: 1, 2.0: 2}
        if cvr[0] not in exps or cvr[1] not in exps:
            raise FeederImportError(f"{load}: model 4 with cvrwatts={cvr[0]}, cvrvars={cvr[1]} "
                                    "is not a ZIP load (exponents must be 0, 1 or 2)")
        out = np.zeros(3, dtype=np.complex128)
        out[exps[cvr[0]]] += p
        out[exps[cvr[1]]] += q
        return out
    if model == 8:
        zp, ip, pp, zq, iq, pq = dss.Loads.ZipV()[:6]
        return np.array([pp * p + pq * q, ip * p + iq * q, zp * p + zq * q])
    raise FeederImportError(f"{load}: OpenDSS load model {model} is not supported")


def _load_terms(dss, lookup, load: str) -> tuple[list, dict]:
    """Two-terminal terms of the active load: [(a, b, zip_kva, vnom_v)], and its export params."""
    phases = dss.CktElement.NumPhases()
    nodes = _conductor_nodes(dss, lookup, load)
    s = _zip_split(dss, load, dss.Loads.kW(), dss.Loads.kvar())
    kv = dss.Loads.kV()
    delta = dss.Loads.IsDelta()
    params = {"bus1": dss.CktElement.BusNames()[0], "phases": phases, "conn": "delta" if delta else "wye",
              "kv": kv, "kw": dss.Loads.kW(), "kvar": dss.Loads.kvar(), "model": dss.Loads.Model()}
    if delta:
        if phases == 1:
            pairs = [(nodes[0], nodes[1])]
        elif phases >= 3:
            pairs = [(nodes[i], nodes[(i + 1) % phases]) for i in range(phases)]
        else:
            raise FeederImportError(f"{load}: two-phase delta loads are not supported")
        vnom = kv * 1e3
    else:
        neutral = nodes[phases] if len(nodes) > phases else -1
        pairs = [(nodes[i], neutral) for i in range(phases)]
        vnom = kv * 1e3 if phases == 1 else kv * 1e3 / math.sqrt(3)
    terms = []
    for a, b in pairs:
        if a == b or a < 0:
            raise FeederImportError(f"{load}: a load term connects node {a} to itself or to ground only")
        terms.append((int(a), int(b), s / len(pairs), vnom))
    return terms, params


def _source(dss, lookup, name: str) -> tuple[Element, np.ndarray]:
    dss.Vsources.Name(name.split(".", 1)[1])
    nodes = _conductor_nodes(dss, lookup, name)
    k = dss.CktElement.NumConductors()
    if np.any(nodes[k:] >= 0):
        raise FeederImportError(f"{name}: a source whose second terminal is not grounded is not supported")
    n = dss.Vsources.Phases()
    vmag = dss.Vsources.BasekV() * dss.Vsources.PU() * 1e3
    if n > 1:
        vmag /= 2.0 * math.sin(math.pi / n)  # OpenDSS: line-to-line base -> phase EMF
    ang = np.deg2rad(dss.Vsources.AngleDeg() - 360.0 / n * np.arange(n))
    emf = np.zeros(k, dtype=np.complex128)
    emf[:n] = vmag * np.exp(1j * ang)
    params = {"phases": n, "buses": list(dss.CktElement.BusNames()), "basekv": dss.Vsources.BasekV(),
              "pu": dss.Vsources.PU(), "angle": dss.Vsources.AngleDeg(),
              "frequency": dss.Vsources.Frequency()}
    return Element(name, nodes, _yprim(dss), params), emf


def import_opendss(master: str | Path, *, name: str | None = None, taps="solved") -> Feeder:
    """Compile an OpenDSS master file and return the :class:`Feeder` the solver uses.

    Parameters
    ----------
    master: path of the OpenDSS master file (``.dss``).
    name: feeder name; default the OpenDSS circuit name.
    taps: regulator taps. ``"solved"`` (default): solve with the model's controls and freeze the
        taps OpenDSS settles on; ``"file"``: the taps as the script leaves them; a dict
        ``{transformer: tap}`` sets winding 2's tap (pu), or all windings' taps given a list.

    Raises
    ------
    FeederImportError: missing/unreadable file, a script OpenDSS rejects, or an element the
        solver cannot represent (named in the message).
    """
    master = Path(master)
    if not master.is_file():
        raise FeederImportError(f"{master}: OpenDSS master file not found")
    resolved = master.resolve()
    with opendss_engine() as dss:
        with tempfile.TemporaryDirectory() as tmp:
            staged = stage_master(resolved, Path(tmp))
            _cmd(dss, "clear", str(master))
            _cmd(dss, f'compile "{staged}"', str(master))
            if dss.Basic.NumCircuits() == 0 or not dss.Circuit.Name():
                raise FeederImportError(f"{master}: the script defines no circuit")
            tap_values = _apply_taps(dss, taps, str(master))
            dss.Solution.Solve()  # builds every element's YPrim at the frozen taps
            return _read_circuit(dss, master, name, taps, tap_values)


def _read_circuit(dss, master: Path, name, taps, tap_values) -> Feeder:
    where = str(master)
    nodes = tuple(n.lower() for n in dss.Circuit.YNodeOrder())
    lookup = {n: i for i, n in enumerate(nodes)}
    base = np.zeros(len(nodes))
    coords = {}
    for bus in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(bus)
        kvb = dss.Bus.kVBase()
        for node in dss.Bus.Nodes():
            base[lookup[f"{bus.lower()}.{node}"]] = kvb
        if dss.Bus.Coorddefined():
            coords[bus.lower()] = (dss.Bus.X(), dss.Bus.Y())
    missing = [nodes[i] for i in np.flatnonzero(base <= 0)]
    if missing:
        raise FeederImportError(f"{where}: no voltage base for nodes {missing[:5]}; add "
                                "'Set VoltageBases=[...]' and 'CalcVoltageBases' to the script")

    pd_names = set()
    if dss.PDElements.First():
        while True:
            pd_names.add(dss.PDElements.Name().lower())
            if not dss.PDElements.Next():
                break

    elements, lines, normamps, frozen, ignored = [], [], [], [], []
    load_names, load_params, terms = [], [], []
    source = emf = None
    for full in dss.Circuit.AllElementNames():
        el = full.lower()
        cls = el.split(".", 1)[0]
        dss.Circuit.SetActiveElement(full)
        if not dss.CktElement.Enabled():
            ignored.append(el)
            continue
        if el in pd_names:
            params = _element_params(dss, el, cls)
            if cls == "line":
                lines.append(len(elements))
                normamps.append(params["normamps"])
            elements.append(Element(el, _conductor_nodes(dss, lookup, el), _yprim(dss), params))
        elif cls == "load":
            dss.Loads.Name(el.split(".", 1)[1])
            t, params = _load_terms(dss, lookup, el)
            terms += [(len(load_names),) + x for x in t]
            load_names.append(el)
            load_params.append(params)
        elif cls == "vsource":
            if source is not None:
                raise FeederImportError(f"{el}: a second voltage source is not supported "
                                        f"(the feeder already has {source.name})")
            source, emf = _source(dss, lookup, el)
        elif cls in _CONTROL_CLASSES:
            frozen.append(el)
        elif cls in _IGNORED_CLASSES:
            ignored.append(el)
        else:
            raise FeederImportError(f"{el}: element class {cls!r} is not supported by the solver")
    if source is None:
        raise FeederImportError(f"{where}: the circuit has no Vsource")

    loadmult = dss.Solution.LoadMult()
    t = list(zip(*terms, strict=True)) if terms else [[], [], [], [], []]
    try:  # the Feeder checks itself (every bus has a path to the source)
        return Feeder(
            name=name or dss.Circuit.Name().lower(),
            nodes=nodes,
            base_kv_ln=base,
            elements=tuple(elements),
            source=source,
            source_emf_v=emf,
            lines=np.asarray(lines, dtype=np.int64),
            line_normamps=np.asarray(normamps, dtype=np.float64),
            load_names=tuple(load_names),
            load_params=tuple(load_params),
            term_load=np.asarray(t[0], dtype=np.int64),
            term_a=np.asarray(t[1], dtype=np.int64),
            term_b=np.asarray(t[2], dtype=np.int64),
            term_zip_kva=np.asarray(t[3], dtype=np.complex128).reshape(-1, 3) * loadmult,
            term_vnom_v=np.asarray(t[4], dtype=np.float64),
            bus_coords=coords,
            taps=tap_values,
            meta={
                "source_file": master.name,
                "importer_version": IMPORTER_VERSION,
                "taps": taps if isinstance(taps, str) else "given",
                "frequency_hz": dss.Solution.Frequency(),
                "opendss": dss.Basic.Version().splitlines()[0],
                "frozen_controls": frozen,
                "ignored": ignored,
            },
        )
    except ValueError as exc:
        raise FeederImportError(f"{where}: {exc}") from None
