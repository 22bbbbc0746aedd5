"""``gradmap-compare``: every method on the same data, seeds, machine and budget, one table.

A comparison directory holds one run directory per (method, seed) under ``runs/``, each done
when its ``result.json`` exists, and the comparison's outputs: ``comparison.csv`` (a row per
run), ``comparison.md`` (a row per method, mean and range over seeds), ``comparison.json`` and
the plots ``cost_vs_violation.png``, ``learning_curves_wall.png`` and
``learning_curves_gradients.png``. Killed and restarted with the same arguments, it skips the
finished runs and resumes a GradMAP/GradMA run from its last checkpoint and a MAPPO/IPPO run
from its last validation (:mod:`.ppo_checkpoint`).
``opendss``: every run's policy is also re-simulated with OpenDSS (:mod:`.resim`); ``ray``:
every (method, seed) runs as a task on a Ray cluster (:mod:`.compare_ray`).

Methods: ``gradmap`` and ``gradma`` train through the run API
(:func:`gradmap_agents.runs.train_run`: the same configuration, with ``algo.method`` and ``seed``
set, and the budget as its ``max_seconds``), MAPPO and IPPO through
:func:`.ppo.train_ppo`, both with callbacks; ``rule``,
``no-control`` and ``oracle`` are deterministic and run once. Time to target uses the target of
``docs/gradmap.md`` with the best feasible validation cost over every learning run of the
comparison.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from gradmap_agents import checkpoint
from gradmap_agents.checkpoint import atomic_write
from gradmap_agents.config import load_config, merge, parse_set
from gradmap_agents.evaluate import evaluate, time_to_target
from gradmap_agents.loggers import RunLogger
from gradmap_agents.runs import CHECKPOINT, build_env, evaluate_run, train_run
from gridedge_env.config import check_fields, from_dict
from gridedge_env.rollout import no_control

from .compare_plots import cost_vs_violation, learning_curves
from .compare_ray import run_on_ray
from .oracle import OracleConfig, oracle
from .ppo import PPOConfig, init_ppo, train_ppo
from .ppo_checkpoint import load_ppo, save_ppo
from .resim import RESIMULATED, MissingPolicy, resimulate, save_obs_norm
from .rule import rule_based
from .sb3_ippo import SB3Config, train_sb3

GRADIENT = ("gradmap", "gradma")
PPO = ("mappo", "ippo")
LEARNED = GRADIENT + PPO + ("sb3-ippo",)
FIXED = ("rule", "no-control", "oracle")
METHODS = LEARNED + FIXED
COLUMNS = ("cost", "violation_magnitude", "violation_frequency", "line_overload_frequency",
           "v_min_pu", "v_max_pu", "voltage_violation_magnitude", "line_violation_magnitude",
           "voltage_violation_days", "line_violation_days", "voltage_worst_pu",
           "line_worst_overload", "vuf_max")
"""Test metrics of every run in ``comparison.csv``; voltage and line parts in their own units
(:mod:`gradmap_agents.evaluate`). Runs finished before a column existed leave it empty."""
OPENDSS_COLUMNS = tuple(f"opendss_{c}" for c in (
    "cost", "violation_magnitude", "violation_frequency", "max_v_diff_pu"))
"""The same test metrics with OpenDSS solving every power flow, and the largest voltage
difference to our solver (``--opendss``)."""


@dataclass(frozen=True)
class Plan:
    """What to compare: the training config file (or ``None``), its ``--set`` overrides, the
    methods and seeds, the per-run training budget (minutes, ``None``: the config's
    iterations), the output directory, the logger and the oracle's settings."""
    config: str | None
    sets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int
    budget_minutes: float | None
    out: Path
    logger: str = "csv"
    oracle_iterations: int | None = None
    method_sets: tuple[str, ...] = ()
    """``METHOD:KEY=VALUE`` overrides of one method: a ``PPOConfig`` field for ``mappo`` and
    ``ippo`` (``ippo:iterations=300``), a training config key for ``gradmap``/``gradma``."""
    opendss: bool = False
    """Re-simulate every run's policy on the test days with OpenDSS (:mod:`.resim`)."""
    ray: str | None = None
    """Address of a Ray cluster to run every (method, seed) on as a task (:mod:`.compare_ray`);
    ``None``: one after another in this process."""
    ray_cpus: int = 1
    """CPUs (and torch threads) of each Ray task."""
    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; available: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {list(self.methods)}")
        check_fields(self, at_least_one=("seeds", "ray_cpus"))
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ValueError(f"budget_minutes must be > 0, got {self.budget_minutes}")
        for ms in self.method_sets:
            m = ms.split(":", 1)[0]
            if ":" not in ms or "=" not in ms or m not in LEARNED:
                raise ValueError(f"--set-method {ms!r}: expected METHOD:KEY=VALUE with METHOD one "
                                 f"of {', '.join(LEARNED)}")

    def sets_of(self, method: str) -> list[str]:
        return [ms.split(":", 1)[1] for ms in self.method_sets if ms.split(":", 1)[0] == method]

    def runs(self) -> list[tuple[str, int]]:
        return [(m, s) for m in self.methods for s in (range(self.seeds) if m in LEARNED else [0])]

    @property
    def budget_s(self) -> float | None:
        """Each learning run's training budget in seconds (``None``: its iterations)."""
        return None if self.budget_minutes is None else 60.0 * self.budget_minutes

    def env(self):
        """The comparison's environment, from the shared config and ``--set`` values."""
        return build_env(load_config(self.config, parse_set(list(self.sets))))

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / f"{method}-s{seed}"

    def result_path(self, method: str, seed: int) -> Path:
        """A run is done when this file exists."""
        return self.run_dir(method, seed) / "result.json"


def run_compare(plan: Plan, progress=print) -> dict:
    """Run (or finish) every (method, seed) of ``plan`` and write the comparison outputs."""
    env = plan.env()
    plan.out.mkdir(parents=True, exist_ok=True)
    nc_val, _ = evaluate(env, no_control(env), env.scenario.split.validation)
    todo = []
    for method, seed in plan.runs():
        if (done := plan.result_path(method, seed)).exists():
            progress(f"{method} seed {seed}: done before, kept ({done})")
        else:
            todo.append((method, seed))
    if plan.ray is not None and todo:
        for (method, seed), result in run_on_ray(plan, todo, run_one, progress):
            _write_json(plan.result_path(method, seed), result)
    else:
        for method, seed in todo:
            progress(f"{method} seed {seed}: running")
            _write_json(plan.result_path(method, seed), run_one(plan, method, seed, env, progress))
    results = [json.loads(plan.result_path(m, s).read_text()) for m, s in plan.runs()]
    if plan.opendss:  # runs finished before --opendss was asked for
        for r in results:
            if "opendss" not in r and _add_opendss(plan, r, env, progress):
                _write_json(plan.result_path(r["method"], r["seed"]), r)
    table = {"env": env.scenario.config.name, "n_agents": env.n_agents,
             "budget_minutes": plan.budget_minutes, **_table(results, nc_val)}
    _write_outputs(plan.out, table, results, nc_val)
    return table


def run_one(plan: Plan, method: str, seed: int, env, progress=print) -> dict:
    """Train (or resume) and evaluate one (method, seed) in its run directory on ``env``;
    with ``plan.opendss`` also its OpenDSS re-simulation. Returns its ``result.json``."""
    group = f"compare-{plan.out.resolve().name}"
    cfg = load_config(plan.config, merge(parse_set(list(plan.sets)), {
        "seed": seed, "logging": {"group": group},
        **({"algo": {"method": method}} if method in GRADIENT else {})}))
    runner = (_learned if method in GRADIENT else _ppo if method in PPO else
              _sb3 if method == "sb3-ippo" else _fixed)
    result = runner(plan, method, seed, cfg, env, plan.run_dir(method, seed))
    if plan.opendss:
        _add_opendss(plan, result, env, progress)
    return result


def _add_opendss(plan: Plan, result: dict, env, progress) -> bool:
    """Re-simulate a finished run's policy with OpenDSS into ``result["opendss"]``; ``False``
    (and a message) where there is nothing to re-simulate."""
    method, seed = result["method"], result["seed"]
    if "failed" in result or method not in RESIMULATED:
        return False
    try:
        result["opendss"] = resimulate(method, result, plan.run_dir(method, seed), env)
    except MissingPolicy as exc:
        progress(f"{method} seed {seed}: not re-simulated with OpenDSS: {exc}")
        return False
    o = result["opendss"]
    progress(f"{method} seed {seed}: OpenDSS re-simulation in {o['seconds']:.0f} s, test cost "
             f"{o['cost']:,.0f}, violation {o['violation_magnitude']:.4g}, largest voltage "
             f"difference {o['max_v_diff_pu']:.2g} p.u.")
    return True


def _learned(plan: Plan, method, seed, cfg, env, run_dir: Path) -> dict:
    """Train (or resume) through the run API within what is left of the budget, then evaluate
    the policies on the comparison's environment (a ``--set-method`` that changes the
    environment gets its own)."""
    run_cfg = load_config(None, merge(cfg.as_dict(), parse_set(plan.sets_of(method))))
    if any(getattr(run_cfg, k) != getattr(cfg, k) for k in ("env", "dtype", "device", "env_overrides")):
        env = build_env(run_cfg)
    ckpt = run_dir / CHECKPOINT
    budget = plan.budget_s
    if ckpt.exists() and budget is not None:  # a resumed run gets what is left of its budget
        budget -= checkpoint.read(ckpt)[1]["train_seconds"]
    try:
        if budget is not None and budget <= 0:  # spent before a kill: evaluate what is there
            s = checkpoint.load(ckpt, env, run_cfg)
        else:
            s = train_run(run_dir, run_cfg, env=env, resume=ckpt.exists(), logger=plan.logger,
                          max_seconds=budget, evaluate=False).state
        report = evaluate_run(run_dir, env, run_cfg, s)
    except (FloatingPointError, checkpoint.CheckpointError) as exc:
        return {"method": method, "seed": seed, "failed": f"{type(exc).__name__}: {exc}"}
    return {"method": method, "seed": seed, "test": _prefixed(report, "test/"),
            "train_seconds": s.train_seconds, "env_gradients": s.env_gradients,
            "iterations": s.iteration, "history": s.history}


def _config(plan: Plan, method: str, config_class, **fixed):
    """``config_class`` from ``method``'s ``--set-method`` values (parsed and checked like every
    config: :func:`gradmap_agents.config.parse_set`, :func:`gridedge_env.config.from_dict`)."""
    return from_dict(config_class, {**parse_set(plan.sets_of(method)), **fixed}, method)


def _sb3(plan: Plan, method, seed, cfg, env, run_dir: Path) -> dict:
    """Stable-Baselines3 PPO with parameter sharing (the PettingZoo route) within the budget;
    the policy network's weights in ``policy.safetensors`` and its architecture in
    ``sb3_policy.json`` (no pickled ``model.zip``), its observation statistics in
    ``vecnormalize.json``. A killed run restarts from scratch."""

    scfg = _config(plan, method, SB3Config, seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}")
    budget = plan.budget_s
    policy, history, seconds, steps = train_sb3(
        env, cfg.env, scfg, progress_fn=log.log,
        should_stop=lambda t: budget is not None and t > budget)
    policy.save(run_dir)
    save_obs_norm(policy.vecnorm, run_dir / "vecnormalize.json")
    m, _ = evaluate(env, policy, env.scenario.split.test)
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": seconds,
            "env_gradients": 0, "env_steps": steps,
            "iterations": steps // (env.n_steps * scfg.days_per_rollout), "history": history,
            "sb3_config": dataclasses.asdict(scfg)}


def _ppo(plan: Plan, method, seed, cfg, env, run_dir: Path) -> dict:
    """MAPPO or IPPO within the budget, checkpointed at every validation
    (``ppo_checkpoint.safetensors``) and resumed from it with what is left of the budget; the
    deterministic actors' weights in ``actor.safetensors`` and their test metrics."""



    pcfg = _config(plan, method, PPOConfig, variant=method, seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ppo_checkpoint.safetensors"
    s = load_ppo(ckpt, env, pcfg) if ckpt.exists() else init_ppo(env, pcfg)
    # CSV rows past the checkpoint (a killed run logged them) go; a fresh run starts clean
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}", resume_from=s.iteration)
    budget = plan.budget_s

    def progress(rec):
        log.log(rec)
        if "val/cost" in rec:
            save_ppo(ckpt, s, pcfg)

    train_ppo(env, pcfg, state=s, progress_fn=progress,
              should_stop=lambda: budget is not None and s.train_seconds > budget)
    save_ppo(ckpt, s, pcfg)
    weights = {k: v.detach().contiguous() for k, v in s.actor.state_dict().items()}
    atomic_write(run_dir / "actor.safetensors", lambda tmp: save_file(weights, tmp))
    m, _ = evaluate(env, s.actor, env.scenario.split.test)
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": s.train_seconds,
            "env_gradients": 0, "env_steps": s.env_steps, "iterations": s.iteration,
            "history": s.history, "ppo_config": dataclasses.asdict(pcfg)}


def _fixed(plan: Plan, method, seed, cfg, env, run_dir: Path) -> dict:
    """Rule, no control or the oracle on the test days, logged like a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    test = env.scenario.split.test
    t0 = time.perf_counter()
    if method == "oracle":
        ocfg = OracleConfig(**({"iterations": plan.oracle_iterations}
                               if plan.oracle_iterations else {}))
        m = oracle(env, test, ocfg)
    else:
        m, _ = evaluate(env, rule_based(env) if method == "rule" else no_control(env), test)
    seconds = time.perf_counter() - t0
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}")
    log.log({"iteration": 0, **{f"test/{k}": v for k, v in m.items()}})
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": seconds,
            "env_gradients": 0, "iterations": 0, "history": []}


def _prefixed(report: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in report.items() if k.startswith(prefix)}


def _table(results: list[dict], nc_val: dict) -> dict:
    """Per-run rows with time to target (against the comparison's best feasible validation
    cost) and per-method aggregates."""
    ok = [r for r in results if "failed" not in r]
    bound = 0.1 * nc_val["violation_magnitude"]
    feasible = [h["val/cost"] for r in ok for h in r["history"]
                if h["val/violation_magnitude"] <= bound]
    best = min(feasible) if feasible else None
    rows = []
    for r in results:
        row = {"method": r["method"], "seed": r["seed"], "failed": r.get("failed", "")}
        if "failed" not in r:
            t, g = (time_to_target(r["history"], nc_val, best) if best is not None and r["history"]
                    else (None, None))
            row.update({c: r["test"].get(c) for c in COLUMNS}, train_seconds=r["train_seconds"],
                       env_gradients=r["env_gradients"], time_to_target_s=t,
                       env_gradients_to_target=g,
                       optimality_gap=r["test"].get("optimality_gap"),
                       **{c: r.get("opendss", {}).get(c.removeprefix("opendss_"))
                          for c in OPENDSS_COLUMNS})
        rows.append(row)
    methods = {}
    for m in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == m and not r["failed"]]
        agg = {"runs": len(mine), "learned": m in LEARNED}
        for c in (*COLUMNS, "train_seconds", "time_to_target_s", *OPENDSS_COLUMNS):
            vals = [r[c] for r in mine if r.get(c) is not None]
            agg[c] = statistics.mean(vals) if vals and len(vals) == len(mine) else None
            agg[f"{c}_range"] = (min(vals), max(vals)) if vals else None
        methods[m] = agg
    return {"best_feasible_val_cost": best, "no_control_val": nc_val, "runs": rows,
            "methods": methods}


def _write_json(path: Path, obj) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


def _write_outputs(out: Path, table: dict, results: list[dict], nc_val: dict) -> None:


    fields = ["method", "seed", "failed", *COLUMNS, "train_seconds", "env_gradients",
              "time_to_target_s", "env_gradients_to_target", "optimality_gap", *OPENDSS_COLUMNS]

    def write_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(table["runs"])

    atomic_write(out / "comparison.csv", write_csv)
    atomic_write(out / "comparison.md", lambda tmp: Path(tmp).write_text(markdown(table)))
    _write_json(out / "comparison.json", table)
    cost_vs_violation(table["runs"], out / "cost_vs_violation.png")
    learning_curves(results, nc_val, out)


def markdown(table: dict) -> str:
    """The per-method table: mean over seeds, with the range where there are several."""
    def cell(agg, c, fmt):
        v, rng = agg[c], agg[f"{c}_range"]
        if v is None:
            return "not reached" if c == "time_to_target_s" and agg["learned"] else "–"
        text = format(v, fmt)
        if agg["runs"] > 1 and rng and rng[0] != rng[1]:
            text += f" ({format(rng[0], fmt)}–{format(rng[1], fmt)})"
        return text

    head = ("| method | runs | test cost GBP/day | violation magnitude | violation frequency | "
            "line overload frequency | seconds | time to target s |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = [f"| {m} | {a['runs']} | {cell(a, 'cost', ',.0f')} | "
             f"{cell(a, 'violation_magnitude', '.4g')} | {cell(a, 'violation_frequency', '.3g')} | "
             f"{cell(a, 'line_overload_frequency', '.3g')} | {cell(a, 'train_seconds', '.0f')} | "
             f"{cell(a, 'time_to_target_s', '.0f')} |" for m, a in table["methods"].items()]
    best = table["best_feasible_val_cost"]
    foot = (f"\nTarget: validation violation magnitude <= 10 % of no control's "
            f"({0.1 * table['no_control_val']['violation_magnitude']:.4g}) and validation cost "
            f"<= 1.02 x the best feasible validation cost of the comparison "
            f"({'none' if best is None else format(best, ',.0f')}). Seconds: training wall time "
            "of a learning method (validation excluded), optimisation time of the oracle, "
            "evaluation time of rule and no control.\n")
    return head + "\n".join(lines) + "\n" + foot + _opendss_markdown(table, cell)


def _opendss_markdown(table: dict, cell) -> str:
    """The re-simulation table, for the methods that have one."""
    rows = [(m, a) for m, a in table["methods"].items() if a["opendss_cost"] is not None]
    if not rows:
        return ""
    head = ("\nRe-simulated with OpenDSS solving every power flow (test days):\n\n"
            "| method | test cost GBP/day | violation magnitude | violation frequency | "
            "largest voltage difference to ours, p.u. |\n| --- | --- | --- | --- | --- |\n")
    return head + "\n".join(
        f"| {m} | {cell(a, 'opendss_cost', ',.0f')} | {cell(a, 'opendss_violation_magnitude', '.4g')} "
        f"| {cell(a, 'opendss_violation_frequency', '.3g')} | "
        f"{cell(a, 'opendss_max_v_diff_pu', '.2g')} |" for m, a in rows) + "\n"
