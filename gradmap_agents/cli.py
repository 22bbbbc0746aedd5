"""Command-line tools: ``gradmap-train``, ``gradmap-eval``, ``gradmap-export``, ``gradmap-bench``.

This is the layer that knows about files, progress bars, CSV and W&B; the trainer reports
through callbacks only. A run directory holds ``config.yaml`` (the resolved configuration),
``checkpoint.safetensors``, ``train.csv``, ``validation.csv``, and after evaluation
``eval.json`` and the PNG plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

EXIT_DIVERGED = 3
CHECKPOINT = "checkpoint.safetensors"


def _env(cfg):
    import torch

    from gridedge_env.registry import env_params

    dtype = {"fp64": torch.float64, "fp32": torch.float32}[cfg.dtype]
    return env_params(cfg.env, device=cfg.device, dtype=dtype, **dict(cfg.env_overrides))


def _write_config(run_dir: Path, cfg) -> None:
    from .checkpoint import atomic_write

    text = "# resolved configuration of this run (gradmap-train)\n" + yaml.safe_dump(
        cfg.as_dict(), sort_keys=False)
    atomic_write(run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(text))


def _resolve(args):
    """The run's config and directory, refusing to overwrite a run unless resuming it."""
    from .checkpoint import CheckpointError, config_of
    from .config import load_config, merge, parse_set

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
    """``gradmap-train --config FILE [--set key=value ...] [--out DIR] [--logger wandb|csv|none]
    [--resume] [--max-minutes M]``: train GradMAP/GradMA policies, then evaluate them."""
    ap = argparse.ArgumentParser(prog="gradmap-train", description=train_main.__doc__)
    ap.add_argument("--config", help="training YAML (configs/ieee13-50.yaml); default: defaults")
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
    from gridedge_env.config import ConfigError

    from . import checkpoint
    from .loggers import RunLogger
    from .train import train

    try:
        cfg, run_dir = _resolve(args)
    except ConfigError as exc:
        raise SystemExit(f"gradmap-train: {exc}") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    env = _env(cfg)
    state = None
    if args.resume:
        try:
            state = checkpoint.load(run_dir / CHECKPOINT, env, cfg)
        except checkpoint.CheckpointError as exc:
            raise SystemExit(f"gradmap-train: {exc}") from None
    _write_config(run_dir, cfg)
    log = RunLogger(run_dir, args.logger, cfg, resume_from=state.iteration if state else None,
                    name=run_dir.name)
    bar = _progress(cfg, state, quiet=args.logger == "none")
    t_start = time.monotonic()

    def progress(m):
        log.log(m)
        bar(m)

    def should_stop():
        return args.max_minutes is not None and time.monotonic() - t_start > 60 * args.max_minutes

    try:
        s = train(env, cfg, state=state, progress_fn=progress, should_stop=should_stop,
                  checkpoint_fn=lambda st: checkpoint.save(run_dir / CHECKPOINT, st, cfg))
    except FloatingPointError as exc:
        bar(None)
        log.close()
        print(f"gradmap-train: the run diverged ({exc}); the last good checkpoint in {run_dir} "
              "is kept", file=sys.stderr)
        return EXIT_DIVERGED
    bar(None)
    if s.iteration < cfg.iterations:
        log.close()
        print(f"stopped after --max-minutes at iteration {s.iteration}/{cfg.iterations}; "
              f"continue with: gradmap-train --resume --out {run_dir}")
        return 0
    if not args.no_eval:
        report = evaluate_run(run_dir, env, cfg, s)
        log.summary({k: v for k, v in report.items() if isinstance(v, (int, float))})
        _print_report(run_dir, report)
    log.close()
    return 0


def _progress(cfg, state, quiet: bool):
    """A tqdm bar with live cost and violation; returns ``update(metrics | None)``."""
    if quiet:
        return lambda m: None
    from tqdm import tqdm

    bar = tqdm(total=cfg.iterations, initial=state.iteration if state else 0, unit="grad",
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


def evaluate_run(run_dir: Path, env, cfg, s, *, opendss: bool = False) -> dict:
    """Test-day metrics of the run's policies and of no control into ``eval.json``, and the
    plots. ``opendss``: also re-simulate the test days with OpenDSS solving every power flow."""
    from . import plots
    from .checkpoint import atomic_write
    from .evaluate import evaluate, no_control, time_to_target

    test = env.scenario.split.test
    m, roll = evaluate(env, s.policy, test)
    m_nc, roll_nc = evaluate(env, no_control(env), test)
    t_target, g_target = time_to_target(s.history, s.no_control_val)
    report = {"env": cfg.env, "method": cfg.algo.method, "seed": cfg.seed,
              "n_test_days": len(test), "n_agents": env.n_agents,
              **{f"test/{k}": v for k, v in m.items()},
              **{f"no_control/{k}": v for k, v in m_nc.items()},
              **{f"test/{k}_cut": 1 - m[k] / m_nc[k] if m_nc[k] else None
                 for k in ("violation_magnitude", "violation_frequency")},
              "train/wall_seconds": s.train_seconds, "train/env_gradients": s.env_gradients,
              "train/iterations": s.iteration, "train/time_to_target_s": t_target,
              "train/env_gradients_to_target": g_target,
              **({k: v for k, v in s.history[-1].items() if k.startswith("val/")}
                 if s.history else {})}
    if opendss:
        report.update(opendss_check(env, s.policy, test))
    atomic_write(run_dir / "eval.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    title = f"{cfg.env} {cfg.algo.method}"
    day = 0
    plots.agents_power(roll.p_agent_kw[day], env.kind_slices, env.dt_h, run_dir / "agents_power.png",
                       f"{title}: all agents, test day {int(test[day])}")
    node = env.node_mask.bool()
    plots.voltage_envelope(roll.v_pu[..., node], roll_nc.v_pu[..., node], env.scenario.config.limits,
                           env.dt_h, run_dir / "voltage_envelope.png", f"{title}: test days")
    if s.history:
        plots.learning_curves(s.history, s.no_control_val, run_dir / "learning_curves.png", title)
    return report


def opendss_check(env, policy, days) -> dict:
    """``opendss/`` metrics: the test days stepped with OpenDSS solving every power flow (the
    policies act on OpenDSS's voltages where they observe any), and the largest voltage
    difference to our solver on the same days."""
    import torch

    from gridedge_env.bench_env import opendss_stepped
    from gridedge_env.rollout import rollout

    from .evaluate import metrics

    peer = opendss_stepped(env)
    with torch.no_grad():
        ours = rollout(env, days, policy, path="stepwise")
        theirs = rollout(peer, days, policy, path="stepwise")
    m = metrics(env, theirs)
    out = {f"opendss/{k}": v for k, v in m.items()}
    out["opendss/max_v_diff_pu"] = float((ours.v_pu - theirs.v_pu).abs().max())
    out["opendss/max_action_diff"] = float((ours.actions - theirs.actions).abs().max())
    return out


def _print_report(run_dir: Path, r: dict) -> None:
    print(f"\n{r['env']} {r['method']}: {r['n_agents']} agents, {r['n_test_days']} test days")
    for k in ("cost", "violation_magnitude", "violation_frequency", "line_overload_frequency",
              "v_min_pu", "v_max_pu"):
        print(f"  {k:26} policies {r[f'test/{k}']:12.5g}   no control {r[f'no_control/{k}']:12.5g}")
    t = r["train/time_to_target_s"]
    reached = f"after {t:.0f} s" if t is not None else "never"
    print(f"  trained {r['train/wall_seconds']:.0f} s, {r['train/env_gradients']} environment "
          f"gradients; target reached {reached}")
    print(f"results: {run_dir / 'eval.json'}")
    for name in ("agents_power.png", "voltage_envelope.png", "learning_curves.png"):
        if (run_dir / name).exists():
            print(f"plot:    {run_dir / name}")


def _load_run(run_dir: Path):
    from . import checkpoint

    try:
        cfg = checkpoint.config_of(run_dir / CHECKPOINT)
        env = _env(cfg)
        return cfg, env, checkpoint.load(run_dir / CHECKPOINT, env, cfg)
    except checkpoint.CheckpointError as exc:
        raise SystemExit(f"{exc}") from None


def eval_main(argv=None) -> int:
    """``gradmap-eval --run DIR [--opendss]``: evaluate a run's policies on the test days."""
    ap = argparse.ArgumentParser(prog="gradmap-eval", description=eval_main.__doc__)
    ap.add_argument("--run", required=True, help="run directory of gradmap-train")
    ap.add_argument("--opendss", action="store_true",
                    help="also re-simulate the test days with OpenDSS solving every power flow")
    args = ap.parse_args(argv)
    run_dir = Path(args.run)
    cfg, env, s = _load_run(run_dir)
    _print_report(run_dir, evaluate_run(run_dir, env, cfg, s, opendss=args.opendss))
    return 0


def export_main(argv=None) -> int:
    """``gradmap-export --run DIR --out EXPORT_DIR``: one ONNX file per agent and a manifest."""
    ap = argparse.ArgumentParser(prog="gradmap-export", description=export_main.__doc__)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from .export import export_policies

    cfg, env, s = _load_run(Path(args.run))
    m = export_policies(s.policy, env, Path(args.out), run=str(Path(args.run).resolve()),
                        env_id=cfg.env)
    print(f"exported {len(m['agents'])} agents to {args.out} (manifest.json)")
    return 0


def bench_main(argv=None) -> int:
    """``gradmap-bench --scenario ID --methods gradmap,gradma [--seeds 3] [--config FILE]
    [--set ...] [--json]``: time to target of each method, same run, same seeds.
    ``gradmap-bench --kernel [--agents N]``: the stacked-policy kernel against plain autograd
    and TorchRL's MultiAgentMLP; ``gradmap-bench --update [--scenario ID]``: seconds per
    GradMAP and GradMA update."""
    ap = argparse.ArgumentParser(prog="gradmap-bench", description=bench_main.__doc__)
    ap.add_argument("--scenario", default=None,
                    help="default ieee13-50-v0 (ieee123-1000-v0 with --update)")
    ap.add_argument("--methods", default="gradmap,gradma")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--config", default=None)
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
    ap.add_argument("--agents", type=int, default=1000, help="--kernel: number of agents")
    args = ap.parse_args(argv)
    if args.kernel or args.update:
        return _bench_parts(args)
    from .bench import bench_methods

    out = bench_methods(args.scenario or "ieee13-50-v0", args.methods.split(","), args.seeds,
                        args.config, args.set or [], args.set_method)
    for name, r in out["methods"].items():
        print(f"{name:8} time to target {r['time_to_target_s']} s, env gradients "
              f"{r['env_gradients_to_target']}, test cost {r['test_cost']:.1f}, "
              f"test violation {r['test_violation_magnitude']:.4g}")
    print(f"speedup {out['speedup']} (at least {out['speedup_at_least']})")
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
    from .bench import bench_kernel, bench_update

    if args.kernel:
        out = bench_kernel(args.agents)
        for r in out["rows"]:
            print(f"S={r['samples']:5}  fused {r['fused_ms']:8.2f} ms  plain autograd "
                  f"{r['plain_autograd_ms']:8.2f} ms  TorchRL {r['torchrl_ms']:8.2f} ms")
    else:
        out = bench_update(args.scenario or "ieee123-1000-v0")
        print({k: v for k, v in out.items() if k.endswith("_s")})
    return _emit(out, args)


def _run(fn) -> None:
    sys.exit(fn())


def train() -> None:  # console-script shims
    _run(train_main)


def eval_() -> None:
    _run(eval_main)


def export() -> None:
    _run(export_main)


def bench() -> None:
    _run(bench_main)
