"""Benchmarks (``gridedge-bench``): our solver against OpenDSS in the same run, same scenarios.

Protocol (``docs/powerflow.md``): ``batch`` scenarios, each with all loads scaled by one factor
drawn from [0.5, 1.5]. Ours solves them in one batched call (forward, and forward plus backward of
``sum(v_pu)`` to every scenario's load scale). OpenDSS solves them one by one through
opendssdirect.py (``LoadMult``, then ``Solve``: its best case, warm-started from the previous
solution, no per-load edits, results read after every solve), controls off, at the same
tolerance, and once more at OpenDSS's default tolerance 1e-4. All are checked against a 1e-12
reference so each speed is read at a known accuracy. Ours: median of ``repeats`` timings.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..feeders import load_feeder
from ..network.synthetic import synthetic_radial
from ..opendss.exporter import export_opendss
from ..opendss.importer import opendss_engine
from ..powerflow import PowerFlow
from .common import machine, sync


def _time(fn, device, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _opendss(feeder, mults: np.ndarray, tol: float):
    """Time OpenDSS on the scenarios; returns (solves/s, voltages (S, n) in feeder order)."""
    with opendss_engine() as dss, tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "feeder.dss"
        export_opendss(feeder, script, load_model="pq")
        dss.Text.Command("clear")
        dss.Text.Command(f'compile "{script}"')
        dss.Text.Command(f"set tolerance={tol!r} maxiterations=100 controlmode=off")
        dss.Solution.Solve()
        order = [feeder.node_index(n) for n in dss.Circuit.YNodeOrder()]
        raw = []
        t0 = time.perf_counter()
        for m in mults:
            dss.Solution.LoadMult(float(m))
            dss.Solution.Solve()
            raw.append(dss.Circuit.YNodeVArray())
        rate = len(mults) / (time.perf_counter() - t0)
        flat = np.asarray(raw)
        volts = np.zeros((len(mults), feeder.n_nodes), dtype=np.complex128)
        volts[:, order] = flat[:, 0::2] + 1j * flat[:, 1::2]
    return rate, volts


def _feeder(name: str):
    """A bundled feeder, or ``synthetic-<buses>`` (:func:`~.network.synthetic.synthetic_radial`)."""
    if name.startswith("synthetic-"):
        return synthetic_radial(int(name.split("-", 1)[1]))
    return load_feeder(name)


def bench_powerflow(feeder_name: str = "ieee123", batch: int = 1024, device: str = "cpu",
                    dtype: str = "fp64", tol: float | None = None, repeats: int = 5,
                    opendss_scenarios: int = 2000) -> dict:
    """Run the power-flow benchmark; returns the JSON-ready results dict."""
    dev = torch.device(device)
    rdt = torch.float64 if dtype == "fp64" else torch.float32
    tol = tol if tol is not None else (1e-8 if dtype == "fp64" else 1e-6)
    feeder = _feeder(feeder_name)
    pf = PowerFlow(feeder, device=dev, dtype=rdt, injection_nodes=[], tol=tol)
    rng = np.random.default_rng(0)
    mults = rng.uniform(0.5, 1.5, size=batch)
    scale = torch.as_tensor(mults, dtype=rdt, device=dev).unsqueeze(-1)

    def fwd():
        return pf.solve(None, scale)

    def fwd_bwd():
        s = scale.clone().requires_grad_(True)
        pf.solve(None, s).v_pu.sum().backward()

    t_fwd = _time(fwd, dev, repeats)
    t_bwd = _time(fwd_bwd, dev, repeats)
    res = fwd()
    ref = PowerFlow(feeder, injection_nodes=[], tol=1e-12).solve(
        None, torch.as_tensor(mults).unsqueeze(-1))
    base = feeder.base_kv_ln * 1e3
    err_ours = float((res.v.cpu().to(torch.complex128) - ref.v).abs().div(
        torch.as_tensor(base)).max())
    n_dss = min(batch, opendss_scenarios)
    dss_rate, v_dss = _opendss(feeder, mults[:n_dss], tol)
    err_dss = float(np.max(np.abs(v_dss - ref.v.numpy()[:n_dss]) / base))
    dss_default_rate, v_def = _opendss(feeder, mults[:n_dss], 1e-4)
    err_def = float(np.max(np.abs(v_def - ref.v.numpy()[:n_dss]) / base))
    ours = batch / t_fwd
    return {
        "feeder": feeder_name, "n_nodes": feeder.n_nodes, "n_ports": pf.n_ports,
        "batch": batch, "device": str(dev), "dtype": dtype, "tol_pu": tol,
        "ours_solves_per_s": round(ours, 1),
        "ours_fwd_bwd_solves_per_s": round(batch / t_bwd, 1),
        "fwd_bwd_over_fwd_time": round(t_bwd / t_fwd, 3),
        "ours_mean_iterations": float(res.iterations.double().mean()),
        "opendss_solves_per_s": round(dss_rate, 1),
        "opendss_scenarios_timed": n_dss,
        "ratio_vs_opendss": round(ours / dss_rate, 2),
        "ours_max_v_err_pu": err_ours, "opendss_max_v_err_pu": err_dss,
        "opendss_tol1e-4_solves_per_s": round(dss_default_rate, 1),
        "opendss_tol1e-4_max_v_err_pu": err_def,
        "ratio_vs_opendss_tol1e-4": round(ours / dss_default_rate, 2),
        "machine": machine(),
    }


def append_table_row(path: Path, out: dict) -> None:
    """Append one markdown row (header written if the file is new)."""
    cols = ["feeder", "batch", "device", "dtype", "tol_pu", "ours_solves_per_s",
            "ours_fwd_bwd_solves_per_s", "opendss_solves_per_s", "ratio_vs_opendss",
            "ours_max_v_err_pu", "opendss_max_v_err_pu", "machine"]
    new = not path.exists()
    with path.open("a") as fh:
        if new:
            fh.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        fh.write("| " + " | ".join(str(out[c]) for c in cols) + " |\n")
