"""``gridedge-bench env``: agent-steps/s of the batched core against OpenDSS-stepped power flows.

Both run the same scenario with the same (constant) actions over the same number of days:
device dynamics, costs and rewards are the core's own batched torch code in both; only the power
flow differs. Ours solves all ``num_envs`` days of a step in one batched call; the peer,
:class:`gridedge_env.opendss.OpenDSSPowerFlow`, solves them one by one through opendssdirect.py
(the agents' injections written as single-phase loads, voltages and all line currents read
back) at the same tolerance (1e-8 p.u.).
"""

from __future__ import annotations

import time

import torch

from ..core import reset, step
from ..opendss.powerflow import opendss_stepped
from ..registry import env_params
from .common import machine


def _day(env, num_envs: int, steps: int) -> tuple[float, object]:
    state, _ = reset(env, num_envs, seed=0)
    action = torch.zeros(num_envs, env.n_agents, dtype=env.node_mask.dtype,
                         device=env.node_mask.device)
    sync = torch.cuda.synchronize if env.node_mask.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(steps):
            state, out = step(env, state, action)
    sync()
    return time.perf_counter() - t0, out


def _days(env, num_envs: int, steps: int, min_s: float) -> tuple[float, object]:
    """Mean seconds per day over whole days, run until they add up to at least ``min_s``."""
    total, n, out = 0.0, 0, None
    while n == 0 or total < min_s:
        t, out = _day(env, num_envs, steps)
        total, n = total + t, n + 1
    return total / n, out


def bench_env(env_id: str = "ieee123-1000-v0", num_envs: int = 64, steps: int = 48,
              opendss_envs: int | None = None, device: str = "cpu", dtype: str = "fp64",
              compile: bool = False, repeats: int = 3) -> dict:
    """Agent-steps/s of the core and of the same scenario with OpenDSS solving each step's
    power flows, on ``opendss_envs`` days (default ``min(num_envs, 64)``: the peer then shares
    our batched device code over as many days, and its per-day cost is flat beyond that).
    OpenDSS computes in float64, so the peer runs the float64 environment (same ``compile``)
    whatever ``dtype`` ours uses.

    Timing protocol (shared machines drift in speed over seconds): ``repeats`` rounds, each one
    peer day followed by as many of our days as take at least as long (so both sides are
    exposed to the machine for the same time, back to back); each side's speed is its best
    round. ``ratio_vs_opendss`` is best over best; ``ratio_rounds`` the ratio within each
    round."""
    dt = {"fp64": torch.float64, "fp32": torch.float32}[dtype]
    env = env_params(env_id, device=device, dtype=dt, compile=compile)
    t_warm = time.perf_counter()
    # warm-up: a whole day, so compile=True has compiled and settled its unrolled iteration
    # count (a day needing more iterations raises it, with a recompilation) before timing
    _day(env, num_envs, steps)
    t_warm = time.perf_counter() - t_warm
    ref = env if dt == torch.float64 and device == "cpu" else env_params(
        env_id, compile=compile)
    # the peer's step runs the staged path (devices, OpenDSS, outcome): no fused power flow
    peer = opendss_stepped(ref)
    n_dss = min(num_envs, 64) if opendss_envs is None else min(opendss_envs, num_envs)
    _day(peer, n_dss, 1)  # warm-up
    rounds = []
    for _ in range(max(1, repeats)):
        t_dss, out_dss = _day(peer, n_dss, steps)
        t_ours, out = _days(env, num_envs, steps, min_s=t_dss)
        rounds.append((num_envs * env.n_agents * steps / t_ours,
                       n_dss * env.n_agents * steps / t_dss))
    ours, dss = max(r[0] for r in rounds), max(r[1] for r in rounds)
    agree = float((out.info["v_pu"][:n_dss].cpu().double() - out_dss.info["v_pu"]).abs().max())
    return {"env": env_id, "n_agents": env.n_agents, "num_envs": num_envs, "steps": steps,
            "device": str(env.node_mask.device), "dtype": dtype, "compile": compile,
            "ours_agent_steps_per_s": round(ours, 1), "opendss_agent_steps_per_s": round(dss, 1),
            "opendss_envs_timed": n_dss, "ratio_vs_opendss": round(ours / dss, 2),
            "ratio_rounds": [round(o / d, 2) for o, d in rounds],
            "ours_step_ms": round(num_envs * env.n_agents / ours * 1e3, 3),
            "mean_pf_iterations": round(float(out.info["pf_iterations"].float().mean()), 2),
            "unrolled_iterations": env.compiled.get("unroll"),
            "warmup_s": round(t_warm, 1), "max_v_diff_pu_last_step": agree,
            "machine": machine()}
