"""Command-line entry points: ``gridedge-validate`` and ``gridedge-bench``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NoReturn

from .benchmarks.conditioning import bench_conditioning
from .benchmarks.dayflow import append_dayflow_row, bench_dayflow
from .benchmarks.env import bench_env
from .benchmarks.powerflow import append_table_row, bench_powerflow
from .config import ConfigError
from .console import run_console
from .feeders import load_feeder
from .network import BUNDLED
from .opendss.crosscheck import compare
from .opendss.importer import FeederImportError

#: Acceptance gates of ``gridedge-validate`` (the requirement is 1e-6 p.u. on voltages; the test
#: suite holds the bundled feeders to the tighter gates of docs/powerflow.md, error budget).
GATES = {"max_v_err_pu": 1e-6, "max_v_ll_err_pu_floating": 1e-6, "max_angle_err_deg": 1e-4,
         "max_i_rel_err": 1e-4}


#: What loading a feeder raises on bad input (FeederImportError is a ValueError): reported by
#: the commands as one line on stderr and exit status 2, like a usage error.
_INPUT_ERRORS = (FeederImportError, ValueError, FileNotFoundError, OSError)


def _input_error(prog: str, spec: str, exc: BaseException | str) -> NoReturn:
    """Print ``prog: <message>`` (one line, naming ``spec`` if the message does not) and exit 2."""
    msg = " ".join(str(exc).split())  # OpenDSS's messages span lines
    if spec not in msg:
        msg = f"{spec}: {msg}"
    print(f"{prog}: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _feeder_and_master(spec: str, taps: str):
    prog = "gridedge-validate"
    if spec.lower() in BUNDLED:
        return load_feeder(spec), None
    path = Path(spec)
    if not path.is_file():
        _input_error(prog, spec, f"neither a bundled feeder ({', '.join(BUNDLED)}) nor an existing "
                                 "OpenDSS file")
    try:  # a saved feeder (.json.gz) has no master file: it is compared through the export
        return load_feeder(path, taps=taps), (None if path.name.endswith(".json.gz") else path)
    except _INPUT_ERRORS as exc:
        _input_error(prog, spec, exc)


def validate_main(argv=None) -> int:
    """``gridedge-validate FEEDER [--scenarios K] [--seed S] [--json]``: compare with OpenDSS.

    Exit status: 0 when every gate holds on the scenarios both engines solved, 1 when one does
    not, 2 when no scenario could be compared (each unsolved scenario is listed) or the feeder
    cannot be loaded or, without a master file, written to OpenDSS (one line on stderr naming
    the file or element)."""
    ap = argparse.ArgumentParser(prog="gridedge-validate", description=validate_main.__doc__)
    ap.add_argument("feeder", help=f"bundled feeder name ({', '.join(BUNDLED)}), a saved feeder "
                                   "(.json.gz) or an OpenDSS master file")
    ap.add_argument("--scenarios", type=int, default=10, help="random load scenarios (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load-model", choices=["zip", "pq", "both"], default="both",
                    help="loads as modelled (zip), all constant power (pq), or both (default)")
    ap.add_argument("--taps", default="solved", choices=["solved", "file"],
                    help="regulator taps when importing a .dss file (default: as OpenDSS solves)")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = ap.parse_args(argv)
    if args.scenarios < 0:
        ap.error("--scenarios must be >= 0")
    feeder, master = _feeder_and_master(args.feeder, args.taps)
    modes = ["zip", "pq"] if args.load_model == "both" else [args.load_model]
    try:  # without a master file OpenDSS solves the export, which names what it cannot write
        results = [compare(feeder, args.scenarios, args.seed, m, master) for m in modes]
    except ValueError as exc:
        _input_error("gridedge-validate", args.feeder, exc)
    compared = [r for r in results if r.n_compared]
    worst = {k: (max(getattr(r, k) for r in compared) if compared else None) for k in GATES}
    passed = bool(compared) and all(worst[k] <= GATES[k] for k in GATES)
    _print_comparisons(results)
    if not compared:
        print("NOTHING COMPARED: no scenario was solved by both engines")
    else:
        print(("PASSED" if passed else "FAILED") + " on the scenarios both engines solved (gates: "
              + ", ".join(f"{k} <= {v:g}" for k, v in GATES.items()) + ")")
    if args.json:
        print(json.dumps({**worst, "n_scenarios": results[0].n_scenarios,
                          "n_compared": sum(r.n_compared for r in results), "passed": passed,
                          "feeder": feeder.name, "per_mode": [r.as_dict() for r in results]}))
    return 2 if not compared else (0 if passed else 1)


def _print_comparisons(results) -> None:
    def num(x, w):
        return f"{x:{w}.3e}" if x is not None else f"{'-':>{w}}"

    print(f"{'feeder':12} {'loads':5} {'solved':>7} {'max |dV| pu':>12} {'max dAng deg':>12} "
          f"{'floating LL':>12} {'max dI rel':>11}")
    for r in results:
        print(f"{r.feeder:12} {r.load_model:5} {f'{r.n_compared}/{r.n_scenarios}':>7} "
              f"{num(r.max_v_err_pu, 12)} {num(r.max_angle_err_deg, 12)} "
              f"{num(r.max_v_ll_err_pu_floating, 12)} {num(r.max_i_rel_err, 11)}")
        for engine, idx in r.unsolved.items():
            if idx:
                name = "OpenDSS" if engine == "opendss" else "gridedge"
                print(f"  {r.load_model}: {name} did not solve {len(idx)} scenario(s): {idx} "
                      "(0 = nominal; left out of the figures)")
        if r.floating_nodes:
            print(f"  floating (compared line-to-line): {', '.join(r.floating_nodes)}")


def bench_main(argv=None) -> int:
    """``gridedge-bench powerflow --feeder F --batch N [--device] [--dtype] [--json]``,
    ``gridedge-bench env --scenario ID --num-envs N [--device] [--dtype] [--compile] [--json]``,
    ``gridedge-bench conditioning --env ID [--days N] [--split S] [--pv-share X] [--pv-kwp LO HI]``
    (prints one JSON object), ``gridedge-bench dayflow --scenario ID --days D [--opendss-days K]
    [--repeats R] [--device] [--dtype] [--json] [--table PATH]``. The environment-gradient
    benchmark needs a policy: ``gradmap-bench --envgrad``."""
    ap = argparse.ArgumentParser(prog="gridedge-bench", description=bench_main.__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("powerflow", help="solves/s of our power flow vs OpenDSS")
    p.add_argument("--feeder", default="ieee123",
                   help=f"bundled feeder ({', '.join(BUNDLED)}), synthetic-N, a saved feeder "
                        "(.json.gz) or an OpenDSS master file (default ieee123)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp64", "fp32"], default="fp64")
    p.add_argument("--tol", type=float, default=None,
                   help="convergence tolerance, p.u. (default 1e-8 fp64, 1e-6 fp32; OpenDSS "
                        "runs at the same tolerance)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--opendss-scenarios", type=int, default=2000)
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    p.add_argument("--table", type=Path, default=None, help="append a row to this markdown table")
    e = sub.add_parser("env", help="agent-steps/s of the batched core vs OpenDSS-stepped")
    e.add_argument("--scenario", default="ieee123-1000-v0")
    e.add_argument("--num-envs", type=int, default=64)
    e.add_argument("--steps", type=int, default=48)
    e.add_argument("--opendss-envs", type=int, default=None,
                   help="days the OpenDSS peer steps (default: min(num_envs, 64))")
    e.add_argument("--device", default="cpu")
    e.add_argument("--dtype", choices=["fp64", "fp32"], default="fp64")
    e.add_argument("--compile", action="store_true",
                   help="torch.compile the step's element-wise stages (EnvConfig.compile)")
    e.add_argument("--repeats", type=int, default=3,
                   help="timing rounds: one peer day, then ours for as long; each side's best")
    e.add_argument("--json", action="store_true", help="last line: one JSON object")
    _conditioning_parser(sub)
    _dayflow_parser(sub)
    args = ap.parse_args(argv)
    if args.what == "conditioning":
        return _conditioning(args)
    if args.what == "dayflow":
        return _dayflow(args)
    if args.what == "env":
        out = bench_env(args.scenario, args.num_envs, args.steps, args.opendss_envs, args.device,
                        args.dtype, args.compile, args.repeats)
        return _report(out, args)
    if not re.fullmatch(r"synthetic-\d+", args.feeder):
        try:  # once here, so that a bad --feeder is one line, not a traceback from the benchmark
            load_feeder(args.feeder)
        except _INPUT_ERRORS as exc:
            _input_error("gridedge-bench", args.feeder, exc)
    out = bench_powerflow(args.feeder, args.batch, args.device, args.dtype, args.tol,
                          args.repeats, args.opendss_scenarios)
    return _report(out, args, append_table_row)


def _conditioning_parser(sub) -> None:
    c = sub.add_parser("conditioning", help="power-flow contraction, iterations and Jacobian "
                                            "condition number against DER output (JSON)")
    c.add_argument("--env", default="ieee13-50-v0", help="registered environment id")
    c.add_argument("--days", type=int, default=None, help="first N days of the split (default all)")
    c.add_argument("--split", choices=["train", "validation", "test"], default="test")
    c.add_argument("--jacobian-samples", type=int, default=12,
                   help="day-steps whose dense Jacobian is decomposed (spread over DER output)")
    c.add_argument("--pv-share", type=float, default=None,
                   help="override the share of households with PV (high-DER cases)")
    c.add_argument("--pv-kwp", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="override the range of installed PV per household, kWp")
    c.add_argument("--device", default="cpu")


def _conditioning(args) -> int:
    """Run ``gridedge-bench conditioning``: one JSON line, or one error line and exit 2."""
    try:
        out = bench_conditioning(args.env, args.days, args.split, args.jacobian_samples,
                                 args.pv_share, None if args.pv_kwp is None else tuple(args.pv_kwp),
                                 args.device)
    except (ConfigError, KeyError, ValueError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"gridedge-bench conditioning: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0


def _dayflow_parser(sub) -> None:
    d = sub.add_parser("dayflow", help="the power flows of whole training days: ours batched "
                                       "(forward, forward+backward) vs OpenDSS one by one")
    d.add_argument("--scenario", default="ieee8500-10000-v0", help="registered environment id")
    d.add_argument("--days", type=int, default=32, help="training days (x 48 day-steps)")
    d.add_argument("--opendss-days", type=int, default=None,
                   help="days OpenDSS solves, day-step by day-step (default all; 0 skips it)")
    d.add_argument("--repeats", type=int, default=3, help="ours: best of this many")
    d.add_argument("--device", default="cpu")
    d.add_argument("--dtype", choices=["fp64", "fp32"], default="fp64")
    d.add_argument("--json", action="store_true", help="last line: one JSON object")
    d.add_argument("--table", type=Path, default=None, help="append a row to this markdown table")


def _dayflow(args) -> int:
    """Run ``gridedge-bench dayflow``; a bad scenario or count is one error line and exit 2."""
    try:
        out = bench_dayflow(args.scenario, args.days, args.opendss_days, args.repeats,
                            args.device, args.dtype)
    except (ConfigError, KeyError, ValueError) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"gridedge-bench dayflow: {' '.join(msg.split())}", file=sys.stderr)
        return 2
    return _report(out, args, append_dayflow_row)


def _report(out: dict, args, append_row=None) -> int:
    """Print a benchmark's result as aligned ``key value`` lines, append a row to
    ``--table`` (where the command has one) and print the JSON last with ``--json``."""
    for k, v in out.items():
        print(f"{k:32} {v}")
    if append_row is not None and getattr(args, "table", None) is not None:
        append_row(args.table, out)
    if args.json:
        print(json.dumps(out))
    return 0


def validate() -> None:  # console-script shims
    run_console(validate_main, "gridedge-validate")


def bench() -> None:
    run_console(bench_main, "gridedge-bench")
