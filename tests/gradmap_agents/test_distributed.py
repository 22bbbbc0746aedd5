"""Training across processes (``torchrun``, :mod:`gradmap_agents.distributed`): 2 gloo processes
on the CPU train the same policies as one process, resume like one, and only rank 0 writes.

Tolerance. The 2-process run differs from the single one only in the order of floating-point
sums (each rank's share of L, of sum G^2, of the surrogate's parameter gradients, of the dual
step's constraint means and of the metrics) and in the power flow's batch: a converged scenario
keeps iterating while it rides along with unconverged ones (:mod:`gridedge_env.powerflow.
implicit`), so a day's voltages depend on its batch within the solver's tolerance, 1e-10 p.u. in
fp64. With fp64 policies (``policy.dtype``) both are ~1e-10 relative in G; Adam normalises each
step to ~lr per parameter, so after a few iterations the parameters agree to ~lr x 1e-10 x
steps. We assert 1e-8 absolute on parameters (lr = 3e-3, 8 optimiser steps: margin ~ 1e3 over
that estimate, measured below it by orders of magnitude) and 1e-8 relative on the duals and the
validation metrics; the ranks themselves hold bitwise-equal parameters (every rank applies the
same all-reduced gradients).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from gradmap_agents import distributed
from gradmap_agents.checkpoint import read
from gradmap_agents.config import load_config
from gradmap_agents.runs import CHECKPOINT, build_env, train_run
from gradmap_agents.train import train

SMALL = {"iterations": 4, "eval_every": 2, "checkpoint_every": 2,
         "algo": {"days_per_gradient": 5, "epochs": 2, "minibatches": 3},  # 3 + 2 days
         "policy": {"hidden": [4], "dtype": "fp64"}}
PARAM_ATOL = 1e-8
REL = 1e-8
WORLD = 2


def _cfg(method: str, **extra):
    return load_config("ieee13-50", {**SMALL, "algo": {**SMALL["algo"], "method": method},
                                     **extra})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(s) -> dict:
    return {"policy": {k: v.detach().clone() for k, v in s.policy.state_dict().items()},
            "duals": {k: v.clone() for k, v in s.duals._asdict().items()},
            "history": s.history, "day_steps": s.day_steps}


def _worker(rank: int, port: int, method: str, run_dirs: list, out: str) -> None:
    """One rank of a torchrun-like launch: the environment variables torchrun sets, then the
    run API as ``gradmap-train`` calls it; saves its final state to ``out.<rank>``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        assert distributed.init_from_env("cpu") == WORLD
        s = train_run(Path(run_dirs[rank]), _cfg(method), logger="none", evaluate=False).state
        torch.save(_result(s), f"{out}.{rank}")
    except BaseException:
        distributed.close()
        raise
    distributed.finish(0)  # as gradmap-train ends a rank


def _two_processes(tmp: Path, method: str) -> tuple[list, Path, float]:
    """Both ranks' results, rank 0's run directory, and the seconds the launch took. Rank 1 gets
    a run directory of its own, which must stay unwritten."""
    dirs = [str(tmp / "run"), str(tmp / "rank1-run")]
    t0 = time.perf_counter()
    mp.spawn(_worker, args=(_free_port(), method, dirs, str(tmp / "state")), nprocs=WORLD)
    seconds = time.perf_counter() - t0
    return [torch.load(tmp / f"state.{r}") for r in range(WORLD)], Path(dirs[0]), seconds


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 gradmap-train ARGS`` (CSV only, no test-day evaluation)."""
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "torchrun"), "--nproc_per_node", str(WORLD), "--master_port",
           str(_free_port()), str(bin_dir / "gradmap-train"), "--logger", "none", "--no-eval",
           *args]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=120)


def _errors(done: subprocess.CompletedProcess) -> str:
    """The lines of a failed launch's output that say what failed (torchrun's own summary
    names only the exit codes)."""
    lines = (done.stdout + done.stderr).splitlines()
    return "\n".join(ln for ln in lines if "Error" in ln or "error:" in ln)[-3000:]


def _max_param_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module", params=["gradmap", "gradma"])
def runs(request, tmp_path_factory):
    method = request.param
    torch.set_num_threads(1)
    cfg = _cfg(method)
    one = _result(train(build_env(cfg), cfg))
    tmp = tmp_path_factory.mktemp(f"dist-{method}")
    ranks, run_dir, seconds = _two_processes(tmp, method)
    print(f"\n{method}: 2-process run {seconds:.1f} s, max |param diff| vs 1 process "
          f"{_max_param_diff(ranks[0]['policy'], one['policy']):.3g}")
    return method, one, ranks, run_dir, tmp


def test_two_processes_train_the_single_process_policy(runs):
    _, one, ranks, _, _ = runs
    assert _max_param_diff(ranks[0]["policy"], one["policy"]) <= PARAM_ATOL
    for k, mu in one["duals"].items():
        torch.testing.assert_close(ranks[0]["duals"][k], mu, rtol=REL, atol=REL * float(mu.max()))
    assert ranks[0]["day_steps"] == one["day_steps"]  # the whole batch's, not a shard's
    # the ranks hold the very same policy
    assert all(torch.equal(ranks[1]["policy"][k], v) for k, v in ranks[0]["policy"].items())


def test_validation_metrics_are_reduced_over_all_days(runs):
    _, one, ranks, _, _ = runs
    assert len(ranks[0]["history"]) == len(one["history"]) == 2
    for h2, h1 in zip(ranks[0]["history"], one["history"], strict=True):
        assert h2["iteration"] == h1["iteration"]
        for k in ("val/cost", "val/violation_magnitude", "val/violation_frequency",
                  "val/v_min_pu", "val/v_max_pu", "val/voltage_worst_pu_max", "val/vuf_max",
                  "val/nonconverged"):
            assert h2[k] == pytest.approx(h1[k], rel=REL, abs=1e-12), k
    own = ("train/wall_seconds", "train/cpu_seconds")  # each rank's own clock (rank 0's reported)
    assert ([{k: v for k, v in h.items() if k not in own} for h in ranks[0]["history"]]
            == [{k: v for k, v in h.items() if k not in own} for h in ranks[1]["history"]])


def test_only_rank_zero_writes(runs):
    _, _, _, run_dir, tmp = runs
    assert not (tmp / "rank1-run").exists()
    assert {"config.yaml", CHECKPOINT, "train.csv", "validation.csv"} <= {
        p.name for p in run_dir.iterdir()}


@pytest.mark.parametrize("runs", ["gradmap"], indirect=True)  # the CLI path is the methods' own
def test_torchrun_cli_resumes_like_one_process(runs, tmp_path):
    """``torchrun --nproc_per_node 2 gradmap-train``: 2 iterations, then ``--resume`` to 4: the
    same final policy as the uninterrupted run (and so as one process)."""
    method, one, ranks, _, _ = runs
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed next to this Python")
    out = tmp_path / "run"
    sets = ["--config", "ieee13-50", "--set", "algo.days_per_gradient=5", "--set",
            "algo.epochs=2", "--set", "algo.minibatches=3", "--set", f"algo.method={method}",
            "--set", "policy.hidden=[4]", "--set", "policy.dtype=fp64", "--set", "eval_every=2",
            "--set", "checkpoint_every=2"]
    first = _torchrun([*sets, "--set", "iterations=2", "--out", str(out)])
    assert first.returncode == 0, _errors(first)
    assert read(out / CHECKPOINT)[1]["iteration"] == 2
    assert "run" not in first.stdout  # rank 1 prints nothing either (no report with --no-eval)
    second = _torchrun(["--resume", "--set", "iterations=4", "--out", str(out)])
    assert second.returncode == 0, _errors(second)
    tensors, meta = read(out / CHECKPOINT)
    assert meta["iteration"] == 4
    resumed = {k[len("policy."):]: v for k, v in tensors.items() if k.startswith("policy.")}
    print(f"\nresumed through torchrun: max |param diff| vs uninterrupted 2 processes "
          f"{_max_param_diff(resumed, ranks[0]['policy']):.3g}, vs 1 process "
          f"{_max_param_diff(resumed, one['policy']):.3g}")
    assert _max_param_diff(resumed, ranks[0]["policy"]) <= PARAM_ATOL
    assert _max_param_diff(resumed, one["policy"]) <= PARAM_ATOL


@pytest.mark.parametrize("n,world", [(5, 2), (55, 2), (7, 3), (4, 4), (32, 5)])
def test_shards_cover_the_days_once_in_rank_order(n, world):
    blocks = [distributed.shard_bounds(n, r, world) for r in range(world)]
    assert [i for b in blocks for i in range(n)[b]] == list(range(n))
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_one_process_runs_no_collective(monkeypatch):
    assert not distributed.active() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard(5) == slice(0, 5)
    x = torch.tensor([1.0, 2.0])
    assert distributed.all_sum(x) is x and distributed.mean(x) == 1.5
    for var in distributed.TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_from_env("cpu") == 1 and not distributed.active()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.LaunchError, match="MASTER_ADDR"):
        distributed.init_from_env("cpu")
