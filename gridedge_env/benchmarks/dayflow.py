"""``gridedge-bench dayflow``: the power flows of whole training days, ours in one batched call
against OpenDSS one day-step at a time.

Protocol (``docs/powerflow.md``, benchmark): the no-control injections of the first ``days``
training days of a registered environment (:func:`gridedge_env.rollout.no_control`, rolled out
on the whole-day path without gradient) give ``B = days x T`` day-steps of per-agent power
``(B, N)``, kW + j kvar. On them we time:

- ours, forward: one batched ``env.powerflow.solve`` of all ``B`` day-steps (the environment's
  own power flow and call, :func:`gridedge_env.core.leg_power` at ``env.leg_node``);
- ours, forward + backward: the same with the injections requiring grad, then the backward of
  the environment's constraint terms (:func:`gridedge_env.costs.constraints`: voltage and line
  exceedances) plus ``1e-3 x (sum v_pu + sum line_loading)``, so every voltage and line loading
  carries gradient, to the per-agent injections;
- OpenDSS (:class:`gridedge_env.opendss.powerflow.OpenDSSPowerFlow`, tolerance 1e-8 p.u., the
  environment's feeder): the first ``opendss_days x T`` day-steps one by one, injections written
  and voltages and line currents read back at every day-step. Its count is reported beside its
  per-day-step rate; the ratios are per day-step, never an extrapolated total.

Ours: best of ``repeats`` after a warm-up on the first day's ``T`` day-steps; OpenDSS: one pass
(at ieee8500 scale it takes minutes). Every timing is wall seconds and process CPU seconds
(``time.process_time``: all threads of the process, OpenDSS's included).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core import leg_power
from ..costs import constraints
from ..opendss.powerflow import OpenDSSPowerFlow
from ..registry import env_params
from ..rollout import no_control, rollout
from .common import machine, peak_memory_gb, sync

#: Weight of ``sum v_pu + sum line_loading`` in the backward's scalar (small: the exceedances
#: dominate where there are any, yet no output is without gradient).
OUTPUT_WEIGHT = 1e-3

#: Columns of ``--table`` rows, in order.
TABLE_COLUMNS = ("env", "day_steps", "device", "dtype", "ours_fwd_wall_s", "ours_fwd_bwd_wall_s",
                 "opendss_day_steps", "opendss_wall_s", "ratio_fwd", "ratio_fwd_bwd",
                 "max_v_diff_pu", "ours_mean_iterations", "peak_rss_gb", "machine")


def _clock(fn, device) -> tuple[float, float, object]:
    """``(wall s, process CPU s, result)`` of one call of ``fn``, to the end of the device's work."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0, out


def _best(fn, warm_up, device, repeats: int) -> tuple[float, float, object]:
    """The fastest (by wall time) of ``repeats`` calls of ``fn``, after one call of ``warm_up``."""
    warm_up()
    return min((_clock(fn, device) for _ in range(max(1, repeats))), key=lambda r: r[0])


def day_injections(env, days: int) -> torch.Tensor:
    """Per-agent power ``(days x T, N)`` complex, kW + j kvar (load convention), of the first
    ``days`` training days under no control, day-major (row ``d T + t``)."""
    train = env.scenario.split.train
    if not 1 <= days <= len(train):
        raise ValueError(f"days={days}: {env.scenario.config.name} has {len(train)} training "
                         "days (need 1 <= days <= that)")
    with torch.no_grad():
        roll = rollout(env, train[:days], no_control(env), path="whole_day")
    return torch.complex(roll.p_agent_kw, roll.q_agent_kvar).reshape(-1, env.n_agents)


def _solve(env, s: torch.Tensor):
    return env.powerflow.solve(leg_power(env, s), load_scale=0.0, at=env.leg_node, check=False)


def _fwd_bwd(env, s: torch.Tensor):
    """Forward and backward of the constraint terms and ``OUTPUT_WEIGHT x`` every output to the
    injections ``s`` ``(B, N)``; returns ``d loss / d s`` ``(B, N)``."""
    s = s.detach().requires_grad_(True)
    r = _solve(env, s)
    lim = env.scenario.config.limits
    cons = constraints(r.v_pu, r.line_loading, lim.v_min_pu, lim.v_max_pu, lim.line_loading_max,
                       env.node_mask)
    loss = (cons.v_over_pu.sum() + cons.v_under_pu.sum() + cons.line_over.sum()
            + OUTPUT_WEIGHT * (r.v_pu.sum() + r.line_loading.sum()))
    (grad,) = torch.autograd.grad(loss, s)
    return grad


def _ours(env, s: torch.Tensor, repeats: int) -> tuple[dict, object]:
    """Best-of-``repeats`` forward and forward + backward of all day-steps ``s`` ``(B, N)``:
    the timings (unrounded) and statistics, and the forward's result."""
    dev, first = s.device, s[:env.n_steps]
    with torch.no_grad():
        fw, fc, res = _best(lambda: _solve(env, s), lambda: _solve(env, first), dev, repeats)
    bw, bc, grad = _best(lambda: _fwd_bwd(env, s), lambda: _fwd_bwd(env, first), dev,
                              repeats)
    if not bool(torch.isfinite(torch.view_as_real(grad)).all()):
        raise FloatingPointError("the power flow's backward gave a non-finite gradient")
    iters, n = res.iterations, len(s)
    return {"ours_fwd_wall_s": fw, "ours_fwd_cpu_s": fc, "ours_fwd_bwd_wall_s": bw,
            "ours_fwd_bwd_cpu_s": bc, "ours_fwd_day_steps_per_s": round(n / fw, 1),
            "ours_fwd_bwd_day_steps_per_s": round(n / bw, 1),
            "ours_mean_iterations": round(float(iters.double().mean()), 2),
            "ours_max_iterations": int(iters.max()),
            "ours_newton_fallback_at_least": int((iters > env.powerflow.settings.max_iter).sum()),
            "ours_converged": int(res.converged.sum())}, res


def _opendss(env, s: torch.Tensor, ours) -> dict:
    """OpenDSS on the day-steps ``s`` ``(K, N)`` one by one, and its agreement with ``ours`` (our
    forward result of at least those day-steps) where both converged."""
    peer = OpenDSSPowerFlow(env.scenario.feeder, env.powerflow.injection_nodes)
    k = len(s)
    legs = leg_power(env, s)
    wall, cpu, theirs = _clock(lambda: peer.solve(legs, load_scale=0.0, at=env.leg_node), "cpu")
    both = ours.converged[:k].cpu() & theirs.converged
    v_diff = (ours.v_pu[:k].cpu().double() - theirs.v_pu).abs()[both]
    l_diff = (ours.line_loading[:k].cpu().double() - theirs.line_loading).abs()[both]
    return {"opendss_wall_s": wall, "opendss_cpu_s": cpu,
            "opendss_day_steps_per_s": round(k / wall, 2), "opendss_converged": int(
                theirs.converged.sum()), "compared_day_steps": int(both.sum()),
            "max_v_diff_pu": float(v_diff.max()) if v_diff.numel() else None,
            "max_line_loading_diff": float(l_diff.max()) if l_diff.numel() else None}


def _ratio(peer_s: float | None, peer_n: int, ours_s: float, ours_n: int) -> float | None:
    """OpenDSS's seconds per day-step over ours (> 1: ours is faster)."""
    return None if peer_s is None else round((peer_s / peer_n) / (ours_s / ours_n), 2)


def bench_dayflow(env_id: str = "ieee8500-10000-v0", days: int = 32,
                  opendss_days: int | None = None, repeats: int = 3, device: str = "cpu",
                  dtype: str = "fp64") -> dict:
    """Run the day-step power-flow benchmark (module docstring); returns the JSON-ready dict.

    ``opendss_days``: days OpenDSS solves (default all ``days``; 0 skips it, its keys are then
    None). ``ratio_fwd`` / ``ratio_fwd_bwd`` (and ``_cpu``): OpenDSS's seconds per day-step over
    ours. ``max_v_diff_pu``: largest ``|v_pu|`` difference between the engines over the day-steps
    both converged on. ``ours_newton_fallback_at_least``: day-steps whose iterations exceed the
    fixed point's ``max_iter`` (Newton finished them; the result does not record a fixed point
    that diverged earlier and was handed over, so this is a lower bound). Peak memory
    (:func:`.common.peak_memory_gb`) is read after our timings, before OpenDSS starts."""
    rdt = {"fp64": torch.float64, "fp32": torch.float32}[dtype]
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    k_days = days if opendss_days is None else opendss_days
    if not 0 <= k_days <= days:
        raise ValueError(f"opendss_days={k_days}: need 0 <= opendss_days <= days ({days})")
    env = env_params(env_id, device=device, dtype=rdt)
    s = day_injections(env, days)
    dev = s.device
    if dev.type == "cuda":  # the peak of our solves only
        torch.cuda.reset_peak_memory_stats(dev)
    ours, res = _ours(env, s, repeats)
    memory = peak_memory_gb(dev)
    n, n_k = len(s), k_days * env.n_steps
    peer = _opendss(env, s[:n_k], res) if n_k else dict.fromkeys(
        ("opendss_wall_s", "opendss_cpu_s", "opendss_day_steps_per_s", "opendss_converged",
         "compared_day_steps", "max_v_diff_pu", "max_line_loading_diff"))
    dw, dc = peer["opendss_wall_s"], peer["opendss_cpu_s"]
    ratios = {"ratio_fwd": _ratio(dw, n_k, ours["ours_fwd_wall_s"], n),
              "ratio_fwd_bwd": _ratio(dw, n_k, ours["ours_fwd_bwd_wall_s"], n),
              "ratio_fwd_cpu": _ratio(dc, n_k, ours["ours_fwd_cpu_s"], n),
              "ratio_fwd_bwd_cpu": _ratio(dc, n_k, ours["ours_fwd_bwd_cpu_s"], n)}
    seconds = {k: round(v, 5) for k, v in {**ours, **peer}.items()
               if k.endswith("_s") and v is not None}
    return {"env": env_id, "n_agents": env.n_agents, "n_nodes": env.scenario.feeder.n_nodes,
            "n_ports": env.powerflow.n_ports, "backend": env.powerflow.network.kind,
            "days": days, "steps_per_day": env.n_steps, "day_steps": n, "device": str(dev),
            "dtype": dtype, "tol_pu": env.powerflow.settings.tol, "repeats": repeats,
            **ours, "opendss_days": k_days, "opendss_day_steps": n_k, **peer, **seconds,
            **ratios, **memory, "machine": machine()}


def append_dayflow_row(path: Path, out: dict) -> None:
    """Append one markdown row of :data:`TABLE_COLUMNS` to ``path`` (header written if new)."""
    new = not path.exists()
    with path.open("a") as fh:
        if new:
            fh.write("| " + " | ".join(TABLE_COLUMNS) + " |\n|" + "---|" * len(TABLE_COLUMNS) + "\n")
        fh.write("| " + " | ".join(str(out[c]) for c in TABLE_COLUMNS) + " |\n")
