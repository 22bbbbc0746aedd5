"""``gradmap-sweep``: every learning method tuned the same way, selected on validation only.

A **trial** is one method at one sampled configuration, trained with every seed at the
comparison's budget through :func:`.compare.run_compare` (a :class:`.compare.Plan` with
``methods=(method,)`` and the sampled values as ``method_sets``) into
``<sweep folder>/<method>/<trial key>``, the key a short hash of the sampled values. Its
**objective** is the mean over seeds of each run's validation score ``auc_wall_penalised``
(:func:`gradmap_agents.protocol.auc` with ``penalised=True``: the normalised area under the best
captured share of the penalised objective ``J = cost + mu_V V + mu_L L``, the scenario's fixed
multipliers, over the wall-time budget, in [0, 1], higher is better); a run that failed
(diverged) scores 0. Test metrics are never read. **Decision:** not the cost-gap ``auc_wall``:
on ieee13-50-v1 no feasible point of GradMAP beat no control's cost within the budget, so that
area was 0 for every run and could not rank configurations (``docs/sweeps.md``).

Configurations are drawn by Optuna's random search (``RandomSampler``, reseeded per trial from
the sweep's seed and the trial number, so the draws do not depend on where a sweep was
interrupted, and methods with the same search space (MAPPO, IPPO) are tried at the same
configurations). A finite, all-categorical space (GradMA's grid) is visited point by point
instead, in a seeded random order without repeats: the whole grid when ``n_trials`` is at least
its size, its first ``n_trials`` points otherwise (:func:`grid_order`).

**Resuming.** Every method's study lives in ``<sweep folder>/optuna.db`` (SQLite), named after
the method, with the sweep's settings as an attribute that a rerun must match. On start, a
trial left ``RUNNING`` by a killed session is marked failed and its values enqueued again, so
it reruns into the same folder, where ``run_compare`` keeps the finished runs and resumes the
unfinished ones from their checkpoints; ``COMPLETE`` trials are never rerun; ``n_trials`` is
the total per method. One process per sweep folder (a lock file says so).

**Outputs** in the sweep folder: ``sweep.json`` and ``sweep.md`` (every trial: values,
per-seed objective, mean and 95 % Student-t interval, state; the chosen configuration of each
method = its trial with the best mean objective) and ``chosen.txt``, the
``--set-method METHOD:KEY=VALUE`` lines that carry the choice to another scenario. With
``ablations``, GradMAP's variants (:data:`ABLATIONS`) run at its chosen values (its defaults
when GradMAP is not swept) into ``<sweep folder>/ablations/``.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    distribution_to_json,
)
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from gradmap_agents.checkpoint import atomic_write
from gradmap_agents.config import load_config, merge, parse_set
from gridedge_env.config import from_dict

from .compare import GRADIENT, Plan, run_compare
from .compare_levels import t_halfwidth
from .ppo import PPOConfig

# ---------------------------------------------------------------------------------------------
# Search spaces (docs/sweeps.md says why each range)

PPO_SPACE: dict[str, BaseDistribution] = {
    "actor_lr": FloatDistribution(1e-4, 3e-3, log=True),
    "gamma": CategoricalDistribution((0.99, 1.0)),
    "entropy_coef": CategoricalDistribution((0.0, 1e-3, 1e-2)),
    "gae_lambda": CategoricalDistribution((0.9, 0.95, 1.0)),
}
SEARCH_SPACES: dict[str, dict[str, BaseDistribution]] = {
    "gradmap": {
        "algo.lr": FloatDistribution(3e-4, 3e-2, log=True),
        "algo.eta": FloatDistribution(0.02, 0.5, log=True),
        "algo.eps": FloatDistribution(0.05, 0.5),
        "algo.epochs": CategoricalDistribution((1, 2, 4, 8)),
    },
    "gradma": {
        "algo.lr": CategoricalDistribution((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
        "algo.grad_scale": CategoricalDistribution(("rms", "none")),
    },
    "mappo": PPO_SPACE,
    "ippo": PPO_SPACE,
}
"""The searched keys of every method: training config keys (``gradmap_agents.config``) for
GradMAP and GradMA, :class:`.ppo.PPOConfig` fields for MAPPO and IPPO."""
TIED: dict[str, dict[str, str]] = {"mappo": {"critic_lr": "actor_lr"},
                                   "ippo": {"critic_lr": "actor_lr"}}
"""Keys set to a searched key's value: the critic learns at the actor's rate (as
``PPOConfig``'s defaults and Yu et al.'s MAPPO defaults have it), which keeps the PPO space at
four dimensions like GradMAP's."""
ABLATIONS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no-reuse": ("algo.epochs=1", "algo.minibatches=1"),
    "clip-only": ("algo.eta=1e9",),
    "proximal-only": ("algo.surrogate=proximal",),
}
"""GradMAP's variants, each on top of the chosen values: ``no-reuse``: one step per
environment gradient (no sample reuse); ``clip-only``: the clipped surrogate without its
proximal term (``eta = 1e9``: the term ``d^2 / (2 eta)`` is below 1e-9 per unit action
change); ``proximal-only``: the plain proximal surrogate, no clipping."""
OBJECTIVE = "auc_wall_penalised"
"""The validation score of a run row (``table["runs"]`` of :func:`.compare.run_compare`)."""


@dataclass(frozen=True)
class Sweep:
    """What to sweep: the comparison's config file or name, its ``--set`` values, the methods,
    trials per method (a total, not additional), seeds per trial, the per-run budget (minutes;
    ``None``: the config's iterations), the sweep folder, the logger, fixed (not searched)
    ``METHOD:KEY=VALUE`` values, whether to run the ablations, and the sampler's seed."""

    config: str | None
    sets: tuple[str, ...]
    methods: tuple[str, ...]
    n_trials: int
    seeds: int
    budget_minutes: float | None
    out: Path
    logger: str = "csv"
    method_sets: tuple[str, ...] = ()
    ablations: bool = False
    sampler_seed: int = 0

    def __post_init__(self):
        bad = [m for m in self.methods if m not in SEARCH_SPACES]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; a sweep tunes {', '.join(SEARCH_SPACES)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {list(self.methods)}")
        if not self.methods:
            raise ValueError("no methods to sweep")
        for name in ("n_trials", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for ms in self.method_sets:
            method, _, kv = ms.partition(":")
            key = kv.split("=", 1)[0]
            if "=" not in kv:
                raise ValueError(f"--set-method {ms!r}: expected METHOD:KEY=VALUE")
            if method not in self.methods and not (self.ablations and method == "gradmap"):
                raise ValueError(f"--set-method {ms!r}: {method!r} is not swept here")
            if method in self.methods and (key in SEARCH_SPACES[method] or key in TIED.get(method, {})):
                raise ValueError(f"--set-method {ms!r}: {key} is searched by the sweep")

    @property
    def group(self) -> str:
        """The W&B group of every run of the sweep."""
        return f"sweep-{self.out.resolve().name}"

    def fixed(self, method: str) -> tuple[str, ...]:
        """``method``'s fixed ``METHOD:KEY=VALUE`` values."""
        return tuple(ms for ms in self.method_sets if ms.split(":", 1)[0] == method)

    def settings(self, method: str) -> dict:
        """What a resumed study of ``method`` must have been started with."""
        return {"config": self.config, "sets": list(self.sets), "method_sets": list(self.fixed(method)),
                "seeds": self.seeds, "budget_minutes": self.budget_minutes,
                "sampler_seed": self.sampler_seed}

    def trial_dir(self, method: str, params: dict) -> Path:
        return self.out / method / trial_key(params)


def trial_key(params: dict) -> str:
    """Short hash of a configuration's values (its folder name)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def value_sets(method: str, params: dict) -> tuple[str, ...]:
    """``METHOD:KEY=VALUE`` of the values ``params`` and of the keys :data:`TIED` to them."""
    tied = {k: params[src] for k, src in TIED.get(method, {}).items() if src in params}
    return tuple(f"{method}:{k}={v}" for k, v in {**params, **tied}.items())


def trial_sampler(sampler_seed: int, trial_number: int) -> RandomSampler:
    """The sampler that draws trial ``trial_number`` of a study: reseeded per trial, so a draw
    depends on the sweep's seed and the trial's number only, not on where an earlier session
    stopped (and a lost sweep's chosen values can be drawn again)."""
    return RandomSampler(seed=sampler_seed * 100_003 + trial_number)


def grid_order(space: dict[str, BaseDistribution], seed: int) -> list[dict] | None:
    """Every point of an all-categorical ``space`` in a seeded random order (``None`` for a
    space with a continuous key)."""
    if not all(isinstance(d, CategoricalDistribution) for d in space.values()):
        return None
    points = [dict(zip(space, p, strict=True))
              for p in itertools.product(*(d.choices for d in space.values()))]
    random.Random(seed).shuffle(points)
    return points


def spread(values: list[float]) -> dict:
    """Mean over seeds and its 95 % Student-t interval (``None`` with one seed)."""
    mean = statistics.mean(values)
    hw = t_halfwidth(values)
    return {"mean": mean, "ci95": None if hw is None else [mean - hw, mean + hw]}


def seed_scores(table: dict, method: str) -> dict:
    """Per-seed validation objective (:data:`OBJECTIVE`, 0 for a failed run or one without a
    score), best final captured share and failures of ``method``'s rows of a comparison table.
    Test metrics are not read."""
    rows = sorted((r for r in table["runs"] if r["method"] == method), key=lambda r: r["seed"])
    return {"seed_objectives": [0.0 if r["failed"] or r.get(OBJECTIVE) is None else float(r[OBJECTIVE])
                                for r in rows],
            "final_captured": [None if r["failed"] else r.get("final_captured") for r in rows],
            "failed_seeds": {str(r["seed"]): r["failed"] for r in rows if r["failed"]}}


# ---------------------------------------------------------------------------------------------
# Running


def run_config(sweep: Sweep, method: str, extra: tuple[str, ...], out: Path,
               progress: Callable[[str], None]) -> dict:
    """Train ``method`` with every seed and the ``METHOD:KEY=VALUE`` values ``extra`` (after
    the fixed ones) into ``out``; its :func:`seed_scores`."""
    plan = Plan(sweep.config, sweep.sets, (method,), sweep.seeds, sweep.budget_minutes, out,
                sweep.logger, method_sets=sweep.fixed(method) + extra, group=sweep.group)
    return seed_scores(run_compare(plan, progress), method)


def check(sweep: Sweep) -> None:
    """Raise ``ValueError``/``ConfigError`` on a bad config, ``--set`` or fixed ``--set-method``
    value (:class:`.compare.Plan`'s checks, then each method's config) before anything is
    written."""
    base = parse_set(list(sweep.sets))
    for m in (*sweep.methods, *(("gradmap",) if sweep.ablations and "gradmap" not in sweep.methods
                               else ())):
        plan = Plan(sweep.config, sweep.sets, (m,), sweep.seeds, sweep.budget_minutes, sweep.out,
                    sweep.logger, method_sets=sweep.fixed(m))
        own = parse_set(plan.sets_of(m))
        load_config(sweep.config, merge(base, own) if m in GRADIENT else base)
        if m not in GRADIENT:
            from_dict(PPOConfig, own, m)


def open_study(sweep: Sweep, method: str) -> optuna.Study:
    """``method``'s study in the sweep's SQLite file, created or loaded; a loaded one must have
    the sweep's settings."""
    storage = f"sqlite:///{(sweep.out / 'optuna.db').resolve()}"
    study = optuna.create_study(storage=storage, study_name=method, direction="maximize",
                                sampler=RandomSampler(seed=sweep.sampler_seed), load_if_exists=True)
    saved, now = study.user_attrs.get("settings"), sweep.settings(method)
    if saved is None:
        study.set_user_attr("settings", now)
    elif saved != now:
        diff = ", ".join(f"{k} (saved {saved.get(k)!r}, now {now[k]!r})" for k in now
                         if saved.get(k) != now[k])
        raise ValueError(f"{sweep.out}: the {method} study was started with other settings: {diff}; "
                         "rerun with the same arguments or use another --out")
    return study


def recover(study: optuna.Study, progress: Callable[[str], None]) -> None:
    """Mark the trials a killed session left ``RUNNING`` failed and enqueue their values again."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
        progress(f"{study.study_name} trial {t.number}: interrupted before; rerun with the same values")


def enqueue_grid(study: optuna.Study, points: list[dict], n_trials: int) -> None:
    """Enqueue the first ``n_trials`` points of a grid that no trial holds or waits for."""
    for p in points[:n_trials]:
        study.enqueue_trial(p, skip_if_exists=True)


def sweep_method(sweep: Sweep, study: optuna.Study, progress: Callable[[str], None]) -> None:
    """Run the trials of ``study``'s method until it has ``n_trials`` complete ones (fewer for
    a smaller grid). A trial that raises is marked failed (its error kept) and the error
    raised; an interrupted one (Ctrl-C, a kill) stays ``RUNNING`` and reruns on the next start."""
    method = study.study_name
    space = SEARCH_SPACES[method]
    recover(study, progress)
    grid = grid_order(space, sweep.sampler_seed)
    n = sweep.n_trials if grid is None else min(sweep.n_trials, len(grid))
    if grid is not None:
        if n < sweep.n_trials:
            progress(f"{method}: its grid has {len(grid)} points; {n} trials, not {sweep.n_trials}")
        enqueue_grid(study, grid, n)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    progress(f"{method}: {done} of {n} trials complete before")
    while (done := len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))) < n:
        study.sampler = trial_sampler(sweep.sampler_seed, len(study.trials))
        trial = study.ask(space)
        out = sweep.trial_dir(method, trial.params)
        tag = f"{method} trial {done + 1}/{n} [{out.name}]"
        progress(f"{tag}: {_fmt_params(trial.params)}: running into {out}")
        try:
            scores = run_config(sweep, method, value_sets(method, trial.params), out,
                                lambda msg, tag=tag: progress(f"{tag}: {msg}"))
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
            raise
        for k, v in {**scores, "out": str(out.relative_to(sweep.out))}.items():
            trial.set_user_attr(k, v)
        s = spread(scores["seed_objectives"])
        study.tell(trial, s["mean"])
        best = study.best_trial
        progress(f"{tag}: validation {OBJECTIVE} {s['mean']:.4f} (seeds "
                 f"{', '.join(f'{v:.4f}' for v in scores['seed_objectives'])}); best so far "
                 f"{best.value:.4f} [{Path(best.user_attrs['out']).name}]")  # by key, as the tags


def trial_record(t: optuna.trial.FrozenTrial) -> dict:
    """One trial of ``sweep.json``."""
    rec = {"number": t.number, "state": t.state.name, "params": t.params,
           "key": trial_key(t.params), "out": t.user_attrs.get("out"),
           "rerun_of": t.user_attrs.get("rerun_of"), "error": t.user_attrs.get("error")}
    objectives = t.user_attrs.get("seed_objectives")
    if t.state == TrialState.COMPLETE and objectives:
        rec.update({k: t.user_attrs.get(k) for k in ("seed_objectives", "final_captured", "failed_seeds")},
                   **spread(objectives))
    return rec


def choose(trials: list[dict]) -> dict | None:
    """The complete trial with the best mean validation objective (the earliest on a tie)."""
    done = [t for t in trials if t["state"] == "COMPLETE"]
    return max(done, key=lambda t: (t["mean"], -t["number"])) if done else None


def run_ablations(sweep: Sweep, chosen: dict | None, progress: Callable[[str], None]) -> list[dict]:
    """GradMAP's :data:`ABLATIONS` at ``chosen``'s values (its defaults without one); ``full``
    is the chosen trial itself (its folder is reused)."""
    params = chosen["params"] if chosen else {}
    base = value_sets("gradmap", params)
    out = []
    for variant, sets in ABLATIONS.items():
        folder = (sweep.trial_dir("gradmap", params) if variant == "full"
                  else sweep.out / "ablations" / f"{variant}-{trial_key(params)}")
        tag = f"ablation {variant} [{folder.name}]"
        progress(f"{tag}: {' '.join(sets) or 'the chosen values'}: running into {folder}")
        scores = run_config(sweep, "gradmap", base + tuple(f"gradmap:{s}" for s in sets), folder,
                            lambda msg, tag=tag: progress(f"{tag}: {msg}"))
        rec = {"variant": variant, "sets": list(sets), "params": params,
               "out": str(folder.relative_to(sweep.out)), **scores, **spread(scores["seed_objectives"])}
        progress(f"{tag}: validation {OBJECTIVE} {rec['mean']:.4f}")
        out.append(rec)
    return out


def run_sweep(sweep: Sweep, progress: Callable[[str], None] = print) -> dict:
    """Run (or resume) every method's trials, then the ablations if asked; write
    ``sweep.json``, ``sweep.md`` and ``chosen.txt`` and return the report."""
    check(sweep)
    sweep.out.mkdir(parents=True, exist_ok=True)
    with open(sweep.out / "sweep.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{sweep.out}: another gradmap-sweep is running in this folder") from None
        studies = {m: open_study(sweep, m) for m in sweep.methods}  # every settings check first
        methods = {}
        for m, study in studies.items():
            sweep_method(sweep, study, progress)
            trials = [trial_record(t) for t in study.get_trials(deepcopy=False)]
            methods[m] = {"search_space": {k: json.loads(distribution_to_json(d))
                                           for k, d in SEARCH_SPACES[m].items()},
                          "tied": TIED.get(m, {}), "trials": trials, "chosen": choose(trials)}
        report = {"config": sweep.config, "sets": list(sweep.sets), "method_sets": list(sweep.method_sets),
                  "seeds": sweep.seeds, "budget_minutes": sweep.budget_minutes,
                  "n_trials": sweep.n_trials, "sampler": f"RandomSampler(seed={sweep.sampler_seed})",
                  "objective": OBJECTIVE, "group": sweep.group, "methods": methods}
        if sweep.ablations:
            report["ablations"] = run_ablations(
                sweep, methods.get("gradmap", {}).get("chosen"), progress)
        write_outputs(sweep.out, report)
    return report


# ---------------------------------------------------------------------------------------------
# Outputs


def chosen_lines(report: dict) -> list[str]:
    """``--set-method METHOD:KEY=VALUE`` of every method's chosen values (tied keys included)."""
    return [f"--set-method {s}" for m, r in report["methods"].items() if r["chosen"]
            for s in value_sets(m, r["chosen"]["params"])]


def write_outputs(out: Path, report: dict) -> None:
    atomic_write(out / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    atomic_write(out / "sweep.md", lambda tmp: Path(tmp).write_text(markdown(report)))
    lines = "".join(f"{x}\n" for x in chosen_lines(report))
    atomic_write(out / "chosen.txt", lambda tmp: Path(tmp).write_text(lines))


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt_score(rec: dict) -> list[str]:
    """Per-seed objectives, mean and 95 % interval cells of a trial or ablation record."""
    if rec.get("mean") is None:
        return ["–", "–", "–"]
    ci = rec["ci95"]
    return [", ".join(f"{v:.4f}" for v in rec["seed_objectives"]), f"{rec['mean']:.4f}",
            "–" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"]


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *rows]) + "\n"


def markdown(report: dict) -> str:
    """``sweep.md``: every method's trials, its chosen configuration and the ablations."""
    budget = report["budget_minutes"]
    text = [f"# Sweep `{report['group']}`\n",
            f"Config `{report['config']}`, {report['seeds']} seed(s) per trial, budget "
            f"{'the config iterations' if budget is None else f'{budget:g} min'} per run, "
            f"{report['n_trials']} trials per method, {report['sampler']}. Objective: validation "
            f"`{report['objective']}` (area under the best feasible captured share of the cost gap "
            "over the budget, higher is better), mean over seeds with its 95 % Student-t interval; "
            "the chosen trial has the best mean. Test metrics are not used.\n"]
    for m, r in report["methods"].items():
        keys = list(r["trials"][0]["params"]) if r["trials"] else []
        rows = [[str(t["number"]), t["state"], *(_fmt(t["params"].get(k, "–")) for k in keys),
                 *_fmt_score(t)] for t in r["trials"]]
        text.append(f"## {m}\n\n" + _table(["trial", "state", *keys, "per seed", "mean", "95 % CI"], rows))
        c = r["chosen"]
        text.append("Chosen: " + ("none (no complete trial)" if c is None else
                                  f"trial {c['number']}, {_fmt_params(c['params'])}") + ".\n")
    if "ablations" in report:
        rows = [[a["variant"], " ".join(a["sets"]) or "(chosen values)", *_fmt_score(a),
                 ", ".join("–" if v is None else f"{v:.3f}" for v in a["final_captured"])]
                for a in report["ablations"]]
        text.append("## GradMAP ablations\n\nAt the chosen values "
                    f"({_fmt_params(report['ablations'][0]['params']) or 'the defaults'}).\n\n"
                    + _table(["variant", "overrides", "per seed", "mean", "95 % CI",
                              "final captured per seed"], rows))
    lines = chosen_lines(report)
    text.append("## Carry over\n\n`chosen.txt`, for another scenario "
                "(`gradmap-compare --config ieee123-1000 $(cat chosen.txt) ...`):\n\n```\n"
                + "".join(f"{x}\n" for x in lines) + "```\n")
    return "\n".join(text)
