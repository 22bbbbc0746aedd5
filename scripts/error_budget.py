"""Measure the error budget of the OpenDSS comparisons (docs/powerflow.md, error budget).

For every bundled feeder it can do (by default those of at most ``REFERENCE_MAX_NODES`` nodes:
the reference is too slow above that) and each load model, over several seeds, it measures what
limits agreement:

- each engine against the extended-precision reference (``crosscheck.extended_precision_solution``):
  the double-precision round-off floor of ours (dense and sparse backends: two factorisations,
  two round-off patterns) and of OpenDSS;
- the comparison figures of ``crosscheck.compare`` (dense and sparse);
- the loss figures (relative to the losses and to the throughput).

Prints one JSON object per (feeder, load model) and the worst case per figure; ``--out`` appends
the objects to a JSON-lines file. The reference models come from ``../shared/data/feeders`` when
present, else the exported feeder is OpenDSS's circuit.

    python scripts/error_budget.py --seeds 3 --scenarios 6 --out docs/bench/error_budget.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.opendss.crosscheck import (
    OURS_TOL,
    compare,
    extended_precision_solution,
    load_headroom,
    opendss_solutions,
    random_scenarios,
)
from gridedge_env.powerflow import PowerFlow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "feeders"
FIGURES = ("max_v_err_pu", "max_angle_err_deg", "max_v_ll_err_pu_floating", "max_i_rel_err",
           "max_loss_rel_err", "max_loss_err_of_throughput")
#: Largest feeder the long-double reference is run on. It forms the dense n x n admittance in
#: long double and refines with long-double matrix-vector products without BLAS: seconds per
#: scenario at IEEE 123's 278 nodes, minutes at IEEE 8500's 8,531 (docs/powerflow.md, error
#: budget, which gives the 8500 budget from the engines' tolerances instead).
REFERENCE_MAX_NODES = 2000


def _refuse(msg: str) -> NoReturn:
    print(f"error_budget.py: {msg}", file=sys.stderr)
    raise SystemExit(2)


def budget_feeders(names: str | None) -> list:
    """``[(name, feeder)]`` to measure: the comma-separated bundled ``names``, or by default
    every bundled feeder of at most ``REFERENCE_MAX_NODES`` nodes. Exits with one line on stderr
    naming an unknown or too large feeder (status 2)."""
    if names is None:
        loaded = [(n, load_feeder(n)) for n in BUNDLED]
        return [(n, f) for n, f in loaded if f.n_nodes <= REFERENCE_MAX_NODES]
    out = []
    for name in names.split(","):
        if name not in BUNDLED_SOURCES:
            _refuse(f"{name!r} is not a bundled feeder ({', '.join(BUNDLED)})")
        feeder = load_feeder(name)
        if feeder.n_nodes > REFERENCE_MAX_NODES:
            _refuse(f"{name} has {feeder.n_nodes} nodes, more than the long-double reference "
                    f"can do ({REFERENCE_MAX_NODES}: a dense long-double admittance refined "
                    "without BLAS takes minutes per scenario there); its budget comes from the "
                    "engines' tolerances, docs/powerflow.md, error budget")
        out.append((name, feeder))
    return out


def reference_errors(feeder, load_model, seed, k, master):
    """Largest |V| error (p.u., grounded nodes) of ours (dense, sparse) and OpenDSS against the
    extended-precision reference."""
    scale, nodes, s = random_scenarios(feeder, k, seed, load_high=load_headroom(feeder, load_model))
    v_d, _, _, ok, _ = opendss_solutions(feeder, scale, nodes, s, load_model, master)
    s_full = np.zeros((len(scale), feeder.n_nodes), dtype=np.complex128)
    s_full[:, nodes] = s
    ours = {}
    for backend in ("dense", "sparse"):
        pf = PowerFlow(feeder, injection_nodes=nodes, load_model=load_model, backend=backend,
                       tol=OURS_TOL if backend == "dense" else 1e-10, on_nonconvergence="flag")
        r = pf.solve(torch.as_tensor(s_full), torch.as_tensor(scale))
        ours[backend] = (r.v.numpy(), r.converged.numpy())
    grounded = np.setdiff1d(np.arange(feeder.n_nodes), feeder.floating_nodes())
    base = (feeder.base_kv_ln * 1e3)[grounded]
    err = {"ours_dense": 0.0, "ours_sparse": 0.0, "opendss": 0.0}
    for j in range(len(scale)):
        if not (ok[j] and ours["dense"][1][j]):
            continue
        ref = extended_precision_solution(feeder, scale[j], s_full[j], load_model)[grounded]
        for key, v in (("ours_dense", ours["dense"][0][j]), ("ours_sparse", ours["sparse"][0][j]),
                       ("opendss", v_d[j])):
            err[key] = max(err[key], float(np.max(np.abs(np.abs(v[grounded]) - np.abs(ref)) / base)))
    return err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scenarios", type=int, default=6)
    ap.add_argument("--feeders", default=None,
                    help="comma-separated bundled feeders (default: every bundled feeder of at "
                         f"most {REFERENCE_MAX_NODES} nodes)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    for name, feeder in budget_feeders(args.feeders):
        folder, master_file, _ = BUNDLED_SOURCES[name]
        master = SHARED / folder / master_file if SHARED.is_dir() else None
        for load_model in ("pq", "zip"):
            row = {"feeder": name, "load_model": load_model, "seeds": args.seeds,
                   "scenarios": args.scenarios, "circuit": "reference" if master else "export",
                   "machine": platform.processor() or platform.machine(),
                   "numpy": np.__version__, "torch": torch.__version__}
            ref = {"ours_dense": 0.0, "ours_sparse": 0.0, "opendss": 0.0}
            for seed in range(args.seeds):
                for backend in ("dense", "sparse"):
                    c = compare(feeder, args.scenarios, seed, load_model, master, backend)
                    for f in FIGURES:
                        key = f if backend == "dense" else f"sparse_{f}"
                        row[key] = max(row.get(key, 0.0), getattr(c, f) or 0.0)
                    row["opendss_tolerance"] = max(row.get("opendss_tolerance", 0.0),
                                                   c.opendss_tolerance)
                for k, v in reference_errors(feeder, load_model, seed, args.scenarios,
                                             master).items():
                    ref[k] = max(ref[k], v)
            row.update({f"ref_err_{k}": v for k, v in ref.items()})
            rows.append(row)
            print(json.dumps(row))
    worst = {k: max(r[k] for r in rows) for k in rows[0] if k.startswith(("max_", "sparse_", "ref_"))}
    print(json.dumps({"worst": worst}))
    if args.out is not None:
        with open(args.out, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
