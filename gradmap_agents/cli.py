"""Command-line tools: ``gradmap-train``, ``gradmap-eval``, ``gradmap-export``, ``gradmap-bench``.

Argument parsing, progress bars and printed reports only: runs are trained, evaluated and
rebuilt through the run API (:mod:`.runs`), benchmarks through :mod:`.bench`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from gridedge_env.config import ConfigError
from gridedge_env.console import run_console

from . import checkpoint, distributed
from .bench import bench_envgrad, bench_kernel, bench_methods, bench_update
from .checkpoint import CheckpointError, config_of
from .config import config_names, diff_keys, load_config, merge, parse_set, resumable
from .export import export_policies
from .plots import plot_test_day
from .runs import CHECKPOINT, build_env, evaluate_run, load_run, train_run
from .train import NonConvergenceError

EXIT_DIVERGED = 3
EXIT_NONCONVERGED = 4


def _dotted(d: dict, key: str):
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _check_resumable(ckpt: Path, cfg) -> None:
    """Refuse to resume the checkpoint ``ckpt`` with ``cfg`` when a key that changes the run's
    numbers differs (naming each dotted key, saved and new value), or when the run already has
    ``cfg.iterations`` iterations (``config.yaml`` is left alone either way)."""
    try:
        meta = checkpoint.read(ckpt)[1]
    except CheckpointError as exc:
        raise SystemExit(f"gradmap-train: {exc}") from None
    saved, now = meta["config"], cfg.as_dict()
    diff = [k for k in diff_keys(saved, now) if not resumable(k)]
    if diff:
        what = ", ".join(f"{k} (saved {_dotted(saved, k)!r}, now {_dotted(now, k)!r})"
                         for k in diff)
        raise SystemExit(f"gradmap-train: {ckpt}: written by another configuration (differs in "
                         f"{what}); resume with the run's own config")
    done = meta["iteration"]
    if cfg.iterations <= done:
        raise SystemExit(f"gradmap-train: --resume: the run in {ckpt.parent} already has {done} "
                         f"iterations, iterations={cfg.iterations} asks for no more; set "
                         f"iterations above {done} to continue it (gradmap-eval --run "
                         f"{ckpt.parent} evaluates it)")


def _checkpoint_note(run_dir: Path) -> str:
    """Which checkpoint a failed run leaves: its iteration, or that none was written."""
    try:
        it = checkpoint.read(run_dir / CHECKPOINT)[1]["iteration"]
    except CheckpointError:
        return f"no checkpoint was written in {run_dir}"
    return f"the checkpoint of iteration {it} in {run_dir / CHECKPOINT} is kept"


def _resolve(args):
    """The run's config and directory, refusing to overwrite a run unless resuming it."""
    sets = parse_set(args.set or [])
    out = Path(args.out) if args.out else None
    if args.resume:
        if out is None:
            raise SystemExit("gradmap-train: --resume needs --out DIR (the run to continue)")
        ckpt = out / CHECKPOINT
        if not ckpt.is_file():
            raise SystemExit(f"gradmap-train: --resume: {ckpt} does not exist")
        if args.config:
            cfg = load_config(args.config, sets)
        else:
            try:
                cfg = load_config(None, merge(config_of(ckpt).as_dict(), sets))
            except CheckpointError as exc:
                raise SystemExit(f"gradmap-train: {exc}") from None
        _check_resumable(ckpt, cfg)
        return cfg, out
    cfg = load_config(args.config, sets)
    if out is None:
        stem = Path(args.config).stem if args.config else cfg.env
        out = Path("runs") / f"{stem}-{cfg.algo.method}-s{cfg.seed}"
    if (out / CHECKPOINT).exists():
        raise SystemExit(f"gradmap-train: {out} already holds a run ({CHECKPOINT}); pass --resume "
                         "to continue it, or --out another directory")
    return cfg, out


def train_main(argv=None) -> int:
    """``gradmap-train --config NAME|FILE [--set key=value ...] [--out DIR] [--logger wandb|csv|none]
    [--resume] [--max-minutes M]``: train GradMAP/GradMA policies, then evaluate them. Under
    ``torchrun --nproc_per_node K`` the K processes train one run together, each on its share of
    every batch of days (gloo on the CPU, NCCL on GPUs); rank 0 writes the run's files and
    prints."""
    ap = argparse.ArgumentParser(prog="gradmap-train", description=train_main.__doc__)
    ap.add_argument("--config", help=f"training config: a registered name "
                    f"({', '.join(config_names())}) or a YAML file; default: the defaults")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key (dotted: algo.epochs=8); repeatable")
    ap.add_argument("--out", help="run directory (default runs/<config>-<method>-s<seed>)")
    ap.add_argument("--logger", choices=["wandb", "csv", "none"], default="csv",
                    help="wandb: W&B (offline without an API key) and CSV; csv: CSV and a "
                         "progress bar (default); none: CSV only, quiet")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop (after a checkpoint) once this much wall time has passed")
    ap.add_argument("--no-eval", action="store_true", help="skip the test-day evaluation")
    args = ap.parse_args(argv)
    try:
        cfg, run_dir = _resolve(args)
    except ConfigError as exc:
        raise SystemExit(f"gradmap-train: {exc}") from None
    try:
        env = build_env(cfg)  # validates env_overrides before any run directory exists
    except ConfigError as exc:
        raise SystemExit(f"gradmap-train: {exc}") from None
    try:
        distributed.init_from_env(cfg.device)  # joins torchrun's process group, if any
        code = _train(args, cfg, run_dir, env)
    except distributed.LaunchError as exc:
        distributed.close()
        raise SystemExit(f"gradmap-train: {exc}") from None
    except BaseException:
        distributed.close()
        raise
    return distributed.finish(code)  # under torchrun: ends the process here (see its doc)


def _train(args, cfg, run_dir: Path, env) -> int:
    """Train (and evaluate) the resolved run; the exit code."""
    start = checkpoint.read(run_dir / CHECKPOINT)[1]["iteration"] if args.resume else 0
    main = distributed.is_main()
    bar = _progress(cfg, start, quiet=args.logger == "none" or not main)
    try:
        s, _, report = train_run(
            run_dir, cfg, env=env, resume=args.resume, logger=args.logger, progress_fn=bar,
            evaluate=not args.no_eval,
            max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
    except CheckpointError as exc:
        raise SystemExit(f"gradmap-train: {exc}") from None
    except NonConvergenceError as exc:  # every rank stops alike; rank 0 says why
        bar(None)
        if main:
            print(f"gradmap-train: stopped: {exc}; {_checkpoint_note(run_dir)}", file=sys.stderr)
        return EXIT_NONCONVERGED
    except FloatingPointError as exc:
        bar(None)
        if main:
            print(f"gradmap-train: the run diverged ({exc}); {_checkpoint_note(run_dir)}",
                  file=sys.stderr)
        return EXIT_DIVERGED
    bar(None)
    if not main:
        return 0
    if s.iteration < cfg.iterations:
        print(f"stopped after --max-minutes at iteration {s.iteration}/{cfg.iterations}; "
              f"continue with: gradmap-train --resume --out {run_dir}")
        return 0
    if report is not None:
        _print_report(run_dir, report)
    return 0


def _progress(cfg, start: int, quiet: bool):
    """A tqdm bar with live cost and violation; returns ``update(metrics | None)``."""
    if quiet:
        return lambda m: None
    bar = tqdm(total=cfg.iterations, initial=start, unit="grad",
               dynamic_ncols=True, desc=f"{cfg.algo.method} {cfg.env}")

    def update(m):
        if m is None:
            bar.close()
            return
        bar.update(1)
        post = {"cost": f"{m['train/cost']:.0f}", "viol": f"{m['train/violation_magnitude']:.3g}"}
        if "val/cost" in m:
            post.update(val_cost=f"{m['val/cost']:.0f}", val_viol=f"{m['val/violation_magnitude']:.3g}")
        bar.set_postfix(post, refresh=False)

    return update


def _print_report(run_dir: Path, r: dict) -> None:
    print(f"\n{r['env']} {r['method']}: {r['n_agents']} agents, {r['n_test_days']} test days")
    for k in ("cost", "violation_magnitude", "violation_frequency", "line_overload_frequency",
              "v_min_pu", "v_max_pu"):
        print(f"  {k:26} policies {r[f'test/{k}']:12.5g}   no control {r[f'no_control/{k}']:12.5g}")
    nc = {w: (r.get(f"{w}/nonconverged", 0), r.get(f"{w}/nonconverged_share", 0.0))
          for w in ("test", "no_control")}
    print(f"  {'nonconverged day-steps':26} policies {nc['test'][0]:5d} ({nc['test'][1]:5.1%})   "
          f"no control {nc['no_control'][0]:5d} ({nc['no_control'][1]:5.1%})")
    if nc["test"][0] or nc["no_control"][0]:
        print("  (the metrics above leave the non-converged day-steps out)")
    reached = ", ".join(f"{k} % after {t:.0f} s" if t is not None else f"{k} % never"
                        for k in (25, 50, 75) for t in [r.get(f"train/time_to_{k}")])
    print(f"  trained {r['train/wall_seconds']:.0f} s, {r['train/env_gradients']} environment "
          f"gradients; quality levels (validation): {reached}")
    print(f"results: {run_dir / 'eval.json'}")
    for name in ("agents_power.png", "voltage_envelope.png", "learning_curves.png"):
        if (run_dir / name).exists():
            print(f"plot:    {run_dir / name}")


def _load_run(run_dir: Path):
    try:
        return load_run(run_dir)
    except CheckpointError as exc:
        raise SystemExit(f"{exc}") from None


def eval_main(argv=None) -> int:
    """``gradmap-eval RUN_DIR|--run RUN_DIR [--opendss]``: evaluate a run's policies on the test
    days. ``gradmap-eval RUN_DIR --day K [--out DIR]``: instead, plot every agent's device power
    over its rating on the K-th test day (K counts from 1) into ``DIR/day_K.png`` (default: the
    run directory)."""
    ap = argparse.ArgumentParser(prog="gradmap-eval", description=eval_main.__doc__)
    ap.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="run directory of gradmap-train")
    ap.add_argument("--run", help="the same, as an option")
    ap.add_argument("--opendss", action="store_true",
                    help="also re-simulate the test days with OpenDSS solving every power flow")
    ap.add_argument("--day", type=int, metavar="K",
                    help="plot the K-th test day (1 = the first) instead of evaluating")
    ap.add_argument("--out", metavar="DIR", help="--day: folder of day_K.png (default RUN_DIR)")
    args = ap.parse_args(argv)
    if (args.run_dir is None) == (args.run is None):
        ap.error("give the run directory once: RUN_DIR or --run RUN_DIR")
    if args.day is None and args.out is not None:
        ap.error("--out goes with --day (evaluation writes into the run directory)")
    if args.day is not None and args.opendss:
        ap.error("--day plots one day without evaluating; run --opendss on its own")
    run_dir = Path(args.run_dir or args.run)
    cfg, env, s = _load_run(run_dir)
    if args.day is not None:
        print(_plot_day(run_dir, cfg, env, s, args.day, Path(args.out) if args.out else run_dir))
        return 0
    _print_report(run_dir, evaluate_run(run_dir, env, cfg, s, opendss=args.opendss))
    return 0


def _plot_day(run_dir: Path, cfg, env, s, k: int, out: Path) -> Path:
    """``out/day_K.png``: the run's policies on the ``k``-th test day (from 1), by device kind."""
    test = env.scenario.split.test
    if not 1 <= k <= len(test):
        raise SystemExit(f"gradmap-eval: --day {k}: {run_dir} has {len(test)} test days, "
                         f"numbered 1 to {len(test)}")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"gradmap-eval: --out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    day = int(test[k - 1])
    path = out / f"day_{k}.png"
    plot_test_day(env, s.policy, day, path,
                  f"{cfg.env} {cfg.algo.method}: test day {k} of {len(test)} "
                  f"({env.scenario.profiles.dates[day]})")
    return path


def export_main(argv=None) -> int:
    """``gradmap-export --run DIR --out EXPORT_DIR [--replace]``: one ONNX file per agent and a
    manifest, into a new or empty folder (``--replace``: replace a folder's contents whole)."""
    ap = argparse.ArgumentParser(prog="gradmap-export", description=export_main.__doc__)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--replace", action="store_true",
                    help="replace the contents of a non-empty --out folder whole (no stale files)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"gradmap-export: {out} is a file, not a folder")
    if not args.replace and out.is_dir() and any(out.iterdir()):
        raise SystemExit(f"gradmap-export: {out} is not empty; pass --replace to replace its "
                         f"contents whole")
    cfg, env, s = _load_run(Path(args.run))
    m = export_policies(s.policy, env, out, run=str(Path(args.run).resolve()),
                        env_id=cfg.env, replace=args.replace)
    print(f"exported {len(m['agents'])} agents to {args.out} (manifest.json)")
    return 0


def bench_main(argv=None) -> int:
    """``gradmap-bench --scenario ID --methods gradmap,gradma [--seeds 3] [--config NAME|FILE]
    [--set ...] [--json]``: time to target of each method, same run, same seeds.
    ``gradmap-bench --kernel [--agents N]``: the stacked-policy kernel against plain autograd
    and TorchRL's MultiAgentMLP; ``gradmap-bench --update [--scenario ID]``: seconds per
    GradMAP and GradMA update; ``gradmap-bench --envgrad [--scenario ID] [--days B] [--dtype]
    [--hidden H] [--compile] [--paths whole_day] [--recompute]``: seconds per environment
    gradient, whole-day vs stepwise, and where the whole-day gradient's time goes (policies,
    devices, power flow; forward, backward)."""
    ap = argparse.ArgumentParser(prog="gradmap-bench", description=bench_main.__doc__)
    ap.add_argument("--scenario", default=None,
                    help="default ieee13-50-v0 (ieee123-1000-v0 with --update)")
    ap.add_argument("--methods", default="gradmap,gradma")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--config", default=None,
                    help="training config: a registered name (ieee13-50, ...) or a YAML file")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE")
    ap.add_argument("--set-method", action="append", metavar="METHOD:KEY=VALUE", default=[],
                    help="override for one method only (gradma:algo.lr=0.01)")
    ap.add_argument("--out", default=None, help="append the JSON to this JSON-lines file")
    ap.add_argument("--json", action="store_true")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--kernel", action="store_true",
                      help="ms per policy forward + backward: fused kernel, plain autograd, "
                           "TorchRL MultiAgentMLP")
    mode.add_argument("--update", action="store_true",
                      help="seconds per GradMAP / GradMA update (default scenario ieee123-1000)")
    mode.add_argument("--envgrad", action="store_true",
                      help="seconds per environment gradient: whole-day vs stepwise, and the "
                           "whole-day one's breakdown by stage (default scenario ieee123-1000)")
    ap.add_argument("--agents", type=int, default=1000, help="--kernel: number of agents")
    ap.add_argument("--days", type=int, default=32, help="--envgrad: days per gradient")
    ap.add_argument("--device", default="cpu", help="--envgrad: device")
    ap.add_argument("--dtype", choices=["fp64", "fp32"], default="fp64", help="--envgrad: dtype")
    ap.add_argument("--hidden", default="16",
                    help="--envgrad: policy hidden sizes, comma-separated; '' for a linear policy "
                         "(default 16: the trainer's)")
    ap.add_argument("--repeats", type=int, default=3, help="--envgrad: timing rounds")
    ap.add_argument("--compile", action="store_true",
                    help="--envgrad: torch.compile each step's devices, costs and observations")
    ap.add_argument("--paths", default="whole_day,stepwise",
                    help="--envgrad: the paths timed, comma-separated (one alone: its peak memory)")
    ap.add_argument("--recompute", action="store_true",
                    help="--envgrad: the whole-day path recomputes policies and devices in the "
                         "backward (algo.recompute)")
    args = ap.parse_args(argv)
    if args.kernel or args.update or args.envgrad:
        return _bench_parts(args)
    out = bench_methods(args.scenario or "ieee13-50-v0", args.methods.split(","), args.seeds,
                        args.config, args.set or [], args.set_method)
    for name, r in out["methods"].items():
        print(f"{name:8} time to the 50 % level {r['time_to_50_s']} s, env gradients "
              f"{r['env_gradients_to_50']}, test cost {r['test_cost']:.1f}, test voltage "
              f"violation {r['test_voltage_violation_magnitude']:.4g}, line "
              f"{r['test_line_violation_magnitude']:.4g}")
    print(f"speedup to the 50 % level {out['speedup_to_50']}")
    return _emit(out, args)


def _emit(out: dict, args) -> int:
    """Append ``out`` to ``--out`` (JSON lines) and print it with ``--json``."""
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps(out) + "\n")
    if args.json:
        print(json.dumps(out))
    return 0


def _bench_parts(args) -> int:
    if args.envgrad:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
        paths = tuple(p.strip() for p in args.paths.split(",") if p.strip())
        try:
            out = bench_envgrad(args.scenario or "ieee123-1000-v0", args.days, args.dtype,
                                args.device, hidden, args.repeats, args.compile, paths,
                                args.recompute)
        except ValueError as exc:
            print(f"gradmap-bench: {exc}", file=sys.stderr)
            return 2
        for k, v in out.items():
            print(f"{k:32} {v}")
    elif args.kernel:
        out = bench_kernel(args.agents)
        for r in out["rows"]:
            print(f"S={r['samples']:5}  fused {r['fused_ms']:8.2f} ms  plain autograd "
                  f"{r['plain_autograd_ms']:8.2f} ms  TorchRL {r['torchrl_ms']:8.2f} ms")
    else:
        out = bench_update(args.scenario or "ieee123-1000-v0")
        print({k: v for k, v in out.items() if k.endswith("_s")})
    return _emit(out, args)


def train() -> None:  # console-script shims
    run_console(train_main, "gradmap-train")


def eval_() -> None:
    run_console(eval_main, "gradmap-eval")


def export() -> None:
    run_console(export_main, "gradmap-export")


def bench() -> None:
    run_console(bench_main, "gradmap-bench")
