"""Import an OpenDSS model into a :class:`~gridedge_env.network.feeder.Feeder`.

This is the only module that drives OpenDSS for import (through ``opendssdirect.py``). It compiles
the master file (staged by :mod:`.staging`: commands that solve, show, export or plot are not
run), solves the snapshot with the model's controls until OpenDSS settles, and reads every
power-delivery element's primitive admittance matrix exactly as OpenDSS builds it, so
transformers and regulators of every connection OpenDSS supports, lines with full impedance and
shunt matrices, switches, capacitors (at their settled states) and reactors are represented
without re-deriving OpenDSS's models. Loads are read as parameters (model, connection, kW, kvar,
kV) and become two-terminal terms that the solver evaluates itself. Generators, PV systems and
storage become the same terms at their snapshot output, with negative consumption
(:data:`GENERATION_MODELS`; ``load_params[i]["kind"]`` tells them from loads).

Anything the solver cannot represent (a generator model such as 3, constant kV, current
sources, inverter controls, a second voltage source, two-phase delta connections, ...) is an
:class:`FeederImportError` naming the element. Controls (RegControl, CapControl, ...) are frozen
at the taps/states chosen by ``taps`` and reported in ``feeder.meta["controls"]``; meters and
monitors have no electrical effect. Both are listed in ``feeder.meta["frozen_controls"]`` and
``feeder.meta["ignored"]``.
"""
from __future__ import annotations

import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..network.feeder import Element, Feeder
from .staging import stage_master

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
#: Power-flow and control iteration limits the import's snapshot solve is raised to, in turn,
#: until OpenDSS settles (large feeders need more than OpenDSS's defaults of 15 and 10).
CONTROL_ITERATION_LIMITS = ((100, 100), (1000, 1000))


def _solve(dss, where: str) -> None:
    try:
        dss.Solution.Solve()
    except Exception as exc:  # DSSException: OpenDSS reports some failures as errors
        raise FeederImportError(f"{where}: OpenDSS failed to solve: {exc}") from None


def _settle_controls(dss, where: str) -> None:
    """Solve the snapshot with the model's controls (RegControl, CapControl, ...) until OpenDSS
    settles, raising ``maxiterations``/``maxcontroliter`` through
    :data:`CONTROL_ITERATION_LIMITS` (never below the script's own); each further try goes on
    from the state the previous one reached. Raises naming what was tried."""
    tried = []
    for max_iter, max_control in CONTROL_ITERATION_LIMITS:
        max_iter = max(max_iter, dss.Solution.MaxIterations())
        max_control = max(max_control, dss.Solution.MaxControlIterations())
        dss.Solution.MaxIterations(max_iter)
        dss.Solution.MaxControlIterations(max_control)
        _solve(dss, where)
        if dss.Solution.Converged():
            return
        tried.append(f"maxiterations={max_iter} maxcontroliter={max_control}: "
                     f"{dss.Solution.Iterations()} iterations, "
                     f"{dss.Solution.ControlIterations()} control iterations")
    raise FeederImportError(f"{where}: OpenDSS did not settle the regulator taps and capacitor "
                            f"states (tried {'; '.join(tried)}); import with taps='file' or "
                            "a dict of taps to skip the controls")


def control_states(dss) -> dict:
    """The state the active circuit's controls are in: ``{"regcontrol.x": {"transformer",
    "winding", "tap_position", "tap"}, "capcontrol.y": {"capacitor", "states"}}`` (tap in pu
    of the winding's rated voltage, states 1 = step closed)."""
    out: dict = {}
    reg, cap = dss.RegControls, dss.CapControls
    ok = reg.First()
    while ok:
        name, xf, wdg = reg.Name().lower(), reg.Transformer().lower(), reg.Winding()
        dss.Transformers.Name(xf)
        dss.Transformers.Wdg(wdg)
        out[f"regcontrol.{name}"] = {"transformer": xf, "winding": wdg,
                                     "tap_position": reg.TapNumber(), "tap": dss.Transformers.Tap()}
        ok = reg.Next()
    ok = cap.First()
    while ok:
        name, capacitor = cap.Name().lower(), cap.Capacitor().lower()
        dss.Capacitors.Name(capacitor)
        out[f"capcontrol.{name}"] = {"capacitor": capacitor,
                                     "states": [int(x) for x in dss.Capacitors.States()]}
        ok = cap.Next()
    return out


def _apply_taps(dss, taps, where: str) -> dict:
    """Fix regulator taps; return the transformer taps actually in force (name -> [pu, ...])."""
    if taps == "solved":
        _settle_controls(dss, where)
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


def _connection_terms(name: str, nodes: np.ndarray, phases: int, delta: bool, kv: float,
                      s_zip: np.ndarray) -> list[tuple]:
    """Two-terminal terms ``[(a, b, zip_kva (3,), vnom_v)]`` of a load-like element (a load, or
    a generator as negative consumption) with conductor ``nodes``; ``s_zip`` is its total
    consumed kVA split into [P, I, Z] parts, shared equally by the terms. OpenDSS's voltage
    base: ``kv`` line-to-line for two or more wye phases, across the element otherwise."""
    if delta:
        if phases == 1:
            pairs = [(nodes[0], nodes[1])]
        elif phases >= 3:
            pairs = [(nodes[i], nodes[(i + 1) % phases]) for i in range(phases)]
        else:
            raise FeederImportError(f"{name}: two-phase delta connections are not supported")
        vnom = kv * 1e3
    else:
        neutral = nodes[phases] if len(nodes) > phases else -1
        pairs = [(nodes[i], neutral) for i in range(phases)]
        vnom = kv * 1e3 if phases == 1 else kv * 1e3 / math.sqrt(3)
    terms = []
    for a, b in pairs:
        if a == b or a < 0:
            raise FeederImportError(f"{name}: a term connects node {a} to itself or to ground only")
        terms.append((int(a), int(b), s_zip / len(pairs), vnom))
    return terms


def _load_terms(dss, lookup, load: str) -> tuple[list, dict]:
    """Two-terminal terms of the active load: [(a, b, zip_kva, vnom_v)], and its export params."""
    phases = dss.CktElement.NumPhases()
    s = _zip_split(dss, load, dss.Loads.kW(), dss.Loads.kvar())
    kv = dss.Loads.kV()
    delta = dss.Loads.IsDelta()
    params = {"bus1": dss.CktElement.BusNames()[0], "phases": phases, "conn": "delta" if delta else "wye",
              "kv": kv, "kw": dss.Loads.kW(), "kvar": dss.Loads.kvar(), "model": dss.Loads.Model()}
    nodes = _conductor_nodes(dss, lookup, load)
    return _connection_terms(load, nodes, phases, delta, kv, s), params


#: Generation classes and the OpenDSS snapshot models imported, each as the ZIP parts its
#: (P, Q) sit in (0 constant power, 2 constant impedance at the element's voltage base).
#: Generator: 1 constant kW, kvar; 2 constant admittance; 4 constant kW, fixed kvar; 5 constant
#: kW, kvar as a constant reactance; 7 constant kW, kvar (current-limited below ``vminpu``,
#: where the solver does not follow it, as for every model's voltage band). PVSystem and
#: Storage: 1 constant kW, kvar; 2 constant admittance.
GENERATION_MODELS = {
    "generator": {1: (0, 0), 2: (2, 2), 4: (0, 0), 5: (0, 2), 7: (0, 0)},
    "pvsystem": {1: (0, 0), 2: (2, 2)},
    "storage": {1: (0, 0), 2: (2, 2)},
}


def _generation_output(dss, el: str, cls: str) -> tuple[float, float, dict]:
    """(kW, kvar) the active generation element delivers in the solved snapshot (OpenDSS's
    own present output: ``genmult``, PV irradiance, efficiency and temperature curves, cut-in,
    kVA limits with their priority, storage state and idling losses applied), and the
    class-specific parameters kept for reports."""
    short = el.split(".", 1)[1]
    if cls == "generator":
        dss.Generators.Name(short)
        return dss.Generators.kW(), dss.Generators.kvar(), {}
    if cls == "pvsystem":
        dss.PVsystems.Name(short)
        extra = {"pmpp": dss.PVsystems.Pmpp(), "irradiance": dss.PVsystems.IrradianceNow(),
                 "kva": dss.PVsystems.kVARated()}
        return dss.PVsystems.kW(), dss.PVsystems.kvar(), extra
    extra = {"state": _prop(dss, el, "state").lower(), "kwrated": float(_prop(dss, el, "kwrated"))}
    return float(_prop(dss, el, "kw")), float(_prop(dss, el, "kvar")), extra


def _generation_terms(dss, lookup, el: str, cls: str) -> tuple[list, dict]:
    """Terms of the active generator, PV system or storage at its snapshot output, as
    consumption (kW + j kvar delivered enter with a minus sign), and its params
    (``kind`` = the class; ``kw``/``kvar`` delivered, OpenDSS's sign)."""
    model = int(float(_prop(dss, el, "model")))
    parts = GENERATION_MODELS[cls].get(model)
    if parts is None:
        raise FeederImportError(f"{el}: {cls} model {model} is not supported by the solver "
                                f"(supported: models {sorted(GENERATION_MODELS[cls])})")
    kw, kvar, extra = _generation_output(dss, el, cls)
    s = np.zeros(3, dtype=np.complex128)
    s[parts[0]] -= kw
    s[parts[1]] -= 1j * kvar
    phases = dss.CktElement.NumPhases()
    delta = _prop(dss, el, "conn").lower().startswith("d")
    kv = float(_prop(dss, el, "kv"))
    params = {"kind": cls, "bus1": dss.CktElement.BusNames()[0], "phases": phases,
              "conn": "delta" if delta else "wye", "kv": kv, "kw": kw, "kvar": kvar,
              "model": model, **extra}
    nodes = _conductor_nodes(dss, lookup, el)
    return _connection_terms(el, nodes, phases, delta, kv, s), params


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


def import_opendss(master: str | Path, *, name: str | None = None, taps="solved",
                   control_load_mult: float = 1.0) -> Feeder:
    """Compile an OpenDSS master file and return the :class:`Feeder` the solver uses.

    Parameters
    ----------
    master: path of the OpenDSS master file (``.dss``).
    name: feeder name; default the OpenDSS circuit name.
    taps: regulator taps and capacitor states. ``"solved"`` (default): solve the snapshot with
        the model's controls (iteration limits raised through
        :data:`CONTROL_ITERATION_LIMITS`) and freeze the taps and capacitor states OpenDSS
        settles on; ``"file"``: as the script leaves them; a dict ``{transformer: tap}`` sets
        winding 2's tap (pu), or all windings' taps given a list (capacitors as the script
        leaves them). Either way ``meta["controls"]`` reports each RegControl's tap and each
        CapControl's capacitor states (:func:`control_states`).
    control_load_mult: with ``taps="solved"``, the controls settle with every load times this
        factor (OpenDSS ``loadmult``): a household scenario's typical load rather than the
        model's peak design load. The feeder's loads stay as written either way.

    Raises
    ------
    FeederImportError: missing/unreadable file, a script OpenDSS rejects, controls that do not
        settle (naming the limits tried), or an element or model the solver cannot represent
        (named in the message).
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
            if dss.Solution.Mode() != 0:  # the script chose a time series; import solves a snapshot
                _cmd(dss, "set mode=snapshot", str(master))
            if not 0 < control_load_mult < 10:
                raise FeederImportError(f"{master}: control_load_mult must be in (0, 10), got "
                                        f"{control_load_mult}")
            _cmd(dss, f"set loadmult={float(control_load_mult)!r}", str(master))
            tap_values = _apply_taps(dss, taps, str(master))
            _cmd(dss, "set loadmult=1", str(master))
            controls = control_states(dss)
            # builds every element's YPrim at the frozen taps and capacitor states, and the
            # generators' snapshot outputs
            _solve(dss, str(master))
            return _read_circuit(dss, master, name, taps, tap_values, controls)


def _read_circuit(dss, master: Path, name, taps, tap_values, controls) -> Feeder:
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
        elif cls in ("load", *GENERATION_MODELS):
            if cls == "load":
                dss.Loads.Name(el.split(".", 1)[1])
                t, params = _load_terms(dss, lookup, el)
            else:
                t, params = _generation_terms(dss, lookup, el, cls)
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
                "controls": controls,
                "ignored": ignored,
            },
        )
    except ValueError as exc:
        raise FeederImportError(f"{where}: {exc}") from None
