"""``gradmap-compare``: the comparison of every method (:mod:`baselines.compare`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gridedge_env.config import ConfigError
from gridedge_env.console import run_console

from .compare import METHODS, Plan, run_compare
from .scaling import scaling_plot, scaling_table


def compare_main(argv=None) -> int:
    """``gradmap-compare --config NAME|FILE --methods gradmap,gradma,mappo,ippo,rule,no-control,oracle
    [--seeds 3] [--budget-minutes M] [--out DIR] [--logger wandb|csv|none] [--set key=value]
    [--set-method METHOD:KEY=VALUE] [--opendss] [--ray ADDRESS [--ray-cpus K]]
    [--fixed-penalty] [--threads K] [--shares S1,S2,...] [--json]``:
    every method on the same data, seeds and budget; a table and plots in DIR."""
    ap = argparse.ArgumentParser(prog="gradmap-compare", description=compare_main.__doc__)
    ap.add_argument("--config", help="training config shared by every method: a registered name "
                    "(ieee13-50, ieee123-1000, ieee123-100, ieee123-300) or a YAML file")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"from {', '.join(METHODS)}")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of each learning method")
    ap.add_argument("--budget-minutes", type=float, default=None,
                    help="training wall-time budget of every learning run")
    ap.add_argument("--out", default=None, help="comparison directory (default runs/compare-<config>)")
    ap.add_argument("--logger", choices=["wandb", "csv", "none"], default="csv",
                    help="wandb: one W&B group for the comparison (offline without an API key)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key for every method (repeatable)")
    ap.add_argument("--oracle-iterations", type=int, default=None,
                    help="optimisation steps of the oracle (default: baselines.oracle)")
    ap.add_argument("--set-method", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="override for one method (ippo:iterations=300, gradma:iterations=600)")
    ap.add_argument("--opendss", action="store_true",
                    help="re-simulate every run's policy on the test days with OpenDSS solving "
                         "every power flow (also runs finished before)")
    ap.add_argument("--ray", default=None, metavar="ADDRESS",
                    help="run every (method, seed) as a task on this Ray cluster ('auto': "
                         "RAY_ADDRESS or the local `ray start`); needs gridedge[ray]")
    ap.add_argument("--ray-cpus", type=int, default=1, help="CPUs and torch threads per Ray task")
    ap.add_argument("--fixed-penalty", action="store_true",
                    help="every method minimises cost + the scenario's fixed multipliers x "
                         "violation (no dual ascent, no margins): the cleanest speed comparison")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of every run (default: torch's); recorded in the table")
    ap.add_argument("--shares", default="", metavar="S1,S2,...",
                    help="also tabulate each learning method's time to these shares of the "
                         "objective (e.g. 0.9,0.92,0.93); rerun a finished comparison to add them")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = ap.parse_args(argv)
    stem = Path(args.config).stem if args.config else "defaults"
    try:
        plan = Plan(args.config, tuple(args.set), tuple(m.strip() for m in args.methods.split(",")),
                    args.seeds, args.budget_minutes, Path(args.out or f"runs/compare-{stem}"),
                    args.logger, args.oracle_iterations, tuple(args.set_method), args.opendss,
                    args.ray, args.ray_cpus, fixed_penalty=args.fixed_penalty,
                    threads=args.threads, shares=_shares(args.shares))
        table = run_compare(plan, progress=lambda msg: print(f"gradmap-compare: {msg}", flush=True))
    except (ValueError, ConfigError) as exc:
        raise SystemExit(f"gradmap-compare: {exc}") from None
    print((plan.out / "comparison.md").read_text())
    print(f"table: {plan.out / 'comparison.csv'}, {plan.out / 'comparison.md'}")
    return _print_json(table, args.json)


def _shares(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--shares {text!r}: expected numbers separated by commas, "
                         "e.g. 0.9,0.92") from None


def scaling_main(argv=None) -> int:
    """``gradmap-scaling DIR [DIR ...] --out PNG [--json]``: the scaling figure (and JSON)
    from finished comparisons of one feeder at different agent counts
    (:mod:`baselines.scaling`)."""
    ap = argparse.ArgumentParser(prog="gradmap-scaling", description=scaling_main.__doc__)
    ap.add_argument("dirs", nargs="+", type=Path, help="gradmap-compare output directories")
    ap.add_argument("--out", required=True, type=Path, help="figure to write (PNG)")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args(argv)
    try:
        table = scaling_table(args.dirs)
    except ValueError as exc:
        raise SystemExit(f"gradmap-scaling: {exc}") from None
    scaling_plot(table, args.out)
    for p in table["points"]:
        for m, a in p["methods"].items():
            t, auc = a["time_to_50"], a.get("auc_wall_penalised")
            print(f"{p['n_agents']:6d} agents  {m:10}  time to the 50 % level "
                  f"{'-' if t is None else f'{t:.0f} s':>7}  penalised AUC "
                  f"{'-' if auc is None else f'{auc:.3f}':>5}  test cost {a['cost']:,.0f}  "
                  f"voltage violation {a['voltage_violation_magnitude']:.4g}")
    print(f"figure: {args.out}")
    return _print_json(table, args.json)


def _print_json(obj, wanted: bool) -> int:
    if wanted:
        print(json.dumps(obj))
    return 0


def compare() -> None:  # console-script shims
    run_console(compare_main, "gradmap-compare")


def scaling() -> None:
    run_console(scaling_main, "gradmap-scaling")


def sweep_main(argv=None) -> int:
    """``gradmap-sweep --config NAME|FILE --methods gradmap,gradma,mappo,ippo [--n-trials 12]
    [--seeds 3] [--budget-minutes M] [--out DIR] [--set KEY=VALUE] [--set-method METHOD:KEY=VALUE]
    [--logger csv|wandb|none] [--ablations] [--sampler-seed S] [--json]``: random search of every
    method's search space, each configuration trained with every seed at the budget, selected
    on validation only (:mod:`baselines.sweep`); resumes from DIR. Bad input: one line, exit 2."""
    ap = argparse.ArgumentParser(prog="gradmap-sweep", description=sweep_main.__doc__)
    ap.add_argument("--config", help="training config shared by every method: a registered name "
                    "(ieee13-50, ...) or a YAML file")
    ap.add_argument("--methods", default="gradmap,gradma,mappo,ippo",
                    help="from gradmap, gradma, mappo, ippo")
    ap.add_argument("--n-trials", type=int, default=12,
                    help="configurations per method, in total (a rerun adds only the missing ones)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of every configuration")
    ap.add_argument("--budget-minutes", type=float, default=None,
                    help="training wall-time budget of every run (the comparison's)")
    ap.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<config>)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key for every run (repeatable)")
    ap.add_argument("--set-method", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="a fixed (not searched) value of one method (repeatable)")
    ap.add_argument("--logger", choices=["wandb", "csv", "none"], default="csv",
                    help="wandb: one W&B group for the whole sweep (offline without an API key)")
    ap.add_argument("--ablations", action="store_true",
                    help="also run GradMAP's ablations at its chosen values")
    ap.add_argument("--sampler-seed", type=int, default=0, help="seed of the random search")
    ap.add_argument("--json", action="store_true", help="print the sweep report as JSON")
    args = ap.parse_args(argv)
    stem = Path(args.config).stem if args.config else "defaults"
    try:
        import optuna  # why: optional dependency (gridedge[sweep])

        from .sweep import Sweep, run_sweep  # why: imports optuna
    except ImportError as exc:
        print(f"gradmap-sweep: needs optuna ({exc}); pip install 'gridedge[sweep]'", file=sys.stderr)
        return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        sw = Sweep(args.config, tuple(args.set), tuple(m.strip() for m in args.methods.split(",")),
                   args.n_trials, args.seeds, args.budget_minutes,
                   Path(args.out or f"runs/sweep-{stem}"), args.logger, tuple(args.set_method),
                   args.ablations, args.sampler_seed)
        report = run_sweep(sw, progress=lambda msg: print(f"gradmap-sweep: {msg}", flush=True))
    except (ValueError, ConfigError) as exc:
        print(f"gradmap-sweep: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print((sw.out / "sweep.md").read_text())
    print(f"sweep: {sw.out / 'sweep.json'}, {sw.out / 'sweep.md'}, {sw.out / 'chosen.txt'}")
    return _print_json(report, args.json)


def sweep() -> None:
    run_console(sweep_main, "gradmap-sweep")
