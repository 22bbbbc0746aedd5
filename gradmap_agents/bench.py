"""Benchmarks: the environment gradient (``gradmap-bench --envgrad``), time to target of the
training methods (``gradmap-bench``), the stacked-policy kernel against TorchRL's
``MultiAgentMLP`` (``gradmap-bench --kernel``) and the seconds per update of each method
(``gradmap-bench --update``). All print JSON; tables are in ``docs/gradmap.md``."""

from __future__ import annotations

import dataclasses
import statistics
import time
from contextlib import contextmanager

import torch

from gridedge_env.benchmarks.common import machine, peak_memory_gb, sync
from gridedge_env.registry import env_params
from gridedge_env.rollout import rollout

from . import protocol
from .config import load_config, merge, parse_set
from .dual import init_duals
from .evaluate import evaluate
from .gradmap import environment_gradient, gradma_update, gradmap_update, lagrangian
from .policy import StackedMLP, StackedPolicy, kind_groups
from .train import init_state, train


def _one_gradient(env, policy, days, duals, path, recompute=False):
    dev = env.node_mask.device
    sync(dev)
    t0 = time.perf_counter()
    roll = rollout(env, days, policy, perturb=True, path=path, recompute=recompute)
    loss = lagrangian(roll, duals)
    sync(dev)
    t1 = time.perf_counter()
    grads = torch.autograd.grad(loss, [roll.delta, *policy.parameters()])
    sync(dev)
    return t1 - t0, time.perf_counter() - t1, grads


class _StageClock:
    """Seconds spent in named stages (``stage``), and instants (``stamp``), each read after the
    device's queued work is done."""

    def __init__(self, device):
        self.device, self.seconds, self.stamps = device, {}, {}

    @contextmanager
    def stage(self, name: str):
        sync(self.device)
        t0 = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def stamp(self, name: str, first: bool = False) -> None:
        """Record now under ``name`` (``first``: keep the earliest of repeated stamps)."""
        sync(self.device)
        now = time.perf_counter()
        self.stamps[name] = min(now, self.stamps.get(name, now)) if first else now


class _TimedPolicy:
    """``policy`` with its binding and every call timed as the stage ``"policies"``."""

    def __init__(self, policy, clock: _StageClock):
        self.policy, self.clock = policy, clock

    def parameters(self):
        return self.policy.parameters()

    def bind(self):
        with self.clock.stage("policies"):
            bound = self.policy.bind() if hasattr(self.policy, "bind") else self.policy

        def act(obs, t, state):
            with self.clock.stage("policies"):
                return bound(obs, t, state)

        return act


class _TimedPowerFlow:
    """The environment's power flow with its forward timed as the stage ``"pf_forward"`` (line
    loadings included: computed there rather than on first use) and its backward bracketed by
    gradient hooks: ``"pf_backward_start"`` when the gradient of its first output (``v_pu`` or
    ``line_loading``) is complete, ``"pf_backward_end"`` when that of its input ``s_kva`` is."""

    def __init__(self, powerflow, clock: _StageClock):
        self.powerflow, self.clock = powerflow, clock

    def __getattr__(self, name):
        return getattr(self.powerflow, name)

    def solve(self, s_kva, load_scale=1.0, *, at=None, check: bool = True):
        clock = self.clock
        with clock.stage("pf_forward"):
            r = self.powerflow.solve(s_kva, load_scale, at=at, check=check)
            outputs = (r.v_pu, r.line_loading)
        if s_kva.requires_grad:
            s_kva.register_hook(lambda g: clock.stamp("pf_backward_end"))
            for out in outputs:
                out.register_hook(lambda g: clock.stamp("pf_backward_start", first=True))
        return r


def _gradient_breakdown(env, policy, days, duals) -> dict:
    """One whole-day environment gradient (as :func:`_one_gradient`) with its stages timed:
    seconds of the policies' forward, the power flow's forward, the rest of the forward
    (devices, costs, observations, constraints, Lagrangian), the power flow's backward and the
    rest of the backward (Lagrangian, constraints, devices and policies), and their total."""
    clock = _StageClock(env.node_mask.device)
    timed_env = dataclasses.replace(env, powerflow=_TimedPowerFlow(env.powerflow, clock))
    fwd, bwd, _ = _one_gradient(timed_env, _TimedPolicy(policy, clock), days, duals, "whole_day")
    pf_bwd = clock.stamps["pf_backward_end"] - clock.stamps["pf_backward_start"]
    sec = clock.seconds
    parts = {"policies_forward_s": sec["policies"], "pf_forward_s": sec["pf_forward"],
             "devices_forward_s": fwd - sec["policies"] - sec["pf_forward"],
             "pf_backward_s": pf_bwd, "policies_devices_backward_s": bwd - pf_bwd}
    return {k: round(v, 4) for k, v in {**parts, "total_s": fwd + bwd}.items()}


def bench_envgrad(env_id: str = "ieee123-1000-v0", days: int = 32, dtype: str = "fp64",
                  device: str = "cpu", hidden: tuple[int, ...] = (16,), repeats: int = 3,
                  compile: bool = False, paths: tuple[str, ...] = ("whole_day", "stepwise"),
                  recompute: bool = False) -> dict:
    """Seconds per environment gradient (rollout + Lagrangian forward, backward to the action
    perturbation and every policy parameter) of the whole-day path and of stepping
    ``core.step``, in interleaved rounds (one of each per round; each side's best round), and
    the peak memory (:func:`gridedge_env.benchmarks.common.peak_memory_gb`: the process's peak
    RSS, and on CUDA the peak allocated during the timed rounds).

    ``paths``: the paths timed (both by default; one alone makes the peak memory that path's).
    ``recompute``: the whole-day path recomputes each step's observations, policies and devices in the
    backward (:func:`gridedge_env.rollout.rollout`).

    ``breakdown``: where one whole-day gradient's time goes, from a third, instrumented
    whole-day gradient in every round (the one with the least total is reported; the timed
    rounds above run uninstrumented). Timers (synchronising the device) around every policy call
    and the power-flow call give ``policies_forward_s`` and ``pf_forward_s``;
    ``devices_forward_s`` is the rest of the forward (devices, costs, observations, constraints,
    Lagrangian). Gradient hooks on the power flow's outputs and input bracket its backward,
    ``pf_backward_s`` (adjoint solve and output maps); ``policies_devices_backward_s`` is the rest
    of the backward. The parts add up to ``breakdown["total_s"]``. Not made with ``recompute``
    (its repeated forward would fall inside the backward's timers) or without the whole-day
    path: ``None`` then."""
    if not paths or set(paths) - {"whole_day", "stepwise"}:
        raise ValueError(f"paths must be 'whole_day' and/or 'stepwise', got {paths!r}")
    dt = {"fp64": torch.float64, "fp32": torch.float32}[dtype]
    env = env_params(env_id, device=device, dtype=dt, compile=compile)
    policy = StackedPolicy(env.n_agents, env.obs_dim, kind_groups(env.kind_slices, hidden),
                           seed=0, device=env.node_mask.device)  # float32, as the trainer's
    duals = init_duals(env, "node_time", 100.0, 10.0)
    day_idx = env.scenario.split.train[:days]

    def gradient(path):
        return _one_gradient(env, policy, day_idx, duals, path, recompute and path == "whole_day")

    for path in paths:  # warm-up (allocator, threads, compilation)
        gradient(path)
    if env.node_mask.device.type == "cuda":  # the peak of the timed rounds only
        torch.cuda.reset_peak_memory_stats(env.node_mask.device)
    times: dict = {path: [] for path in paths}
    grads, parts = {}, []
    for _ in range(max(1, repeats)):
        for path in reversed(paths):  # stepwise first, as before
            *ts, grads[path] = gradient(path)
            times[path].append(ts)
        if "whole_day" in paths and not recompute:
            parts.append(_gradient_breakdown(env, policy, day_idx, duals))
    out = {"env": env_id, "n_agents": env.n_agents, "days": days, "dtype": dtype,
           "device": str(env.node_mask.device), "hidden": list(hidden), "compile": compile,
           "paths": list(paths), "recompute": recompute}
    names = {"whole_day": ("envgrad_s", "envgrad_forward_s", "envgrad_backward_s"),
             "stepwise": ("stepwise_envgrad_s", "stepwise_forward_s", "stepwise_backward_s")}
    for path in paths:
        f, b = min(times[path], key=sum)
        out |= dict(zip(names[path], (round(f + b, 4), round(f, 4), round(b, 4)), strict=True))
    if len(paths) == 2:
        out["speedup"] = round(out["stepwise_envgrad_s"] / out["envgrad_s"], 2)
        out["grad_max_rel_diff"] = max(
            float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
            for a, b in zip(grads["whole_day"], grads["stepwise"], strict=True))
    out["rounds"] = [[round(sum(times[p][i]), 4) for p in paths] for i in range(max(1, repeats))]
    out["breakdown"] = min(parts, key=lambda p: p["total_s"]) if parts else None
    return out | peak_memory_gb(env.node_mask.device) | {"machine": machine()}


def bench_methods(env_id: str, methods: list[str], seeds: int, config: str | None,
                  sets: list[str], method_sets: list[str]) -> dict:
    """Train every method with every seed (same days, machine and iterations), then the
    training seconds each needs to the scenario's 50 % quality level
    (:mod:`.protocol`; the median over seeds where every seed reaches it). The full comparison,
    with a binding wall-time budget, is ``gradmap-compare``."""
    base = merge(parse_set(sets), {"env": env_id})
    per_method = {m: parse_set([s.split(":", 1)[1] for s in method_sets if s.startswith(f"{m}:")])
                  for m in methods}
    runs = []
    env = None
    for method in methods:
        for seed in range(seeds):
            cfg = load_config(config, merge(merge(base, {"algo": {"method": method}, "seed": seed}),
                                            per_method[method]))
            if env is None:
                dtype = {"fp64": torch.float64, "fp32": torch.float32}[cfg.dtype]
                env = env_params(cfg.env, device=cfg.device, dtype=dtype, **dict(cfg.env_overrides))
            s = train(env, cfg)
            test, _ = evaluate(env, s.policy, env.scenario.split.test)
            runs.append({"method": method, "seed": seed, "history": s.history,
                         "no_control_val": s.no_control_val, "test": test,
                         "env_gradients": s.env_gradients, "train_seconds": s.train_seconds})
    lv = protocol.levels(env)
    out = {"env": env_id, "seeds": seeds, "levels": lv.as_dict(), "methods": {},
           "machine": machine()}
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        scores = [protocol.score(r["history"], lv, None) for r in mine]
        times = [sc["time_to_50"] for sc in scores]
        grads = [sc["gradients_to_50"] for sc in scores]
        out["methods"][method] = {
            "time_to_50_s": statistics.median(times) if None not in times else None,
            "env_gradients_to_50": statistics.median(grads) if None not in grads else None,
            "per_seed_time_to_50_s": times, "per_seed_env_gradients_to_50": grads,
            "per_seed_final_captured": [sc["final_captured"] for sc in scores],
            "test_cost": statistics.mean(r["test"]["cost"] for r in mine),
            "test_voltage_violation_magnitude": statistics.mean(
                r["test"]["voltage_violation_magnitude"] for r in mine),
            "test_line_violation_magnitude": statistics.mean(
                r["test"]["line_violation_magnitude"] for r in mine),
            "train_seconds": statistics.mean(r["train_seconds"] for r in mine),
            "env_gradients": mine[0]["env_gradients"]}
    m = out["methods"]
    t_map = m.get("gradmap", {}).get("time_to_50_s")
    t_ma = m.get("gradma", {}).get("time_to_50_s")
    # the ratio of times to the scenario's 50 % level; None unless both reach it with every seed
    out["speedup_to_50"] = round(t_ma / t_map, 2) if t_map and t_ma else None
    return out


def _best_ms(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, threads
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times) * 1e3, 3)


def _plain_forward(net, x):
    """The stacked MLP as autograd sees the formula (this project's implementation before the
    fused kernel): normalisation folded per call, ``baddbmm`` and ``tanh`` per layer."""
    (w0, b0), *rest = net.layers()
    inv = 1.0 / net.obs_std
    w, b = w0 * inv[:, :, None], b0 - torch.bmm((net.obs_mean * inv)[:, None, :], w0)
    for w_next, b_next in rest:
        x = torch.tanh(torch.baddbmm(b, x, w))
        w, b = w_next, b_next
    return torch.tanh(torch.baddbmm(b, x, w))


def bench_kernel(n_agents: int = 1000, samples: tuple[int, ...] = (32, 384, 1536),
                 hidden: tuple[int, ...] = (16,), obs_dim: int = 7, repeats: int = 5) -> dict:
    """Milliseconds per forward + backward (to every parameter) of ``n_agents`` independent
    MLPs (tanh hidden layers, tanh output, float32) on ``S`` samples each: the fused kernel
    (:class:`.policy.StackedMLP`), the same formula through plain autograd, and TorchRL's
    ``MultiAgentMLP`` with ``share_params=False`` (its own input layout ``(S, N, F)``)."""
    try:
        from torchrl.modules import MultiAgentMLP  # optional dependency (gridedge[rl])
    except ImportError as e:
        raise SystemExit("gradmap-bench --kernel compares with TorchRL's MultiAgentMLP: "
                         "pip install 'gridedge[rl]'") from e



    g = torch.Generator().manual_seed(0)
    ours = StackedMLP(n_agents, obs_dim, hidden, 1, generator=g, dtype=torch.float32)
    peer = MultiAgentMLP(obs_dim, 1, n_agents, centralized=False, share_params=False,
                         depth=len(hidden), num_cells=list(hidden))
    rows = []
    for s in samples:
        x = torch.randn(n_agents, s, obs_dim, generator=g)  # agent-major, as the trainer lays out
        x_peer = x.transpose(0, 1).contiguous()  # (S, N, F): TorchRL's layout
        w = torch.randn(n_agents, s, 1, generator=g)
        mine, peer_params = list(ours.parameters()), list(peer.parameters())

        def run(forward, params, inp, w=w):
            return lambda: torch.autograd.grad((forward(inp) * w).sum(), params)

        t_fused = _best_ms(run(ours.forward_agent_major, mine, x), repeats)
        t_plain = _best_ms(run(lambda v: _plain_forward(ours, v), mine, x), repeats)
        t_peer = _best_ms(run(lambda v: torch.tanh(peer(v)).transpose(0, 1), peer_params,
                              x_peer), repeats)
        with torch.no_grad():
            err = float((ours.forward_agent_major(x) - _plain_forward(ours, x)).abs().max())
        rows.append({"samples": s, "fused_ms": t_fused, "plain_autograd_ms": t_plain,
                     "torchrl_ms": t_peer, "speedup_vs_plain": round(t_plain / t_fused, 2),
                     "speedup_vs_torchrl": round(t_peer / t_fused, 2),
                     "max_abs_diff_vs_plain": err})
    return {"n_agents": n_agents, "hidden": list(hidden), "obs_dim": obs_dim, "dtype": "fp32",
            "rows": rows, "machine": machine()}


def bench_update(env_id: str = "ieee123-1000-v0", repeats: int = 3) -> dict:
    """Seconds per training update on the trainer's own fresh state and defaults
    (:func:`.train.init_state`, ``TrainConfig``): GradMAP's environment gradient (action-space
    gradient only), the whole GradMAP update (that plus ``K x M`` surrogate steps) and a GradMA
    update (environment gradient with parameter gradients, one step), on the same days."""
    cfg = load_config(None, {"env": env_id})
    env = env_params(env_id)
    s, a = init_state(env, cfg), cfg.algo
    days = env.scenario.split.train[:a.days_per_gradient]
    margins = (cfg.dual.margin_pu, cfg.dual.line_margin)
    jobs = {
        "gradmap_env_gradient_s": lambda: environment_gradient(env, s.policy, days, s.duals,
                                                               margins=margins),
        "gradmap_update_s": lambda: gradmap_update(
            env, s.policy, s.optimizer, days, s.duals, epochs=a.epochs,
            minibatches=a.minibatches, eta=a.eta, eps=a.eps, form=a.surrogate,
            grad_scale=a.grad_scale, generator=s.minibatch_generator, margins=margins),
        "gradma_update_s": lambda: gradma_update(env, s.policy, s.optimizer, days, s.duals,
                                                 margins=margins),
    }
    out = {"env": env_id, "n_agents": env.n_agents, "days": a.days_per_gradient,
           "epochs": a.epochs, "minibatches": a.minibatches}
    for name, job in jobs.items():
        out[name] = round(_best_ms(job, repeats) / 1e3, 3)
    out["machine"] = machine()
    return out
