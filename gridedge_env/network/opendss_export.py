"""Write a :class:`~gridedge_env.network.feeder.Feeder` (with given loads) as an OpenDSS script.

The script re-creates the network element by element so any scenario can be re-solved by
OpenDSS: the source from its Thevenin admittance (sequence impedances), lines from their primitive
admittances (series impedance and shunt capacitance matrices, ``length=1 units=none``),
transformers and capacitors from the OpenDSS properties the importer kept (transformer taps as the
feeder has them now, see :meth:`Feeder.with_taps`), and every node's voltage base. Elements of
other classes raise ``ValueError`` naming them.

Loads keep constant power, current or impedance exactly as the solver models them: with
``load_model="pq"`` (default, as :class:`~gridedge_env.PowerFlow`) each load is one constant-PQ
load; with ``"zip"`` its constant-power, -current and -impedance parts become loads of OpenDSS
models 1, 5 and 2. All exported loads carry ``vminpu=0 vmaxpu=10 vlowpu=0`` because OpenDSS would
otherwise turn them into constant impedances outside 0.95-1.05 p.u., which the solver does not.
Controls are not exported (taps are fixed; ``Set ControlMode=OFF``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .feeder import Element, Feeder

_LOAD_BAND = "vminpu=0 vmaxpu=10 vlowpu=0"


def _num(x: float) -> str:
    return repr(float(x))


def _matrix(m: np.ndarray) -> str:
    return "[" + " | ".join(" ".join(_num(v) for v in row) for row in m) + "]"


def _source(f: Feeder) -> str:
    src = f.source
    k = len(f.source_emf_v)
    z = np.linalg.inv(src.y_prim[:k, :k])
    zs = np.mean(np.diag(z))
    zm = np.mean(z[~np.eye(k, dtype=bool)]) if k > 1 else 0.0
    z1, z0 = zs - zm, zs + 2 * zm
    p = src.params
    return (f"New Circuit.{f.name} basekv={_num(p['basekv'])} pu={_num(p['pu'])} "
            f"angle={_num(p['angle'])} phases={p['phases']} bus1={p['buses'][0]} "
            f"R1={_num(z1.real)} X1={_num(z1.imag)} R0={_num(z0.real)} X0={_num(z0.imag)}")


def _line(el: Element, freq: float) -> str:
    y = el.y_prim
    k = y.shape[0] // 2
    ys = -y[:k, k:]
    half = y[:k, :k] - ys
    if np.abs(half.real).max() > 1e-9 * max(np.abs(ys).max(), 1e-30):
        raise ValueError(f"cannot export {el.name}: its shunt admittance has a conductance part")
    z = np.linalg.inv(ys)
    c_nf = 2 * half.imag / (2 * math.pi * freq) * 1e9
    p = el.params
    return (f"New Line.{el.name.split('.', 1)[1]} phases={k} bus1={p['buses'][0]} "
            f"bus2={p['buses'][1]} length=1 units=none rmatrix={_matrix(z.real)} "
            f"xmatrix={_matrix(z.imag)} cmatrix={_matrix(c_nf)} normamps={_num(p['normamps'])} "
            f"emergamps={_num(p.get('emergamps', p['normamps']))}")


def _transformer(el: Element, taps) -> str:
    p = el.params
    name = el.name.split(".", 1)[1]
    tap_list = taps.get(name)
    tap_str = "[" + " ".join(_num(t) for t in tap_list) + "]" if tap_list else p["taps"]
    return (f"New Transformer.{name} phases={p['phases']} windings={p['windings']} "
            f"buses=[{' '.join(p['buses'])}] conns={p['conns']} kvs={p['kvs']} kvas={p['kvas']} "
            f"taps={tap_str} %rs={p['%rs']} xscarray={p['xscarray']} "
            f"%noloadloss={p['%noloadloss']} %imag={p['%imag']} ppm_antifloat={p['ppm_antifloat']}")


def _capacitor(el: Element) -> str:
    p = el.params
    return (f"New Capacitor.{el.name.split('.', 1)[1]} phases={p['phases']} bus1={p['buses'][0]} "
            f"bus2={p['buses'][1]} kvar={p['kvar']} kv={p['kv']} conn={p['conn']} "
            f"states={p['states']}")


def load_parts(f: Feeder, load_model: str) -> list[tuple[str, complex, int, int]]:
    """The OpenDSS loads the export writes: ``(name, kva at scale 1, OpenDSS model, load index)``.

    ``"pq"``: one constant-PQ load per feeder load; ``"zip"``: its constant-power part under the
    load's own name, and its constant-current / -impedance parts (if any) as ``<name>_i`` (model
    5) and ``<name>_z`` (model 2).
    """
    zip_kva = np.zeros((f.n_loads, 3), dtype=np.complex128)
    np.add.at(zip_kva, f.term_load, f.term_zip_kva)
    if load_model == "pq":
        zip_kva = np.concatenate([zip_kva.sum(1, keepdims=True), 0 * zip_kva[:, 1:]], axis=1)
    out = []
    for li, name in enumerate(f.load_names):
        for part, (suffix, model) in enumerate((("", 1), ("_i", 5), ("_z", 2))):
            if part == 0 or zip_kva[li, part] != 0:
                out.append((name.split(".", 1)[1] + suffix, complex(zip_kva[li, part]), model, li))
    return out


def _loads(f: Feeder, scale: np.ndarray, load_model: str) -> list[str]:
    out = []
    for name, s, model, li in load_parts(f, load_model):
        p, s = f.load_params[li], s * scale[li]
        out.append(f"New Load.{name} bus1={p['bus1']} phases={p['phases']} conn={p['conn']} "
                   f"kv={_num(p['kv'])} kw={_num(s.real)} kvar={_num(s.imag)} model={model} "
                   f"{_LOAD_BAND}")
    return out


def _injections(f: Feeder, s_kva) -> list[str]:
    if s_kva is None:
        return []
    s = np.asarray(s_kva, dtype=np.complex128).reshape(-1)
    if s.shape != (f.n_nodes,):
        raise ValueError(f"s_kva must have shape ({f.n_nodes},), got {np.shape(s_kva)}")
    out = []
    for i in np.flatnonzero(s):
        bus, ph = f.nodes[i].rsplit(".", 1)
        out.append(f"New Load.inj_{bus}_{ph} bus1={bus}.{ph} phases=1 conn=wye "
                   f"kv={_num(f.base_kv_ln[i])} kw={_num(s[i].real)} kvar={_num(s[i].imag)} "
                   f"model=1 {_LOAD_BAND}")
    return out


def export_opendss(feeder: Feeder, path: str | Path | None = None, *, load_scale=1.0,
                   s_kva=None, load_model: str = "pq") -> str:
    """The OpenDSS script of ``feeder``; written to ``path`` too if given.

    load_scale: scalar or ``(n_loads,)`` scale of the feeder's loads (kW and kvar).
    s_kva: optional ``(n_nodes,)`` complex extra power consumed phase-to-neutral at each node
        (kW + j kvar), written as single-phase constant-PQ loads ``inj_<bus>_<phase>``.
    load_model: ``"pq"`` or ``"zip"`` (module docstring).
    """
    if load_model not in ("pq", "zip"):
        raise ValueError(f"load_model must be 'pq' or 'zip', got {load_model!r}")
    scale = np.broadcast_to(np.asarray(load_scale, dtype=np.float64), (feeder.n_loads,))
    freq = float(feeder.meta.get("frequency_hz", feeder.source.params.get("frequency", 60.0)))
    lines = [f"! {feeder.name}: exported by gridedge from its own feeder model",
             "Clear", f"Set DefaultBaseFrequency={_num(freq)}", _source(feeder)]
    for el in feeder.elements:
        if el.cls == "line":
            lines.append(_line(el, freq))
        elif el.cls == "transformer":
            lines.append(_transformer(el, feeder.taps))
        elif el.cls == "capacitor":
            lines.append(_capacitor(el))
        else:
            raise ValueError(f"cannot export {el.name}: class {el.cls!r} has no exporter")
    lines += _loads(feeder, scale, load_model) + _injections(feeder, s_kva)
    ll = sorted({round(float(v) * math.sqrt(3), 6) for v in feeder.base_kv_ln})
    lines += [f"Set VoltageBases=[{' '.join(_num(v) for v in ll)}]", "CalcVoltageBases"]
    buses: dict[str, float] = {}
    for name, kv in zip(feeder.nodes, feeder.base_kv_ln, strict=True):
        buses.setdefault(name.rsplit(".", 1)[0], float(kv))
    lines += [f"SetkVBase bus={b} kVLN={_num(kv)}" for b, kv in buses.items()]
    lines += ["Set ControlMode=OFF", ""]
    script = "\n".join(lines)
    if path is not None:
        Path(path).write_text(script)
    return script
