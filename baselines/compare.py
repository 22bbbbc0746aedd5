"""``gradmap-compare``: every method on the same data, seeds, machine and budget, one table.

A comparison directory holds one run directory per (method, seed) under ``runs/``, each done
when its ``result.json`` exists, and the comparison's outputs: ``comparison.csv`` (a row per
run), ``comparison.md`` (a row per method, mean ± 95 % Student-t half-width over seeds),
``comparison.json`` and the plots ``cost_vs_violation.png``, ``captured_curves.png``,
``learning_curves_*.png`` and ``test_days_box.png``. Killed and restarted with the same
arguments, it skips the finished runs and resumes a GradMAP/GradMA run from its last checkpoint
and a MAPPO/IPPO run from its last validation (:mod:`.ppo_checkpoint`).
``opendss``: every run's policy is also re-simulated with OpenDSS (:mod:`.resim`); ``ray``:
every (method, seed) runs as a task on a Ray cluster (:mod:`.compare_ray`).

**Protocol** (:mod:`gradmap_agents.protocol`, ``docs/results.md``). The quality levels come
from the scenario before any run (no control and the certified copper-plate bound on the
validation days), so a comparison with another set of methods has the same levels. One
wall-time budget binds every learning method: with ``budget_minutes`` no iteration cap applies
(an ``iterations`` value is refused), and every run reports wall and process CPU seconds,
environment gradients and simulated day-steps. Each run is scored on its validation history
(final captured share, area under the captured-share curve over the budget, time, gradients
and day-steps to each level), and the table gives the wall time each method needs to reach
every other method's final level. ``fixed_penalty``: every method minimises the same
objective, cost + the scenario's fixed multipliers x violation.

Methods: ``gradmap`` and ``gradma`` train through the run API
(:func:`gradmap_agents.runs.train_run`: the same configuration, with ``algo.method`` and ``seed``
set, and the budget as its ``max_train_seconds``), MAPPO and IPPO through :func:`.ppo.train_ppo`,
both with callbacks and the same dual settings (the config's ``dual``); ``rule``,
``no-control`` and ``oracle`` are deterministic and run once.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from gradmap_agents import checkpoint, protocol
from gradmap_agents.checkpoint import atomic_write
from gradmap_agents.config import load_config, merge, parse_set
from gradmap_agents.evaluate import evaluate, per_day
from gradmap_agents.loggers import RunLogger
from gradmap_agents.protocol import Levels, levels
from gradmap_agents.runs import CHECKPOINT, build_env, evaluate_run, train_run
from gridedge_env.config import check_fields, from_dict
from gridedge_env.rollout import no_control

from .compare_levels import cross_levels, matrix_markdown, shares_markdown, t_halfwidth, time_to_shares
from .compare_plots import box_plots, captured_curves, cost_vs_violation, learning_curves
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
UNCAPPED = 10**9
"""Iteration cap of every learning run of a budgeted comparison: the budget ends them all."""
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
    group: str | None = None
    """The W&B group of every run (default ``compare-<out folder name>``)."""
    fixed_penalty: bool = False
    """The fixed-penalty variant: every method minimises cost + the scenario's fixed
    multipliers x violation (:mod:`gradmap_agents.protocol`), no dual ascent, no margins."""
    threads: int | None = None
    """Torch threads of every run (``None``: torch's default); recorded in the table."""
    shares: tuple[float, ...] = ()
    """Shares the reader names (``--shares``): the table gives each learning method's time to
    each (:func:`.compare_levels.time_to_shares`), beside the protocol's own levels. Only
    outputs depend on them: rerun a finished comparison with other shares to rebuild its table."""
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
        capped = [x for x in (*self.sets, *self.method_sets)
                  if x.split(":", 1)[-1].split("=", 1)[0].strip() == "iterations"]
        if self.budget_minutes is not None and capped:
            raise ValueError(f"{capped[0]!r}: a budgeted comparison ends every run by its wall-time "
                             "budget alone, never by an iteration cap; drop the iterations value")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        bad = [x for x in self.shares if not (math.isfinite(x) and x <= 1)]
        if bad:
            raise ValueError(f"shares {bad}: a captured share is a finite number <= 1 (1: the "
                             "certified bound)")

    def sets_of(self, method: str) -> list[str]:
        """``method``'s ``--set-method`` values, after the budget's iteration cap (none binds
        before the wall-time budget)."""
        own = [ms.split(":", 1)[1] for ms in self.method_sets if ms.split(":", 1)[0] == method]
        return ([f"iterations={UNCAPPED}"] if self.budget_minutes is not None else []) + own

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
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    env = plan.env()
    plan.out.mkdir(parents=True, exist_ok=True)
    lv = levels(env)  # from the scenario alone, before any run
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
             "budget_minutes": plan.budget_minutes, "threads": torch.get_num_threads(),
             "no_control_val": nc_val, **_table(results, lv, plan)}
    _write_outputs(plan.out, table, results, lv)
    return table


def run_one(plan: Plan, method: str, seed: int, env, progress=print) -> dict:
    """Train (or resume) and evaluate one (method, seed) in its run directory on ``env``;
    with ``plan.opendss`` also its OpenDSS re-simulation. Returns its ``result.json``."""
    group = plan.group or f"compare-{plan.out.resolve().name}"
    cfg = load_config(plan.config, merge(merge(parse_set(list(plan.sets)), _penalty_sets(plan, env)), {
        "seed": seed, "logging": {"group": group},
        **({"algo": {"method": method}} if method in GRADIENT else {})}))
    runner = (_learned if method in GRADIENT else _ppo if method in PPO else
              _sb3 if method == "sb3-ippo" else _fixed)
    result = runner(plan, method, seed, cfg, env, plan.run_dir(method, seed))
    if plan.opendss:
        _add_opendss(plan, result, env, progress)
    return result


def _penalty_sets(plan: Plan, env) -> dict:
    """The fixed-penalty variant's dual settings for every method (none otherwise): the
    scenario's multipliers (:meth:`gradmap_agents.protocol.Levels.penalty_multipliers`), fixed,
    on the exceedances at the limits themselves."""
    if not plan.fixed_penalty:
        return {}
    mu_v, mu_l = levels(env).penalty_multipliers()
    return {"dual": {"fixed": True, "scheme": "rising", "init_voltage_gbp_per_pu": mu_v,
                     "init_line_gbp": mu_l, "margin_pu": 0.0, "line_margin": 0.0}}


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
                          max_train_seconds=plan.budget_s, evaluate=False).state
        report = evaluate_run(run_dir, env, run_cfg, s)
    except (FloatingPointError, checkpoint.CheckpointError) as exc:
        return {"method": method, "seed": seed, "failed": f"{type(exc).__name__}: {exc}"}
    return {"method": method, "seed": seed, "test": _prefixed(report, "test/"),
            "test_per_day": report["test_per_day"],
            "train_seconds": s.train_seconds, "cpu_seconds": s.cpu_seconds,
            "day_steps": s.day_steps, "env_gradients": s.env_gradients,
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

    # SB3's reward has fixed weights (no dual ascent through its wrapper); in the fixed-penalty
    # variant they are the scenario's multipliers, as every other method's
    weights = ({"voltage_weight_gbp_per_pu": cfg.dual.init_voltage_gbp_per_pu,
                "line_weight_gbp": cfg.dual.init_line_gbp} if plan.fixed_penalty else {})
    scfg = _config(plan, method, SB3Config, seed=seed, **weights)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}")
    budget = plan.budget_s
    run = train_sb3(env, cfg.env, scfg, progress_fn=log.log,
                    should_stop=lambda t: budget is not None and t > budget)
    policy = run.policy
    policy.save(run_dir)
    save_obs_norm(policy.vecnorm, run_dir / "vecnormalize.json")
    m, _ = evaluate(env, policy, env.scenario.split.test)
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": run.train_seconds,
            "cpu_seconds": run.cpu_seconds, "day_steps": run.day_steps, "env_gradients": 0,
            "iterations": run.iterations, "history": run.history,
            "sb3_config": dataclasses.asdict(scfg)}


def _ppo(plan: Plan, method, seed, cfg, env, run_dir: Path) -> dict:
    """MAPPO or IPPO within the budget, checkpointed at every validation
    (``ppo_checkpoint.safetensors``) and resumed from it with what is left of the budget; the
    deterministic actors' weights in ``actor.safetensors`` and their test metrics."""



    pcfg = _config(plan, method, PPOConfig, variant=method, seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ppo_checkpoint.safetensors"
    s = load_ppo(ckpt, env, pcfg, cfg.dual) if ckpt.exists() else init_ppo(env, pcfg, cfg.dual)
    # CSV rows past the checkpoint (a killed run logged them) go; a fresh run starts clean
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}", resume_from=s.iteration)
    budget = plan.budget_s

    def progress(rec):
        log.log(rec)
        if "val/cost" in rec:
            save_ppo(ckpt, s, pcfg, cfg.dual)

    train_ppo(env, pcfg, cfg.dual, state=s, progress_fn=progress,
              should_stop=lambda: budget is not None and s.train_seconds > budget)
    save_ppo(ckpt, s, pcfg, cfg.dual)
    weights = {k: v.detach().contiguous() for k, v in s.actor.state_dict().items()}
    atomic_write(run_dir / "actor.safetensors", lambda tmp: save_file(weights, tmp))
    m, _ = evaluate(env, s.actor, env.scenario.split.test)
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": s.train_seconds,
            "cpu_seconds": s.cpu_seconds, "day_steps": s.day_steps,
            "env_gradients": 0, "iterations": s.iteration,
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
        m, roll = evaluate(env, rule_based(env) if method == "rule" else no_control(env), test)
    seconds = time.perf_counter() - t0
    days = {} if method == "oracle" else {"test_per_day": test_per_day(env, roll)}
    log = RunLogger(run_dir, plan.logger, cfg, name=f"{method}-s{seed}")
    log.log({"iteration": 0, **{f"test/{k}": v for k, v in m.items()}})
    log.summary({f"test/{k}": v for k, v in m.items()})
    log.close()
    return {"method": method, "seed": seed, "test": m, "train_seconds": seconds,
            "env_gradients": 0, "iterations": 0, "history": [], **days}


def test_per_day(env, roll) -> dict[str, list]:
    """The per-test-day metrics of a rollout (:func:`gradmap_agents.evaluate.per_day`) as JSON
    lists, ``None`` for a day with a non-converged power flow."""
    return {k: [None if math.isnan(x) else x for x in v.tolist()]
            for k, v in per_day(env, roll).items()}


def _prefixed(report: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in report.items() if k.startswith(prefix)}


def _table(results: list[dict], lv: Levels, plan: Plan) -> dict:
    """Per-run rows scored by the protocol (:func:`gradmap_agents.protocol.score` against the
    scenario's levels ``lv``), per-method aggregates (mean and 95 % Student-t interval over
    seeds) and the cross-level matrix: the time each method needs to reach every other
    method's final level."""
    rows = [_row(r, lv, plan) for r in results]
    methods = {m: _aggregate([r for r in rows if r["method"] == m and not r["failed"]], m)
               for m in dict.fromkeys(r["method"] for r in rows)}
    table = {"levels": lv.as_dict(), "fixed_penalty": plan.fixed_penalty, "runs": rows,
             "methods": methods,
             "cross_levels": cross_levels(results, rows, LEARNED, lv, plan.fixed_penalty)}
    if not plan.fixed_penalty:  # the penalised share ranks runs where no level is attainable
        table["cross_levels_penalised"] = cross_levels(results, rows, LEARNED, lv, True)
    if plan.shares:  # levels the reader names: the penalised share, and under dual ascent also
        # the feasible captured share
        table["time_to_shares"] = time_to_shares(results, LEARNED, GRADIENT, lv, plan.shares, True)
        if not plan.fixed_penalty:
            table["time_to_shares_feasible"] = time_to_shares(results, LEARNED, GRADIENT, lv,
                                                              plan.shares, False)
    return table


def _row(r: dict, lv: Levels, plan: Plan) -> dict:
    row = {"method": r["method"], "seed": r["seed"], "failed": r.get("failed", "")}
    if "failed" in r:
        return row
    row.update({c: r["test"].get(c) for c in COLUMNS}, train_seconds=r["train_seconds"],
               cpu_seconds=r.get("cpu_seconds"), env_gradients=r["env_gradients"],
               day_steps=r.get("day_steps"), optimality_gap=r["test"].get("optimality_gap"),
               **{c: r.get("opendss", {}).get(c.removeprefix("opendss_")) for c in OPENDSS_COLUMNS})
    if r["method"] in LEARNED and r["history"]:
        row.update(protocol.score(r["history"], lv, plan.budget_s, plan.fixed_penalty))
    if plan.fixed_penalty:
        row["test_objective"] = lv.objective(r["test"])
    return row


def _aggregate(mine: list[dict], method: str) -> dict:
    """Mean, 95 % Student-t half-width and range over the seeds of every numeric column; a
    column is aggregated only where every seed has it (a level not reached by one seed has no
    mean time)."""
    agg = {"runs": len(mine), "learned": method in LEARNED}
    keys = dict.fromkeys(k for r in mine for k, v in r.items()
                         if isinstance(v, int | float) and not isinstance(v, bool) and k != "seed")
    for c in (*keys, *(k for r in mine for k, v in r.items() if v is None)):
        vals = [r[c] for r in mine if r.get(c) is not None]
        whole = bool(vals) and len(vals) == len(mine)
        agg[c] = statistics.mean(vals) if whole else None
        agg[f"{c}_ci95"] = t_halfwidth(vals) if whole else None
        agg[f"{c}_range"] = (min(vals), max(vals)) if vals else None
    return agg


def _write_json(path: Path, obj) -> None:

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=1)))


LEVEL_COLUMNS = tuple(f"{k}_to_{round(100 * x)}" for x in protocol.SHARES
                      for k in ("time", "gradients", "day_steps"))
SCORE_COLUMNS = ("final_captured", "auc_wall", "final_penalised", "auc_wall_penalised",
                 *LEVEL_COLUMNS)
"""Protocol columns of ``comparison.csv`` (:func:`gradmap_agents.protocol.score`)."""


def _write_outputs(out: Path, table: dict, results: list[dict], lv: Levels) -> None:
    fields = ["method", "seed", "failed", *COLUMNS, "train_seconds", "cpu_seconds",
              "env_gradients", "day_steps", *SCORE_COLUMNS, "test_objective", "optimality_gap",
              *OPENDSS_COLUMNS]

    def write_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(table["runs"])

    atomic_write(out / "comparison.csv", write_csv)
    atomic_write(out / "comparison.md", lambda tmp: Path(tmp).write_text(markdown(table)))
    _write_json(out / "comparison.json", table)
    cost_vs_violation(table["runs"], out / "cost_vs_violation.png")
    learning_curves(results, table["no_control_val"], out)
    captured_curves(results, lv, out, table.get("fixed_penalty", False))
    pooled = {}
    for r in results:
        for k, v in r.get("test_per_day", {}).items():
            pooled.setdefault(r["method"], {}).setdefault(k, []).extend(
                math.nan if x is None else x for x in v)
    if pooled:
        box_plots({m: {k: np.asarray(v) for k, v in d.items()} for m, d in pooled.items()},
                  out / "test_days_box.png")


def _cell(agg: dict, c: str, fmt: str) -> str:
    """Mean ± 95 % half-width over seeds (the range where the interval is undefined)."""
    v, ci, rng = agg.get(c), agg.get(f"{c}_ci95"), agg.get(f"{c}_range")
    if v is None:
        if not (agg["learned"] and "_to_" in c):
            return "–"
        return "not reached" if rng is None else "not every seed"
    text = format(v, fmt)
    if ci is not None:
        text += f" ± {format(ci, fmt)}"
    elif agg["runs"] > 1 and rng and rng[0] != rng[1]:
        text += f" ({format(rng[0], fmt)}–{format(rng[1], fmt)})"
    return text


def markdown(table: dict) -> str:
    """The comparison as Markdown: the levels, the per-method test metrics and protocol scores
    (mean ± 95 % Student-t half-width over seeds) and the cross-level matrix."""
    lv = table["levels"]
    cl = lv["cost_levels"]
    head = (f"Levels (scenario only, validation days): no control {lv['no_control_cost']:,.0f} "
            f"GBP/day, certified copper-plate bound {lv['bound_cost']:,.0f} GBP/day; 25/50/75 % "
            f"of the gap = {cl['0.25']:,.0f} / {cl['0.5']:,.0f} / {cl['0.75']:,.0f} GBP/day, "
            f"feasible when the voltage violation <= {lv['voltage_max']:.4g} p.u. x node-steps "
            f"and the line violation <= {lv['line_max']:.4g} per day"
            + (" (fixed-penalty variant: captured share of cost + fixed multipliers x violation)"
               if table.get("fixed_penalty") else "") + ". Budget "
            + (f"{table['budget_minutes']:g} min" if table.get("budget_minutes") else "none")
            + f", {table.get('threads')} torch threads. Mean ± 95 % Student-t half-width over "
            "seeds.\n\n")
    test = ("| method | runs | test cost GBP/day | voltage violation p.u. x node-steps/day | "
            "line violation /day | voltage violation days | worst voltage p.u. | VUF max | "
            "wall s | CPU s | day-steps |\n" + "| --- " * 11 + "|\n")
    test += "\n".join(
        f"| {m} | {a['runs']} | {_cell(a, 'cost', ',.0f')} | "
        f"{_cell(a, 'voltage_violation_magnitude', '.4g')} | "
        f"{_cell(a, 'line_violation_magnitude', '.4g')} | "
        f"{_cell(a, 'voltage_violation_days', '.2f')} | {_cell(a, 'voltage_worst_pu', '.4f')} | "
        f"{_cell(a, 'vuf_max', '.4f')} | {_cell(a, 'train_seconds', '.0f')} | "
        f"{_cell(a, 'cpu_seconds', '.0f')} | {_cell(a, 'day_steps', ',.0f')} |"
        for m, a in table["methods"].items())
    learned = [(m, a) for m, a in table["methods"].items() if a["learned"]]
    score = ("\n\nValidation scores of the learning methods (captured share of the gap, its "
             "area over the budget, the same two on the penalised objective's share, which is "
             "defined feasible or not, wall seconds to each level):\n\n| method | final captured "
             "| AUC | final penalised | AUC penalised | s to 25 % | s to 50 % | s to 75 % | "
             "day-steps to 50 % |\n" + "| --- " * 9 + "|\n" + "\n".join(
                 f"| {m} | {_cell(a, 'final_captured', '.3f')} | {_cell(a, 'auc_wall', '.3f')} | "
                 f"{_cell(a, 'final_penalised', '.3f')} | {_cell(a, 'auc_wall_penalised', '.3f')} | "
                 f"{_cell(a, 'time_to_25', '.0f')} | {_cell(a, 'time_to_50', '.0f')} | "
                 f"{_cell(a, 'time_to_75', '.0f')} | {_cell(a, 'day_steps_to_50', ',.0f')} |"
                 for m, a in learned)) if learned else ""
    matrix = matrix_markdown(table.get("cross_levels"), "mean final captured share")
    matrix += matrix_markdown(table.get("cross_levels_penalised"),
                              "mean final share of the penalised objective")
    matrix += shares_markdown(table.get("time_to_shares"))
    matrix += shares_markdown(table.get("time_to_shares_feasible"))
    return head + test + score + matrix + "\n" + _opendss_markdown(table, _cell)


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
