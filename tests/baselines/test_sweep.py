"""``gradmap-sweep``: trials resume (totals, not additions; an interrupted trial reruns into its
folder with its values), selection reads the validation objective only, GradMA's grid is
enumerated without repeats, the ablations, the outputs and the one-line errors."""

import fcntl
import json
from pathlib import Path

import optuna
import pytest
import scipy.stats
import yaml
from optuna.samplers import RandomSampler
from optuna.trial import TrialState

from baselines import cli
from baselines.cli import sweep_main
from baselines.sweep import (
    OBJECTIVE,
    SEARCH_SPACES,
    Sweep,
    choose,
    chosen_lines,
    enqueue_grid,
    grid_order,
    open_study,
    run_sweep,
    seed_scores,
    spread,
    trial_key,
    trial_sampler,
    value_sets,
)

# no budget: 2 iterations of 4 days a run (budgeted runs end by wall time alone)
SETS = ("iterations=2", "eval_every=2", "checkpoint_every=2", "algo.days_per_gradient=4")
PPO_SETS = ("ippo:iterations=2", "ippo:days_per_rollout=4", "ippo:eval_every=2")


def _sweep(tmp_path, n, methods=("gradmap",), **kw) -> Sweep:
    return Sweep("ieee13-50", SETS, methods, n, 1, None, tmp_path / "sw", "none", **kw)


def _run_config(folder) -> dict:
    return yaml.safe_load((folder / "runs" / "gradmap-s0" / "config.yaml").read_text())


@pytest.mark.slow
def test_sweep_selects_on_validation_resumes_and_reruns_interrupted_trials(tmp_path):
    log = []
    sw = _sweep(tmp_path, 1)
    rep = run_sweep(sw, log.append)
    trials = rep["methods"]["gradmap"]["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE"]
    for t in trials:  # the objective is the runs' validation auc_wall, in the trial's own folder
        folder = sw.out / t["out"]
        assert folder == sw.trial_dir("gradmap", t["params"]) and folder.name == trial_key(t["params"])
        table = json.loads((folder / "comparison.json").read_text())
        assert t["seed_objectives"] == [r[OBJECTIVE] for r in table["runs"]]
        assert 0 <= t["mean"] <= 1 and t["ci95"] is None  # one seed: no interval
        algo = _run_config(folder)["algo"]
        assert {f"algo.{k}": algo[k] for k in ("lr", "eta", "eps", "epochs")} == t["params"]
        assert _run_config(folder)["logging"]["group"] == "sweep-sw"
    chosen = rep["methods"]["gradmap"]["chosen"]
    assert chosen["mean"] == max(t["mean"] for t in trials)
    lines = (sw.out / "chosen.txt").read_text().splitlines()
    assert lines == [f"--set-method gradmap:{k}={v}" for k, v in chosen["params"].items()]
    assert json.loads((sw.out / "sweep.json").read_text())["methods"]["gradmap"]["chosen"] == chosen
    assert "## gradmap" in (sw.out / "sweep.md").read_text()

    log.clear()  # the same total again: nothing new runs
    again = run_sweep(sw, log.append)
    assert not [m for m in log if "running into" in m]
    assert again["methods"]["gradmap"]["trials"] == trials

    # a session killed inside a trial leaves it RUNNING, with part of its folder written
    bigger = _sweep(tmp_path, 2)
    study = open_study(bigger, "gradmap")
    study.sampler = RandomSampler(seed=12345)
    killed = study.ask(SEARCH_SPACES["gradmap"])
    folder = bigger.trial_dir("gradmap", killed.params)
    folder.mkdir(parents=True)
    (folder / "written-before-the-kill").touch()
    log.clear()
    rep = run_sweep(bigger, log.append)
    assert len([m for m in log if "running into" in m]) == 1  # only the interrupted one
    by_number = {t["number"]: t for t in rep["methods"]["gradmap"]["trials"]}
    assert by_number[killed.number]["state"] == "FAIL"
    rerun = [t for t in by_number.values() if t["rerun_of"] == killed.number]
    assert len(rerun) == 1 and rerun[0]["state"] == "COMPLETE"
    assert rerun[0]["params"] == killed.params and sw.out / rerun[0]["out"] == folder
    assert (folder / "written-before-the-kill").exists() and (folder / "comparison.json").exists()

    log.clear()  # a larger total runs only the missing trials; the best mean is chosen
    rep = run_sweep(_sweep(tmp_path, 3), log.append)
    assert len([m for m in log if "running into" in m]) == 1
    done = [t for t in rep["methods"]["gradmap"]["trials"] if t["state"] == "COMPLETE"]
    assert len(done) == 3 and len({t["key"] for t in done}) == 3
    assert rep["methods"]["gradmap"]["chosen"]["mean"] == max(t["mean"] for t in done)


@pytest.mark.slow
def test_ablations_at_the_chosen_values_and_ppo_with_its_critic_rate_tied(tmp_path):
    log = []
    sw = _sweep(tmp_path, 1, methods=("gradmap", "ippo"), method_sets=PPO_SETS, ablations=True)
    rep = run_sweep(sw, log.append)
    trial = rep["methods"]["ippo"]["chosen"]
    ppo = json.loads((sw.out / trial["out"] / "runs" / "ippo-s0" / "result.json").read_text())
    assert ppo["ppo_config"]["critic_lr"] == ppo["ppo_config"]["actor_lr"] == trial["params"]["actor_lr"]
    assert ppo["ppo_config"]["gamma"] == trial["params"]["gamma"] and ppo["iterations"] == 2
    assert "--set-method ippo:critic_lr=" in (sw.out / "chosen.txt").read_text()
    ablations = {a["variant"]: a for a in rep["ablations"]}
    assert list(ablations) == ["full", "no-reuse", "clip-only", "proximal-only"]
    chosen = rep["methods"]["gradmap"]["chosen"]  # full is the chosen trial, not trained again
    assert ablations["full"]["out"] == chosen["out"] and ablations["full"]["mean"] == chosen["mean"]
    assert any("gradmap seed 0: done before, kept" in m for m in log if m.startswith("ablation full"))
    algo = {v: _run_config(sw.out / a["out"])["algo"] for v, a in ablations.items()}
    assert {f"algo.{k}": algo["full"][k] for k in ("lr", "eta", "eps", "epochs")} == chosen["params"]
    changes = {"no-reuse": {"epochs": 1, "minibatches": 1}, "clip-only": {"eta": 1e9},
               "proximal-only": {"surrogate": "proximal"}}
    for v, change in changes.items():  # its change on top of the chosen values, nothing else
        assert algo[v] == {**algo["full"], **change}, v
    assert all(0 <= a["mean"] <= 1 for a in rep["ablations"])
    assert "## GradMAP ablations" in (sw.out / "sweep.md").read_text()


def test_the_objective_reads_validation_scores_only():
    table = {"runs": [  # seed 1 has the better test cost and the worse validation score
        {"method": "gradmap", "seed": 1, "failed": "", OBJECTIVE: 0.2, "final_captured": 0.3, "cost": 1.0},
        {"method": "gradmap", "seed": 0, "failed": "", OBJECTIVE: 0.5, "final_captured": 0.6, "cost": 9.0},
        {"method": "gradmap", "seed": 2, "failed": "FloatingPointError: diverged"},
        {"method": "mappo", "seed": 0, "failed": "", OBJECTIVE: 0.9, "final_captured": 0.9, "cost": 0.0}]}
    s = seed_scores(table, "gradmap")
    assert s["seed_objectives"] == [0.5, 0.2, 0.0]  # by seed; a failed run scores 0
    assert s["final_captured"] == [0.6, 0.3, None]
    assert s["failed_seeds"] == {"2": "FloatingPointError: diverged"}
    trials = [{"number": 0, "state": "COMPLETE", "mean": 0.4}, {"number": 1, "state": "FAIL"},
              {"number": 2, "state": "COMPLETE", "mean": 0.6}, {"number": 3, "state": "COMPLETE",
                                                                 "mean": 0.6}]
    assert choose(trials)["number"] == 2  # the best mean, the earliest on a tie
    assert choose([{"number": 0, "state": "FAIL"}]) is None


def test_seed_spread_is_the_student_t_interval():
    values = [0.31, 0.42, 0.37]
    s = spread(values)
    lo, hi = scipy.stats.t.interval(0.95, 2, loc=s["mean"], scale=scipy.stats.sem(values))
    assert s["mean"] == pytest.approx(0.3666666) and s["ci95"] == pytest.approx([lo, hi])
    assert spread([0.3]) == {"mean": 0.3, "ci95": None}


def test_value_sets_tie_the_critic_rate_and_grid_order_is_seeded():
    assert value_sets("mappo", {"actor_lr": 0.0005, "gamma": 1.0}) == (
        "mappo:actor_lr=0.0005", "mappo:gamma=1.0", "mappo:critic_lr=0.0005")
    assert grid_order(SEARCH_SPACES["gradmap"], 0) is None  # continuous keys: sampled
    grid = grid_order(SEARCH_SPACES["gradma"], 0)
    assert len(grid) == 12 and len({trial_key(p) for p in grid}) == 12
    assert grid == grid_order(SEARCH_SPACES["gradma"], 0) != grid_order(SEARCH_SPACES["gradma"], 1)


# The ieee13-50-v1 sweep of docs/results.md chose these trials (sampler seed 0): a trial number
# for the sampled methods, the point itself for GradMA's grid.
CHOSEN_FILE = Path(__file__).parents[2] / "docs" / "chosen-ieee13-50-v1.txt"
CHOSEN_TRIALS = {"gradmap": 6, "gradma": {"algo.lr": 0.01, "algo.grad_scale": "rms"},
                 "mappo": 3, "ippo": 0}


def test_the_committed_chosen_values_are_the_sweeps_draws():
    """A trial's values depend on the sweep's seed and its number only, so the chosen values
    that results.md's commands read are the sampler's draws, to the last digit, written as
    the sweep writes ``chosen.txt``."""
    methods = {}
    for method, trial in CHOSEN_TRIALS.items():
        if isinstance(trial, int):
            study = optuna.create_study(direction="maximize", sampler=trial_sampler(0, trial))
            trial = study.ask(SEARCH_SPACES[method]).params
        methods[method] = {"chosen": {"params": trial}}
    assert CHOSEN_FILE.read_text().splitlines() == chosen_lines({"methods": methods})


def test_gradma_grid_runs_each_point_once_across_sessions(tmp_path):
    sw = _sweep(tmp_path, 5, methods=("gradma",))
    (sw.out).mkdir(parents=True)
    grid = grid_order(SEARCH_SPACES["gradma"], sw.sampler_seed)
    seen = []
    for n in (5, 5, 12, 12):  # totals of successive sessions: 5, nothing new, the other 7
        study = open_study(sw, "gradma")
        enqueue_grid(study, grid, n)
        while len(study.get_trials(states=(TrialState.COMPLETE,))) < n:
            t = study.ask(SEARCH_SPACES["gradma"])
            seen.append(trial_key(t.params))
            study.tell(t, 0.0)
    assert seen == [trial_key(p) for p in grid]


@pytest.mark.parametrize("args, message", [
    (["--methods", "gradmap,ppo"], "unknown method(s) ['ppo']"),
    (["--n-trials", "0"], "n-trials must be >= 1, got 0"),
    (["--set-method", "gradmap:algo.lr=0.1"], "algo.lr is searched by the sweep"),
    (["--set-method", "mappo:critic_lr=0.1", "--methods", "mappo"], "critic_lr is searched"),
    (["--set-method", "ippo:clip=0.1", "--methods", "gradmap"], "'ippo' is not swept here"),
    (["--set-method", "ippo:clip=-1", "--methods", "ippo"], "clip"),
    (["--set-method", "algo.lr=0.1"], "expected METHOD:KEY=VALUE"),
    (["--set", "algo.eta=0", "--methods", "gradma"], "algo.eta"),
    (["--budget-minutes", "1", "--set", "iterations=5"], "never by an iteration cap"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert sweep_main([*args, "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradmap-sweep: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "sw").exists()


def test_other_settings_and_a_folder_in_use_are_refused(tmp_path, capsys):
    sw = _sweep(tmp_path, 1)
    sw.out.mkdir(parents=True)
    open_study(sw, "gradmap")  # started with 1 seed
    args = ["--config", "ieee13-50", "--methods", "gradmap", "--out", str(sw.out), "--logger", "none",
            *(x for s in SETS for x in ("--set", s))]
    assert sweep_main([*args, "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "started with other settings: seeds (saved 1, now 2)" in err and err.count("\n") == 1
    with open(sw.out / "sweep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert sweep_main([*args, "--seeds", "1"]) == 2
    assert "another gradmap-sweep is running" in capsys.readouterr().err


def test_console_script_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["gradmap-sweep"] == "baselines.cli:sweep"
    assert "optuna" in " ".join(pyproject["project"]["optional-dependencies"]["sweep"])
    assert callable(cli.sweep)
