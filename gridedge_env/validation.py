"""Cross-check :class:`~gridedge_env.PowerFlow` against OpenDSS on the same scenarios.

Both engines solve the feeder at its nominal loads and at ``K`` random scenarios (every load scaled
by its own factor in [0.5, 1.5], plus random wye injections of -40..+40 kW and -15..+15 kvar at a
few random nodes). OpenDSS runs with controls off (taps frozen at the feeder's), tolerance 1e-12,
and loads that stay in their model outside the default voltage band (``vminpu=0 vmaxpu=10``).

The OpenDSS circuit is the user's own master file when given, else the feeder exported by
:func:`~gridedge_env.network.opendss_export.export_opendss` (so bundled feeders need no files).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .network.feeder import Feeder
from .powerflow import PowerFlow


@dataclass
class Comparison:
    """Worst disagreement over all nodes, lines and scenarios (see ``docs/powerflow.md``)."""

    feeder: str
    load_model: str
    n_scenarios: int
    max_v_err_pu: float  # max | |V_ours| - |V_dss| | / V_base
    max_angle_err_deg: float  # max angle difference
    max_i_rel_err: float  # max |I_ours - I_dss| / max(|I_dss|, 1 A), terminal-1 line phases
    max_loss_rel_err: float  # max |ΔP_loss| / P_loss

    def as_dict(self) -> dict:
        return asdict(self)


def random_scenarios(feeder: Feeder, k: int, seed: int, n_inj: int = 8):
    """``(load_scale (k+1, n_loads), inj_nodes (j,), s_kva (k+1, j))``; row 0 is nominal."""
    rng = np.random.default_rng(seed)
    scale = np.ones((k + 1, feeder.n_loads))
    scale[1:] = rng.uniform(0.5, 1.5, size=(k, feeder.n_loads))
    src = set(feeder.source_nodes.tolist())
    candidates = np.array([i for i in range(feeder.n_nodes) if i not in src])
    nodes = np.sort(rng.choice(candidates, size=min(n_inj, len(candidates)), replace=False))
    s = np.zeros((k + 1, len(nodes)), dtype=np.complex128)
    s[1:] = rng.uniform(-40, 40, (k, len(nodes))) + 1j * rng.uniform(-15, 15, (k, len(nodes)))
    return scale, nodes, s


def _compile(dss, feeder: Feeder, master: Path | None, tmp: Path, load_model: str):
    """Compile the OpenDSS circuit; returns its feeder loads as (name, kva, index) triples."""
    from .network.opendss_import import _stage

    if master is None:
        from .network.opendss_export import export_opendss, load_parts

        script = tmp / "feeder.dss"
        export_opendss(feeder, script, load_model=load_model)
        dss.Text.Command("clear")
        dss.Text.Command(f'compile "{script}"')
        return [(name, s, li) for name, s, _, li in load_parts(feeder, load_model)]
    dss.Text.Command("clear")
    dss.Text.Command(f'compile "{_stage(master.resolve(), tmp)}"')
    dss.Text.Command("set controlmode=off")
    for name, taps in feeder.taps.items():
        dss.Text.Command(f"transformer.{name}.taps=[{' '.join(repr(float(t)) for t in taps)}]")
    model = " model=1" if load_model == "pq" else ""
    dss.Text.Command(f"batchedit load..* vminpu=0 vmaxpu=10 vlowpu=0{model}")
    return [(n.split(".", 1)[1], complex(p["kw"], p["kvar"]), li)
            for li, (n, p) in enumerate(zip(feeder.load_names, feeder.load_params, strict=True))]


def opendss_solutions(feeder: Feeder, load_scale, inj_nodes, s_kva, load_model: str,
                      master: Path | None = None):
    """Solve every scenario with OpenDSS; returns node voltages ``(S, n)`` in feeder order and
    terminal-1 line-phase currents ``(S, r)`` (complex) and losses ``(S,)`` kW."""
    from .network.opendss_import import opendss_engine

    with opendss_engine() as dss, tempfile.TemporaryDirectory() as tmp:
        parts = _compile(dss, feeder, master, Path(tmp), load_model)
        for j, node in enumerate(inj_nodes):
            bus, ph = feeder.nodes[node].rsplit(".", 1)
            dss.Text.Command(f"new load.gridedge_inj{j} bus1={bus}.{ph} phases=1 conn=wye model=1 "
                             f"kV={float(feeder.base_kv_ln[node])!r} kW=0 kvar=0 vminpu=0 vmaxpu=10 vlowpu=0")
        dss.Text.Command("set tolerance=1e-12 maxiterations=500")
        line_of_row, row = feeder.line_phase_rows()
        v_out, i_out, loss = [], [], []
        for s_idx in range(len(load_scale)):
            for name, s0, li in parts:
                dss.Loads.Name(name)
                dss.Loads.kW(s0.real * load_scale[s_idx, li])
                dss.Loads.kvar(s0.imag * load_scale[s_idx, li])
            for j in range(len(inj_nodes)):
                dss.Loads.Name(f"gridedge_inj{j}")
                dss.Loads.kW(float(s_kva[s_idx, j].real))
                dss.Loads.kvar(float(s_kva[s_idx, j].imag))
            dss.Solution.Solve()
            if not dss.Solution.Converged():
                raise RuntimeError(f"OpenDSS did not converge on scenario {s_idx} of {feeder.name}")
            order = [feeder.node_index(n) for n in dss.Circuit.YNodeOrder()]
            flat = np.asarray(dss.Circuit.YNodeVArray())
            v = np.zeros(feeder.n_nodes, dtype=np.complex128)
            v[order] = flat[0::2] + 1j * flat[1::2]
            cur = []
            for li in np.unique(line_of_row):
                dss.Circuit.SetActiveElement(feeder.elements[feeder.lines[li]].name)
                c = np.asarray(dss.CktElement.Currents())
                cur.append((c[0::2] + 1j * c[1::2])[row[line_of_row == li]])
            v_out.append(v)
            i_out.append(np.concatenate(cur) if cur else np.zeros(0))
            loss.append(dss.Circuit.Losses()[0] / 1e3)
    return np.stack(v_out), np.stack(i_out), np.asarray(loss)


def compare(feeder: Feeder, scenarios: int = 10, seed: int = 0, load_model: str = "zip",
            master: Path | None = None) -> Comparison:
    """Solve the same scenarios with both engines and report the worst disagreement."""
    scale, nodes, s = random_scenarios(feeder, scenarios, seed)
    v_d, i_d, loss_d = opendss_solutions(feeder, scale, nodes, s, load_model, master)
    pf = PowerFlow(feeder, injection_nodes=nodes, load_model=load_model, tol=1e-11)
    s_full = torch.zeros(len(scale), feeder.n_nodes, dtype=torch.complex128)
    s_full[:, nodes] = torch.as_tensor(s)
    r = pf.solve(s_full, torch.as_tensor(scale))
    v, i = r.v.numpy(), r.i_line_a.numpy()
    base = feeder.base_kv_ln * 1e3
    ang = np.angle(v * np.conj(v_d), deg=True)
    return Comparison(
        feeder=feeder.name, load_model=load_model, n_scenarios=len(scale),
        max_v_err_pu=float(np.max(np.abs(np.abs(v) - np.abs(v_d)) / base)),
        max_angle_err_deg=float(np.max(np.abs(ang))),
        max_i_rel_err=float(np.max(np.abs(i - i_d) / np.maximum(np.abs(i_d), 1.0)))
        if i.size else 0.0,
        max_loss_rel_err=float(np.max(np.abs(r.losses_kva.real.numpy() - loss_d)
                                      / np.abs(loss_d))),
    )
