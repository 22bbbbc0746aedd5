"""``gridedge-bench env``: agent-steps/s of the batched core against OpenDSS-stepped power flows.

Both run the same scenario with the same (constant) actions over the same number of days:
device dynamics, costs and rewards are the core's own batched torch code in both; only the power
flow differs. Ours solves all ``num_envs`` days of a step in one batched call; the peer,
:class:`OpenDSSPowerFlow`, solves them one by one through opendssdirect.py (the agents'
injections written as single-phase loads, voltages and all line currents read back) at the same
tolerance (1e-8 p.u.).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .bench import machine
from .core import reset, step
from .network.opendss_export import export_opendss
from .registry import env_params


class OpenDSSPowerFlow:
    """Drop-in for ``PowerFlow.solve(s_kva, load_scale=0)`` that loops over scenarios in OpenDSS."""

    def __init__(self, feeder, injection_nodes, tol: float = 1e-8):
        from .network.opendss_import import opendss_engine

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


def opendss_stepped(params):
    """``params`` with OpenDSS solving every power flow of a step (one scenario at a time,
    tolerance 1e-8 p.u.) and the staged step (no fused or compiled power flow): an independent
    check of anything run on the core (``gradmap-eval --opendss``)."""
    peer = OpenDSSPowerFlow(params.scenario.feeder, params.powerflow.injection_nodes)
    return dataclasses.replace(params, powerflow=peer, unrolled=None, compiled={})


def _day(params, num_envs: int, steps: int) -> tuple[float, object]:
    state, _ = reset(params, num_envs, seed=0)
    action = torch.zeros(num_envs, params.n_agents, dtype=params.node_mask.dtype,
                         device=params.node_mask.device)
    sync = torch.cuda.synchronize if params.node_mask.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            state, out = step(params, state, action)
    sync()
    return time.perf_counter() - t0, out


def _days(params, num_envs: int, steps: int, min_s: float) -> tuple[float, object]:
    """Mean seconds per day over whole days, run until they add up to at least ``min_s``."""
    total, n, out = 0.0, 0, None
    while n == 0 or total < min_s:
        t, out = _day(params, num_envs, steps)
        total, n = total + t, n + 1
    return total / n, out


def bench_env(env_id: str = "ieee123-1000-v0", num_envs: int = 64, steps: int = 48,
              opendss_envs: int | None = None, device: str = "cpu", dtype: str = "fp64",
              compile: bool = False, repeats: int = 3) -> dict:
    """Agent-steps/s of the core and of the same scenario with OpenDSS solving each step's
    power flows, on ``opendss_envs`` days (default ``min(num_envs, 64)``: the peer then shares
    our batched device code over as many days, and its per-day cost is flat beyond that).
    OpenDSS computes in float64, so the peer runs the float64 environment (same ``compile``)
    whatever ``dtype`` ours uses.

    Timing protocol (shared machines drift in speed over seconds): ``repeats`` rounds, each one
    peer day followed by as many of our days as take at least as long (so both sides are
    exposed to the machine for the same time, back to back); each side's speed is its best
    round. ``ratio_vs_opendss`` is best over best; ``ratio_rounds`` the ratio within each
    round."""
    dt = {"fp64": torch.float64, "fp32": torch.float32}[dtype]
    params = env_params(env_id, device=device, dtype=dt, compile=compile)
    t_warm = time.perf_counter()
    # warm-up: a whole day, so compile=True has compiled and settled its unrolled iteration
    # count (a day needing more iterations raises it, with a recompilation) before timing
    _day(params, num_envs, steps)
    t_warm = time.perf_counter() - t_warm
    ref = params if dt == torch.float64 and device == "cpu" else env_params(
        env_id, compile=compile)
    # the peer's step runs the staged path (devices, OpenDSS, outcome): no fused power flow
    peer = opendss_stepped(ref)
    n_dss = min(num_envs, 64) if opendss_envs is None else min(opendss_envs, num_envs)
    _day(peer, n_dss, 1)  # warm-up
    rounds = []
    for _ in range(max(1, repeats)):
        t_dss, out_dss = _day(peer, n_dss, steps)
        t_ours, out = _days(params, num_envs, steps, min_s=t_dss)
        rounds.append((num_envs * params.n_agents * steps / t_ours,
                       n_dss * params.n_agents * steps / t_dss))
    ours, dss = max(r[0] for r in rounds), max(r[1] for r in rounds)
    agree = float((out.info["v_pu"][:n_dss].cpu().double() - out_dss.info["v_pu"]).abs().max())
    return {"env": env_id, "n_agents": params.n_agents, "num_envs": num_envs, "steps": steps,
            "device": str(params.node_mask.device), "dtype": dtype, "compile": compile,
            "ours_agent_steps_per_s": round(ours, 1), "opendss_agent_steps_per_s": round(dss, 1),
            "opendss_envs_timed": n_dss, "ratio_vs_opendss": round(ours / dss, 2),
            "ratio_rounds": [round(o / d, 2) for o, d in rounds],
            "ours_step_ms": round(num_envs * params.n_agents / ours * 1e3, 3),
            "mean_pf_iterations": round(float(out.info["pf_iterations"].float().mean()), 2),
            "unrolled_iterations": params.compiled.get("unroll"),
            "warmup_s": round(t_warm, 1), "max_v_diff_pu_last_step": agree,
            "machine": machine()}
