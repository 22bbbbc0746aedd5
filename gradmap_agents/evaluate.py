"""Out-of-sample metrics of a policy (or no control) over a set of days.

Units (``docs/gradmap.md``, evaluation): ``cost`` is GBP per day (all agents, all cost
channels, mean over the days); ``violation_magnitude`` is, per day, the summed voltage
exceedance (p.u. x node-steps, non-source nodes) plus the summed line overload
(``|I|/rating - 1`` x line-phase-steps), mean over the days, and each part is also reported
alone; ``violation_frequency`` is the share of (non-source node-phase, step) pairs outside
``[v_min, v_max]``; ``line_overload_frequency`` the share of (rated line-phase, step) pairs over
their rating; ``v_min_pu``/``v_max_pu`` the extremes over non-source nodes.

Voltage and line metrics in their own units, never added: ``voltage_violation_frequency``
(= ``violation_frequency``) and ``line_overload_frequency``; ``voltage_violation_days`` and
``line_violation_days``, the share of days with any exceedance; ``voltage_worst_pu`` (p.u.)
and ``line_worst_overload`` (``|I|/rating - 1``), each day's largest exceedance, mean over the
days, with ``_max`` the largest over the days; ``vuf_mean`` and ``vuf_max``, the voltage
unbalance factor ``|V-|/|V+|`` of the three-phase buses over day-steps. (``violation_magnitude``,
the sum of the voltage and line parts, stays for the existing target and tables.)

Non-converged power flows: a day-step whose power flow did not converge has meaningless
voltages and line currents. ``nonconverged`` counts such day-steps and ``nonconverged_share``
is their share of all day-steps; every other metric leaves them out: per-day means (``cost``
and its channels, the violation magnitudes) are over the days whose every power flow converged,
frequencies and extremes (``v_min_pu``, ``v_max_pu``, ``max_line_loading``) over the converged
day-steps. A metric with nothing left to average is NaN.
"""

from __future__ import annotations

import torch

from gridedge_env.rollout import DayRollout, concat, rollout


def metrics(env, roll: DayRollout) -> dict[str, float]:
    """The evaluation metrics of a rollout (keys without a prefix), from converged power flows
    only: per-day means over the days whose every power flow converged, frequencies and
    extremes over the converged day-steps (module docstring); ``nonconverged`` counts the
    day-steps left out and ``nonconverged_share`` is their share.

    Power-flow conditioning, over the converged day-steps (``docs/powerflow.md``,
    conditioning): ``pf_iterations_mean`` / ``pf_iterations_max``, the power flow's iterations
    (``DayRollout.pf_iterations``), and ``pf_contraction_mean`` / ``pf_contraction_max``, its
    observed contraction rate (``DayRollout.pf_contraction``, 1; day-steps without a rate, NaN,
    left out)."""
    cons = roll.constraints
    node = env.node_mask.bool()
    rated = torch.as_tensor(env.powerflow._inv_amps > 0)
    conv = roll.converged.bool()  # (B, T)
    day_ok = conv.all(1)  # (B,)
    v = roll.v_pu[..., node][conv]  # (converged day-steps, nodes)
    v_mag = (cons.v_over_pu + cons.v_under_pu).sum((1, 2))[day_ok]
    line_mag = cons.line_over.sum((1, 2))[day_ok]
    outside = ((cons.v_over_pu > 0) | (cons.v_under_pu > 0))[..., node][conv]
    over = (cons.line_over > 0)[..., rated][conv]
    loading = roll.line_loading[conv]
    pf_iters = roll.pf_iterations[conv].double()
    pf_rate = roll.pf_contraction[conv].double()
    pf_rate = pf_rate[torch.isfinite(pf_rate)]

    def mean(x):
        return float(x.double().mean()) if x.numel() else float("nan")

    def extreme(x, fn):
        return float(fn(x)) if x.numel() else float("nan")

    out = {
        "cost": mean(roll.cost[day_ok]),
        "violation_magnitude": mean(v_mag + line_mag),
        "voltage_violation_magnitude": mean(v_mag),
        "line_violation_magnitude": mean(line_mag),
        "violation_frequency": mean(outside),
        "voltage_violation_frequency": mean(outside),
        "line_overload_frequency": (mean(over) if over.numel() or not bool(conv.any())
                                    else 0.0),
        "v_min_pu": extreme(v, torch.min),
        "v_max_pu": extreme(v, torch.max),
        "max_line_loading": (extreme(loading, torch.max) if loading.numel()
                             or not bool(conv.any()) else 0.0),
        "nonconverged": int((~conv).sum()),
        "nonconverged_share": float((~conv).double().mean()) if conv.numel() else 0.0,
        "clipped_actions": int(roll.clipped_actions.sum()),
        "pf_iterations_mean": mean(pf_iters),
        "pf_iterations_max": extreme(pf_iters, torch.max),
        "pf_contraction_mean": mean(pf_rate),
        "pf_contraction_max": extreme(pf_rate, torch.max),
    }
    out.update({f"cost_{k}": mean(c[day_ok]) for k, c in roll.cost_parts.items()})
    out.update(_own_units(cons, node, day_ok, conv))
    return out


def _own_units(cons, node, day_ok, conv) -> dict[str, float]:
    """Voltage and line metrics in their own units (module docstring), over the days (day-steps)
    whose power flows converged."""
    v_exc = torch.maximum(cons.v_over_pu, cons.v_under_pu)[..., node][day_ok]  # (D, T, n)
    line = cons.line_over[day_ok]  # (D, T, r)
    v_worst = v_exc.flatten(1).amax(1) if v_exc.numel() else v_exc.new_zeros(len(v_exc))
    l_worst = line.flatten(1).amax(1) if line.numel() else line.new_zeros(len(line))
    vuf = cons.unbalance[conv] if cons.unbalance is not None else None

    def stat(x, fn):
        return float(fn(x.double())) if x is not None and x.numel() else float("nan")

    return {"voltage_violation_days": stat(v_worst > 0, torch.mean),
            "line_violation_days": stat(l_worst > 0, torch.mean),
            "voltage_worst_pu": stat(v_worst, torch.mean),
            "voltage_worst_pu_max": stat(v_worst, torch.max),
            "line_worst_overload": stat(l_worst, torch.mean),
            "line_worst_overload_max": stat(l_worst, torch.max),
            "vuf_mean": stat(vuf, torch.mean),
            "vuf_max": stat(vuf, torch.max)}


@torch.no_grad()
def evaluate(env, policy, days, chunk: int = 64) -> tuple[dict[str, float], DayRollout | None]:
    """Metrics of ``policy`` (a rollout policy, e.g. a ``StackedPolicy`` or :func:`no_control`)
    over ``days``, in chunks of ``chunk`` days; also returns the whole rollout (the chunks
    concatenated)."""
    days = torch.as_tensor(days, dtype=torch.long)
    rolls = [rollout(env, c, policy) for c in days.split(chunk)]
    roll = rolls[0] if len(rolls) == 1 else concat(rolls)
    return metrics(env, roll), roll


def per_day(env, roll: DayRollout) -> dict:
    """Per-day values ``(D,)`` (float64 numpy arrays, one entry per day of ``roll``, in its
    order) of the metrics whose :func:`metrics` value is a mean over days, with the same
    definitions (module docstring): ``cost`` (GBP/day), ``voltage_violation_magnitude`` (p.u. x
    node-steps), ``line_violation_magnitude`` (overload x line-phase-steps), ``voltage_worst_pu``
    (the day's largest voltage exceedance, p.u.) and ``line_worst_overload`` (the day's largest
    ``|I|/rating - 1``). A day with any non-converged power flow is NaN in every array, so
    ``np.nanmean`` of each equals :func:`metrics`' value (tested). For box plots over test days
    (``baselines.compare_plots.box_plots``)."""
    cons = roll.constraints
    node = env.node_mask.bool()
    day_ok = roll.converged.bool().all(1)  # (D,)
    v_exc = torch.maximum(cons.v_over_pu, cons.v_under_pu)[..., node].flatten(1)  # (D, T n)
    line = cons.line_over.flatten(1)  # (D, T r)
    values = {
        "cost": roll.cost,
        "voltage_violation_magnitude": (cons.v_over_pu + cons.v_under_pu).sum((1, 2)),
        "line_violation_magnitude": cons.line_over.sum((1, 2)),
        "voltage_worst_pu": v_exc.amax(1) if v_exc.shape[1] else v_exc.new_zeros(len(v_exc)),
        "line_worst_overload": line.amax(1) if line.shape[1] else line.new_zeros(len(line)),
    }
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return {k: torch.where(day_ok.cpu(), x.detach().double().cpu(), nan).numpy()
            for k, x in values.items()}
