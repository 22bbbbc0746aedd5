"""OpenDSS as a drop-in power flow of the environment: an independent check of anything run on
the core (``gradmap-eval --opendss``, ``gradmap-compare --opendss``, ``gridedge-bench env``).

:class:`OpenDSSPowerFlow` solves the scenarios of a batch one by one through opendssdirect.py
(the agents' injections written as single-phase loads, voltages and all line currents read
back) at 1e-8 p.u.; :func:`opendss_stepped` puts it into an environment in place of ours.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .exporter import export_opendss
from .importer import opendss_engine


class OpenDSSPowerFlow:
    """Drop-in for ``PowerFlow.solve(s_kva, load_scale=0)`` that loops over scenarios in OpenDSS."""

    def __init__(self, feeder, injection_nodes, tol: float = 1e-8):
        self.f = feeder
        self.nodes = np.asarray(injection_nodes)
        self._tmp = tempfile.TemporaryDirectory()
        script = Path(self._tmp.name) / "feeder.dss"
        export_opendss(feeder, script, load_scale=0.0)
        with opendss_engine() as d:  # the context outlives the block; the cwd does not
            d.Text.Command(f'compile "{script}"')
        self.dss = d
        self.names = []
        for k in self.nodes:
            bus, ph = feeder.nodes[k].rsplit(".", 1)
            name = f"agents_{bus}_{ph}"
            d.Text.Command(f"new load.{name} bus1={bus}.{ph} phases=1 conn=wye model=1 "
                           f"kv={float(feeder.base_kv_ln[k])!r} kw=0 kvar=0 vminpu=0 vmaxpu=10 "
                           "vlowpu=0")
            self.names.append(name)
        self.idx = []  # load indices: selecting by index is the fastest opendssdirect idiom
        for name in self.names:
            d.Loads.Name(name)
            self.idx.append(d.Loads.Idx())
        d.Text.Command(f"set tolerance={tol!r} maxiterations=100 controlmode=off")
        d.Solution.Solve()
        self.order = np.array([feeder.node_index(n) for n in d.Circuit.YNodeOrder()])
        self._line_map()

    def _line_map(self) -> None:
        """Positions of our line-phase rows in ``PDElements.AllCurrents`` (complex pairs)."""
        d, f = self.dss, self.f
        offsets, pos = {}, 0
        d.PDElements.First()
        while True:
            name = d.PDElements.Name().lower()
            d.Circuit.SetActiveElement(name)
            offsets[name] = pos
            pos += d.CktElement.NumConductors() * d.CktElement.NumTerminals()
            if not d.PDElements.Next():
                break
        line_of_row, row = f.line_phase_rows()
        self.rows = np.array([offsets[f.elements[f.lines[li]].name] + r
                              for li, r in zip(line_of_row, row, strict=True)])
        amps = f.line_normamps[line_of_row]
        self.inv_amps = np.where(amps > 0, 1 / np.where(amps > 0, amps, 1), 0)

    def solve(self, s_kva: torch.Tensor, load_scale=0.0, at=None, check: bool = False):
        """``s_kva`` ``(B, n_nodes)``, or ``(B, k)`` at nodes ``at`` (as ``PowerFlow.solve``)."""
        d = self.dss
        s = s_kva.detach().cpu().numpy()
        if at is not None:  # sum the injections per node, as the core's power flow does
            full = np.zeros((s.shape[0], self.f.n_nodes), dtype=s.dtype)
            np.add.at(full, (slice(None), np.asarray(at.cpu())), s)
            s = full
        s = s[:, self.nodes]
        b = s.shape[0]
        v = np.zeros((b, self.f.n_nodes), dtype=np.complex128)
        cur = np.zeros((b, len(self.rows)), dtype=np.complex128)
        conv = np.zeros(b, dtype=bool)
        iters = np.zeros(b, dtype=np.int64)
        for k in range(b):  # the peer solves one scenario at a time: that is what is measured
            for i, val in zip(self.idx, s[k], strict=True):
                d.Loads.Idx(i)
                d.Loads.kW(float(val.real))
                d.Loads.kvar(float(val.imag))
            d.Solution.Solve()
            conv[k], iters[k] = d.Solution.Converged(), d.Solution.Iterations()
            flat = np.asarray(d.Circuit.YNodeVArray())
            v[k, self.order] = flat[0::2] + 1j * flat[1::2]
            c = np.asarray(d.PDElements.AllCurrents())
            cur[k] = c[2 * self.rows] + 1j * c[2 * self.rows + 1]
        vt = torch.as_tensor(v)
        base = torch.as_tensor(self.f.base_kv_ln * 1e3)
        return SimpleNamespace(v=vt, v_pu=vt.abs() / base,
                               line_loading=torch.as_tensor(np.abs(cur) * self.inv_amps),
                               converged=torch.as_tensor(conv), iterations=torch.as_tensor(iters))


def opendss_stepped(env):
    """``env`` with OpenDSS solving every power flow of a step (one scenario at a time,
    tolerance 1e-8 p.u.) and the staged step (no fused or compiled power flow): an independent
    check of anything run on the core (``gradmap-eval --opendss``)."""
    peer = OpenDSSPowerFlow(env.scenario.feeder, env.powerflow.injection_nodes)
    return dataclasses.replace(env, powerflow=peer, unrolled=None, compiled={})
