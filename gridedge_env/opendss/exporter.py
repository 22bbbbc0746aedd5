"""Write a :class:`~gridedge_env.network.feeder.Feeder` (with given loads) as an OpenDSS script.

The script is self-contained (no redirects, no line codes) and re-creates the network element by
element, so any scenario the solver sees can be re-solved by OpenDSS:

- the source as ``New Circuit`` with sequence impedances derived from its Thevenin admittance;
- lines from their primitive admittances: series impedance and shunt capacitance matrices of the
  whole line (``length=1 units=none``, so ohms and nF in total);
- transformers and capacitors from the OpenDSS properties the importer kept, transformer taps as
  the feeder has them now (see :meth:`Feeder.with_taps`);
- reactors from their primitive admittances (:func:`reactor_impedance`): a two-terminal reactor
  (series, or a wye shunt whose second bus is ``<bus>.0.0.0``) as its impedance matrix
  ``rmatrix``/``xmatrix``, a delta shunt reactor as the ``R``/``X`` of each phase-to-phase
  branch;
- the loads, scaled per load, plus optional wye injections ``inj_<bus>_<phase>``;
- generators, PV systems and storage (``load_params[i]["kind"]``) at their imported snapshot
  output, as OpenDSS Generators (:func:`generation_parts`: model 1 for the constant-power part,
  model 2 for a constant-impedance part, voltage band ``vminpu=0 vmaxpu=10`` so they stay in
  model as in the solver); a PV system or storage element is therefore re-imported as a
  generator;
- every bus's voltage base (``SetkVBase``), bus coordinates (``SetBusXY``) and
  ``Set ControlMode=OFF``: controls are not exported, taps and capacitor states are fixed.

Elements of other classes (faults, autotransformers, ...) raise :class:`ValueError` naming
them.

Loads: OpenDSS turns a load of any model into a constant impedance when its voltage leaves
``[vminpu, vmaxpu]`` (default 0.95-1.05 pu); the solver never does. ``load_model`` chooses:

- ``"pq"`` (default, as :class:`~gridedge_env.PowerFlow`'s default): every load constant power,
  OpenDSS ``model=1`` with ``vminpu=0 vmaxpu=10 vlowpu=0`` so it stays constant power;
- ``"zip"``: as the solver's ``load_model="zip"``: a load's constant-power, -current and
  -impedance parts become loads of OpenDSS models 1, 5 and 2 (``<name>``, ``<name>_i``,
  ``<name>_z``), all with the wide voltage band;
- ``"opendss"``: each load as in the source model (its own OpenDSS ``model``, CVR exponents of
  model 4 included) and its own voltage band, i.e. the original OpenDSS behaviour. The band is
  ``load_params["vminpu"]`` / ``["vmaxpu"]`` where the feeder has them, else OpenDSS's default
  (0.95 / 1.05 pu): the importer does not record them yet, so a model that changes them (the
  IEEE 34 feeder sets ``vminpu=0.85``) is re-created with the default band. Model-8 ZIPV loads
  raise (their cut-off voltage is not kept).

``pq_loads=True`` is shorthand for ``load_model="pq"`` and ``pq_loads=False`` for
``"opendss"``. Injections are always constant power with the wide band.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..network.feeder import Element, Feeder

_LOAD_BAND = "vminpu=0 vmaxpu=10 vlowpu=0"
_LOAD_MODELS = ("pq", "zip", "opendss")
#: OpenDSS load models the "opendss" mode writes from ``load_params`` alone. Model 4 (CVR) also
#: works: its exponents (0, 1 or 2) are read back from the load's ZIP split. Model 8 (ZIPV) does
#: not: the feeder does not keep its cut-off voltage.
_PLAIN_MODELS = {1, 2, 3, 5, 6, 7}


def _num(x: float) -> str:
    return repr(float(x))


def _matrix(m: np.ndarray) -> str:
    """Lower-triangular OpenDSS matrix ``[a | b c | d e f]`` of a symmetric matrix."""
    return "[" + " | ".join(" ".join(_num(v) for v in m[i, : i + 1]) for i in range(len(m))) + "]"


def _short(el: Element) -> str:
    return el.name.split(".", 1)[1]


def _circuit_name(name: str) -> str:
    """An OpenDSS-safe circuit name (no dots, spaces or quotes)."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "gridedge"


# ---------------------------------------------------------------------------------------- elements
def source_sequence_impedances(feeder: Feeder) -> tuple[complex, complex]:
    """``(Z1, Z0)`` of the source, ohms, from its terminal-1 admittance block.

    ``Zs = inv(Y11)``; ``Z1 = Zself - Zmut`` and ``Z0 = Zself + 2 Zmut`` with the mean diagonal
    and off-diagonal entries. Raises :class:`ValueError` if those do not reproduce ``Zs`` to
    1e-9 (a source impedance that is not a balanced sequence impedance).
    """
    src = feeder.source
    k = len(feeder.source_emf_v)
    zs = np.linalg.inv(src.y_prim[:k, :k])
    z_self = np.mean(np.diag(zs))
    z_mut = np.mean(zs[~np.eye(k, dtype=bool)]) if k > 1 else 0.0
    rebuilt = np.full((k, k), z_mut, dtype=np.complex128)
    np.fill_diagonal(rebuilt, z_self)
    if np.abs(rebuilt - zs).max() > 1e-9 * np.abs(zs).max():
        raise ValueError(f"cannot export {src.name}: its impedance matrix is not balanced "
                         "(equal self and equal mutual impedances), so R1 X1 R0 X0 cannot "
                         "represent it")
    return complex(z_self - z_mut), complex(z_self + 2 * z_mut)


def _source(f: Feeder) -> str:
    z1, z0 = source_sequence_impedances(f)
    p = f.source.params
    freq = p.get("frequency", f.meta.get("frequency_hz", 60.0))
    return (f"New Circuit.{_circuit_name(f.name)} basekv={_num(p['basekv'])} pu={_num(p['pu'])} "
            f"angle={_num(p['angle'])} phases={p['phases']} bus1={p['buses'][0]} "
            f"R1={_num(z1.real)} X1={_num(z1.imag)} R0={_num(z0.real)} X0={_num(z0.imag)} "
            f"frequency={_num(freq)} basefreq={_num(freq)}")


def line_matrices(el: Element, freq: float) -> tuple[np.ndarray, np.ndarray]:
    """Series impedance (ohms, ``(k, k)`` complex) and shunt capacitance (farads, ``(k, k)``) of
    the whole line from its ``(2k, 2k)`` primitive admittance at ``freq`` Hz.

    ``Ys = -Y12`` and half the shunt ``Y11 - Ys`` at each end (the OpenDSS pi model). Raises
    :class:`ValueError` naming the line if the two ends differ or the shunt has a conductance.
    """
    y = el.y_prim
    k = y.shape[0] // 2
    if y.shape != (2 * k, 2 * k):
        raise ValueError(f"cannot export {el.name}: y_prim has shape {y.shape}, not (2k, 2k)")
    ys = -y[:k, k:]
    half = y[:k, :k] - ys
    scale = max(np.abs(y).max(), 1e-300)
    if (np.abs(y[k:, k:] - y[:k, :k]).max() > 1e-9 * scale
            or np.abs(y[k:, :k] - y[:k, k:]).max() > 1e-9 * scale):
        raise ValueError(f"cannot export {el.name}: its primitive admittance is not a symmetric "
                         "pi model (terminal blocks differ)")
    if np.abs(half.real).max() > 1e-9 * scale:
        raise ValueError(f"cannot export {el.name}: its shunt admittance has a conductance part "
                         f"({np.abs(half.real).max():.3e} S), which an OpenDSS Line cannot hold")
    return np.linalg.inv(ys), 2 * half.imag / (2 * math.pi * freq)


def _line(el: Element, freq: float) -> str:
    z, c = line_matrices(el, freq)
    p = el.params
    normamps = p.get("normamps", 400.0)
    return (f"New Line.{_short(el)} phases={len(z)} bus1={p['buses'][0]} bus2={p['buses'][1]} "
            f"length=1 units=none rmatrix={_matrix(z.real)} xmatrix={_matrix(z.imag)} "
            f"cmatrix={_matrix(c * 1e9)} normamps={_num(normamps)} "
            f"emergamps={_num(p.get('emergamps', normamps))}")


_TRANSFORMER_FIELDS = ("phases", "buses", "windings", "conns", "kvs", "kvas", "taps", "%rs",
                       "xscarray", "%noloadloss", "%imag", "ppm_antifloat")


def _require(el: Element, fields) -> dict:
    missing = [k for k in fields if k not in el.params]
    if missing:
        raise ValueError(f"cannot export {el.name}: params lack {missing} (re-import the feeder)")
    return el.params


def _transformer(el: Element, taps: dict) -> str:
    p = _require(el, _TRANSFORMER_FIELDS)
    tap_list = taps.get(_short(el))
    tap_str = "[" + " ".join(_num(t) for t in tap_list) + "]" if tap_list else p["taps"]
    return (f"New Transformer.{_short(el)} phases={p['phases']} windings={p['windings']} "
            f"buses=[{' '.join(p['buses'])}] conns={p['conns']} kvs={p['kvs']} kvas={p['kvas']} "
            f"taps={tap_str} %rs={p['%rs']} xscarray={p['xscarray']} "
            f"%noloadloss={p['%noloadloss']} %imag={p['%imag']} ppm_antifloat={p['ppm_antifloat']}")


def reactor_impedance(el: Element) -> tuple[str, np.ndarray]:
    """``(conn, Z)`` of a reactor from its primitive admittance: ohms, as OpenDSS's Reactor takes it.

    - ``"wye"``: two terminals of ``k = phases`` conductors each (a series reactor, or a wye shunt
      one whose second terminal is grounded), ``y_prim = [[Y, -Y], [-Y, Y]]``; ``Z = inv(Y)``,
      ``(k, k)`` complex (series resistance, reactance and any parallel resistance folded in).
    - ``"delta"``: one terminal (a delta shunt reactor), equal branches ``y`` between phases
      ``i`` and ``i + 1`` (one branch between the two conductors of a single-phase one);
      ``Z = [[1 / y]]``, ``(1, 1)``.

    Raises :class:`ValueError` naming the reactor if ``y_prim`` is neither, or its admittance is
    singular or not symmetric (no OpenDSS Reactor has such a ``YPrim``).
    """
    p = _require(el, ("phases", "buses"))
    y, k, terminals = el.y_prim, int(p["phases"]), len(p["buses"])
    scale = max(np.abs(y).max(), 1e-300)
    if terminals == 2 and y.shape == (2 * k, 2 * k):
        ys = -y[:k, k:]
        pairs = ((y[:k, :k], ys), (y[k:, k:], ys), (y[k:, :k], y[:k, k:]), (ys, ys.T))
        if max(np.abs(got - want).max() for got, want in pairs) > 1e-9 * scale:
            raise ValueError(f"cannot export {el.name}: its primitive admittance is not "
                             "[[Y, -Y], [-Y, Y]] with a symmetric Y (a two-terminal reactor)")
        if np.linalg.cond(ys) > 1e12:
            raise ValueError(f"cannot export {el.name}: its series admittance is singular, so it "
                             "has no impedance matrix")
        return "wye", np.linalg.inv(ys)
    if terminals != 1 or k == 2 or y.shape != (max(k, 2),) * 2 or y[0, 1] == 0:
        raise ValueError(f"cannot export {el.name}: y_prim has shape {y.shape} for {k} phase(s) "
                         f"and {terminals} bus(es), neither a two-terminal reactor nor a delta "
                         "shunt one")
    branch = -y[0, 1]
    a = np.arange(k)  # branches a -> a + 1 around the delta (0 -> 1 alone for one phase)
    b = (a + 1) % max(k, 2)
    rebuilt = np.zeros_like(y)
    np.add.at(rebuilt, (np.r_[a, b, a, b], np.r_[a, b, b, a]),
              np.repeat([branch, branch, -branch, -branch], len(a)))
    if np.abs(rebuilt - y).max() > 1e-9 * scale:
        raise ValueError(f"cannot export {el.name}: its delta branches differ, and an OpenDSS "
                         "delta Reactor has one R and X for all of them")
    return "delta", np.array([[1 / branch]])


def _reactor(el: Element) -> str:
    conn, z = reactor_impedance(el)
    p = el.params
    head = f"New Reactor.{_short(el)} phases={p['phases']} bus1={p['buses'][0]}"
    if conn == "delta":
        return f"{head} conn=delta R={_num(z[0, 0].real)} X={_num(z[0, 0].imag)}"
    return (f"{head} bus2={p['buses'][1]} rmatrix={_matrix(z.real)} "
            f"xmatrix={_matrix(z.imag)}")


def _capacitor(el: Element) -> str:
    p = _require(el, ("phases", "buses", "kvar", "kv", "conn", "states"))
    steps = len(re.findall(r"[^\s,\[\]\"']+", str(p["kvar"])))  # kvar per step: "[ 600]"
    bus2 = f" bus2={p['buses'][1]}" if len(p["buses"]) > 1 else ""
    return (f"New Capacitor.{_short(el)} phases={p['phases']} bus1={p['buses'][0]}{bus2} "
            f"numsteps={max(steps, 1)} kvar={p['kvar']} kv={p['kv']} conn={p['conn']} "
            f"states={p['states']}")


# ---------------------------------------------------------------------------------------- loads
def load_parts(f: Feeder, load_model: str) -> list[tuple[str, complex, int, int]]:
    """The OpenDSS loads the export writes: ``(name, kVA at scale 1, OpenDSS model, load index)``.

    The kVA (kW + j kvar) is the load's nominal power as the solver has it (the sum of its terms,
    OpenDSS ``loadmult`` included). ``"pq"``: one constant-PQ load per feeder load; ``"zip"``:
    its constant-power part under the load's own name, and its constant-current / -impedance
    parts (if any) as ``<name>_i`` (model 5) and ``<name>_z`` (model 2); ``"opendss"``: one load
    per feeder load with its own OpenDSS model.
    """
    if load_model not in _LOAD_MODELS:
        raise ValueError(f"load_model must be one of {_LOAD_MODELS}, got {load_model!r}")
    zip_kva = np.zeros((f.n_loads, 3), dtype=np.complex128)
    np.add.at(zip_kva, f.term_load, f.term_zip_kva)
    out = []
    for li, name in enumerate(f.load_names):
        if f.load_params[li].get("kind", "load") != "load":
            continue  # generation: _generation
        short = name.split(".", 1)[1]
        if load_model == "opendss":
            model = int(f.load_params[li].get("model", 1))
            if model not in _PLAIN_MODELS | {4}:
                raise ValueError(f"cannot export {name} with its own OpenDSS model {model}: the "
                                 "feeder does not keep all of its parameters; use "
                                 "load_model='zip' (same ZIP split) or 'pq'")
            out.append((short, complex(zip_kva[li].sum()), model, li))
        elif load_model == "pq":
            out.append((short, complex(zip_kva[li].sum()), 1, li))
        else:
            for part, (suffix, model) in enumerate((("", 1), ("_i", 5), ("_z", 2))):
                if part == 0 or zip_kva[li, part] != 0:
                    out.append((short + suffix, complex(zip_kva[li, part]), model, li))
    return out


def _loads(f: Feeder, scale: np.ndarray, load_model: str) -> list[str]:
    zip_kva = np.zeros((f.n_loads, 3), dtype=np.complex128)
    np.add.at(zip_kva, f.term_load, f.term_zip_kva)
    out = []
    for name, s, model, li in load_parts(f, load_model):
        p, s = f.load_params[li], s * scale[li]
        extra = _cvr_exponents(f.load_names[li], zip_kva[li]) if model == 4 else ""
        if load_model != "opendss":
            band = f" {_LOAD_BAND}"
        else:  # the load's own band if the feeder kept it, else OpenDSS's default
            band = "".join(f" {k}={_num(p[k])}" for k in ("vminpu", "vmaxpu") if k in p)
        out.append(f"New Load.{name} bus1={p['bus1']} phases={p['phases']} conn={p['conn']} "
                   f"kv={_num(p['kv'])} kw={_num(s.real)} kvar={_num(s.imag)} "
                   f"model={model}{extra}{band}")
    return out


def generation_parts(f: Feeder, load_model: str) -> list[tuple[str, complex, int, int]]:
    """The OpenDSS Generators the export writes for the feeder's generators, PV systems and
    storage (``load_params[i]["kind"]``): ``(name, kVA delivered at scale 1, OpenDSS generator
    model, load index)``. Each is written at its snapshot output as a Generator named
    ``<short name>`` (generators) or ``<kind>_<short name>`` (others): its constant-power part
    as model 1 and its constant-impedance part (if any, and not ``load_model="pq"``) as model 2
    ``<name>_z``, which OpenDSS solves exactly as the imported element."""
    zip_kva = np.zeros((f.n_loads, 3), dtype=np.complex128)
    np.add.at(zip_kva, f.term_load, f.term_zip_kva)
    out = []
    for li, (name, p) in enumerate(zip(f.load_names, f.load_params, strict=True)):
        kind = p.get("kind", "load")
        if kind == "load":
            continue
        if zip_kva[li, 1] != 0:
            raise ValueError(f"cannot export {name}: a generation element with a constant-current "
                             "part has no OpenDSS Generator model")
        cls, short = name.split(".", 1)
        gen = short if cls == "generator" else f"{cls}_{short}"
        if load_model == "pq":
            out.append((gen, -complex(zip_kva[li].sum()), 1, li))
            continue
        out.append((gen, -complex(zip_kva[li, 0]), 1, li))
        if zip_kva[li, 2] != 0:
            out.append((gen + "_z", -complex(zip_kva[li, 2]), 2, li))
    return out


def _generation(f: Feeder, scale: np.ndarray, load_model: str) -> list[str]:
    out = []
    for name, s, model, li in generation_parts(f, load_model):
        p, s = f.load_params[li], s * scale[li]
        out.append(f"New Generator.{name} bus1={p['bus1']} phases={p['phases']} conn={p['conn']} "
                   f"kv={_num(p['kv'])} kw={_num(s.real)} kvar={_num(s.imag)} model={model} "
                   "vminpu=0 vmaxpu=10")
    return out


def _cvr_exponents(name: str, zip_kva: np.ndarray) -> str:
    """``cvrwatts=.. cvrvars=..`` of an OpenDSS model-4 load from its ``(3,)`` ZIP split: the
    power sits wholly in part 0 (P), 1 (I) or 2 (Z), which is the exponent."""
    exps = []
    for part in (zip_kva.real, zip_kva.imag):
        nonzero = np.flatnonzero(part)
        if len(nonzero) > 1:
            raise ValueError(f"cannot export {name} as OpenDSS model 4: its ZIP split "
                             f"{zip_kva.tolist()} is not one exponent per P and Q")
        exps.append(int(nonzero[0]) if len(nonzero) else 0)
    return f" cvrwatts={exps[0]} cvrvars={exps[1]}"


def _injections(f: Feeder, s_kva) -> list[str]:
    if s_kva is None:
        return []
    s = np.asarray(s_kva, dtype=np.complex128)
    if s.shape != (f.n_nodes,):
        raise ValueError(f"s_kva must have shape ({f.n_nodes},) (one complex kVA per node of "
                         f"{f.name!r}), got {np.shape(s_kva)}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"s_kva has non-finite values at nodes "
                         f"{[f.nodes[i] for i in np.flatnonzero(~np.isfinite(s))][:5]}")
    out = []
    for i in np.flatnonzero(s):
        bus, ph = f.nodes[i].rsplit(".", 1)
        out.append(f"New Load.inj_{bus}_{ph} bus1={bus}.{ph} phases=1 conn=wye "
                   f"kv={_num(f.base_kv_ln[i])} kw={_num(s[i].real)} kvar={_num(s[i].imag)} "
                   f"model=1 {_LOAD_BAND}")
    return out


def _scale(feeder: Feeder, load_scale) -> np.ndarray:
    scale = np.asarray(load_scale, dtype=np.float64)
    if scale.ndim == 0:
        scale = np.full(feeder.n_loads, float(scale))
    if scale.shape != (feeder.n_loads,):
        raise ValueError(f"load_scale must be a scalar or have shape ({feeder.n_loads},) (one "
                         f"factor per load of {feeder.name!r}), got {np.shape(load_scale)}")
    if not np.all(np.isfinite(scale)):
        raise ValueError("load_scale has non-finite values")
    return scale


# ---------------------------------------------------------------------------------------- export
def export_opendss(feeder: Feeder, path: str | Path | None = None, *, load_scale=1.0,
                   s_kva=None, load_model: str = "pq", pq_loads: bool | None = None) -> str:
    """The OpenDSS script that re-creates ``feeder`` with the given loads (module docstring).

    Parameters
    ----------
    feeder: the feeder to write.
    path: if given, the script is also written there (UTF-8 text).
    load_scale: scalar or ``(n_loads,)`` factor on each feeder load's kW and kvar.
    s_kva: optional ``(n_nodes,)`` complex extra power consumed phase-to-ground at each node,
        kW + j kvar (negative = generation), written as single-phase constant-PQ loads
        ``inj_<bus>_<phase>`` at the node's line-to-neutral base kV; zeros are skipped.
    load_model: ``"pq"`` (default), ``"zip"`` or ``"opendss"`` (module docstring).
    pq_loads: shorthand overriding ``load_model``: True = ``"pq"``, False = ``"opendss"``.

    Returns
    -------
    The script text. Solve it with ``compile`` + ``solve`` in OpenDSS.

    Raises
    ------
    ValueError: an element class with no exporter (message names the element), a line with shunt
        conductance, a reactor admittance no OpenDSS Reactor has (:func:`reactor_impedance`), a
        source impedance that is not balanced, a load model that cannot be written, bad
        ``load_scale`` / ``s_kva`` shapes, or two exported loads with the same name.
    """
    if pq_loads is not None:
        load_model = "pq" if pq_loads else "opendss"
    if load_model not in _LOAD_MODELS:
        raise ValueError(f"load_model must be one of {_LOAD_MODELS}, got {load_model!r}")
    scale = _scale(feeder, load_scale)
    freq = float(feeder.meta.get("frequency_hz", feeder.source.params.get("frequency", 60.0)))
    out = [f"! {feeder.name}: written by gridedge_env.opendss.exporter "
           f"(load_model={load_model})",
           "Clear", f"Set DefaultBaseFrequency={_num(freq)}", _source(feeder)]
    for el in feeder.elements:
        if el.cls == "line":
            out.append(_line(el, freq))
        elif el.cls == "transformer":
            out.append(_transformer(el, feeder.taps))
        elif el.cls == "capacitor":
            out.append(_capacitor(el))
        elif el.cls == "reactor":
            out.append(_reactor(el))
        else:
            raise ValueError(f"cannot export {el.name}: element class {el.cls!r} has no "
                             "OpenDSS exporter (lines, transformers, capacitors and reactors do)")
    loads = (_loads(feeder, scale, load_model) + _generation(feeder, scale, load_model)
             + _injections(feeder, s_kva))
    names = [ln.split()[1].lower() for ln in loads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"cannot export {feeder.name!r}: exported load names collide: {dup}")
    out += loads

    # Voltage bases: MakeBusList creates the buses SetkVBase needs; exact per-bus LN bases.
    ll = sorted({round(float(v) * math.sqrt(3), 6) for v in feeder.base_kv_ln})
    out += [f"Set VoltageBases=[{' '.join(_num(v) for v in ll)}]", "MakeBusList"]
    buses: dict[str, float] = {}
    for name, kv in zip(feeder.nodes, feeder.base_kv_ln, strict=True):
        buses.setdefault(name.rsplit(".", 1)[0], float(kv))
    out += [f"SetkVBase bus={b} kVLN={_num(kv)}" for b, kv in buses.items()]
    out += [f"SetBusXY bus={b} x={_num(x)} y={_num(y)}"
            for b, (x, y) in feeder.bus_coords.items() if b in buses]
    out += ["Set ControlMode=OFF", ""]
    script = "\n".join(out)
    if path is not None:
        Path(path).write_text(script, encoding="utf-8")
    return script
