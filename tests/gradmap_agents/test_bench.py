"""The benchmarks run on the small case and report what they claim: the kernel agrees with the
plain formula, both environment-gradient paths give the same gradient."""

import json

import pytest

from gradmap_agents.bench import bench_envgrad, bench_kernel, bench_update
from gradmap_agents.cli import bench_main


def test_kernel_bench_compares_with_torchrl_and_agrees_with_plain_autograd(capsys):
    assert bench_main(["--kernel", "--agents", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["samples"] for r in out["rows"]] == [32, 384, 1536]
    for r in out["rows"]:
        assert r["max_abs_diff_vs_plain"] < 1e-6  # float32 rounding of tanh via the sigmoid
        assert min(r["fused_ms"], r["plain_autograd_ms"], r["torchrl_ms"]) > 0
    small = bench_kernel(2, samples=(5,), hidden=(4, 3), repeats=1)
    assert small["rows"][0]["max_abs_diff_vs_plain"] < 1e-6


def test_envgrad_paths_agree_and_update_bench_runs():
    out = bench_envgrad("ieee13-50-v0", days=2, repeats=1)
    assert out["grad_max_rel_diff"] < 1e-6 and out["envgrad_s"] > 0
    assert 0.05 < out["peak_rss_gb"] < 24  # a real reading in GB (ru_maxrss is in kB on Linux)
    parts = dict(out["breakdown"])
    total = parts.pop("total_s")
    assert set(parts) == {"policies_forward_s", "devices_forward_s", "pf_forward_s",
                          "pf_backward_s", "policies_devices_backward_s"}
    # every stage was timed (the hooks fired) and the stages partition the gradient's time
    assert min(parts.values()) >= 0 and parts["pf_forward_s"] > 0 and parts["pf_backward_s"] > 0
    assert sum(parts.values()) == pytest.approx(total, abs=5e-4)
    up = bench_update("ieee13-50-v0", repeats=1)
    assert all(up[k] > 0 for k in ("gradmap_env_gradient_s", "gradmap_update_s",
                                   "gradma_update_s"))


def test_envgrad_one_path_with_recompute(capsys):
    out = bench_envgrad("ieee13-50-v0", days=2, repeats=1, paths=("whole_day",), recompute=True)
    assert out["envgrad_s"] > 0 and "stepwise_envgrad_s" not in out and out["breakdown"] is None
    assert out["paths"] == ["whole_day"] and out["recompute"] is True
    assert bench_main(["--envgrad", "--scenario", "ieee13-50-v0", "--paths", "sideways"]) == 2
    assert "paths must be" in capsys.readouterr().err
