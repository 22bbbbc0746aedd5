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

Across processes (:mod:`.distributed`) each rank tallies its own days (:func:`tally`: sums,
counts and maxima, which add up over disjoint sets of days), the tallies are all-reduced and
every rank finishes the same metrics (:func:`finish`).
"""

from __future__ import annotations

import math

import torch

from gridedge_env.rollout import DayRollout, concat, rollout

from . import distributed


def metrics(env, roll: DayRollout, *, across_ranks: bool = False) -> dict[str, float]:
    """The evaluation metrics of a rollout (keys without a prefix), from converged power flows
    only: per-day means over the days whose every power flow converged, frequencies and
    extremes over the converged day-steps (module docstring); ``nonconverged`` counts the
    day-steps left out and ``nonconverged_share`` is their share.

    Power-flow conditioning, over the converged day-steps (``docs/powerflow.md``,
    conditioning): ``pf_iterations_mean`` / ``pf_iterations_max``, the power flow's iterations
    (``DayRollout.pf_iterations``), and ``pf_contraction_mean`` / ``pf_contraction_max``, its
    observed contraction rate (``DayRollout.pf_contraction``, 1; day-steps without a rate, NaN,
    left out).

    ``across_ranks``: ``roll`` is this rank's share of the days (:mod:`.distributed`); the
    metrics are those of all ranks' days together (sums, counts and extremes all-reduced: two
    collectives). Nothing changes in one process."""
    sums, maxima = tally(env, roll)
    if across_ranks:
        distributed.all_sum(sums)
        distributed.all_max(maxima)
    return finish(sums.tolist(), maxima.tolist(), list(roll.cost_parts))


SUMS = ("cost", "violation_magnitude", "voltage_violation_magnitude", "line_violation_magnitude",
        "outside", "over", "nonconverged", "clipped_actions", "pf_iterations", "pf_rate",
        "voltage_violation_days", "line_violation_days", "voltage_worst_pu",
        "line_worst_overload", "vuf", "n_days_ok", "n_conv", "n_day_steps", "n_node_steps", "n_over",
        "n_loading", "n_pf_rate", "n_vuf")
"""What :func:`tally` sums, in its order: sums of each mean's terms, then the counts (``n_``)."""
MAXIMA = ("v_min_pu", "v_max_pu", "max_line_loading", "pf_iterations_max", "pf_contraction_max",
          "voltage_worst_pu_max", "line_worst_overload_max", "vuf_max")
"""What :func:`tally` takes the maximum of, in its order (``v_min_pu`` negated); ``-inf`` when
there is nothing to take it of."""


def tally(env, roll: DayRollout) -> tuple[torch.Tensor, torch.Tensor]:
    """The sufficient statistics of :func:`metrics` for ``roll``'s days, float64 on the
    rollout's device: sums and counts ``(len(SUMS) + parts,)`` (the cost parts' sums last, in
    ``roll.cost_parts`` order) and maxima ``(len(MAXIMA),)``, which add up (take the maximum)
    over disjoint sets of days."""
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
    v_exc = torch.maximum(cons.v_over_pu, cons.v_under_pu)[..., node][day_ok]  # (D, T, n)
    line = cons.line_over[day_ok]  # (D, T, r)
    v_worst = v_exc.flatten(1).amax(1) if v_exc.numel() else v_exc.new_zeros(len(v_exc))
    l_worst = line.flatten(1).amax(1) if line.numel() else line.new_zeros(len(line))
    vuf = cons.unbalance[conv] if cons.unbalance is not None else v.new_zeros(0)
    f64 = dict(dtype=torch.float64, device=conv.device)

    def total(x):
        return x.double().sum()

    def count(x):
        return torch.tensor(float(x.numel()), **f64)

    def top(x):
        return x.double().max() if x.numel() else torch.tensor(-math.inf, **f64)

    sums = [total(roll.cost[day_ok]), total(v_mag + line_mag), total(v_mag), total(line_mag),
            total(outside), total(over), total(~conv), total(roll.clipped_actions),
            total(pf_iters), total(pf_rate), total(v_worst > 0), total(l_worst > 0),
            total(v_worst), total(l_worst), total(vuf), total(day_ok), total(conv), count(conv),
            count(outside), count(over), count(loading), count(pf_rate), count(vuf)]
    sums += [total(c[day_ok]) for c in roll.cost_parts.values()]
    maxima = [top(-v), top(v), top(loading), top(pf_iters), top(pf_rate), top(v_worst),
              top(l_worst), top(vuf)]
    return torch.stack(sums), torch.stack(maxima)


def finish(sums: list[float], maxima: list[float], parts: list[str]) -> dict[str, float]:
    """:func:`metrics` from :func:`tally`'s statistics (as lists), with its NaN and zero rules
    for empty sets; ``parts``: the cost parts' names."""
    s = dict(zip(SUMS, sums, strict=False))
    mx = dict(zip(MAXIMA, maxima, strict=True))
    n_days, n_conv = s["n_days_ok"], s["n_conv"]
    nan = float("nan")

    def mean(key, n):
        return s[key] / n if n else nan

    def extreme(key, n):
        return mx[key] if n else nan

    return {
        "cost": mean("cost", n_days),
        "violation_magnitude": mean("violation_magnitude", n_days),
        "voltage_violation_magnitude": mean("voltage_violation_magnitude", n_days),
        "line_violation_magnitude": mean("line_violation_magnitude", n_days),
        "violation_frequency": mean("outside", s["n_node_steps"]),
        "voltage_violation_frequency": mean("outside", s["n_node_steps"]),
        # no rated line: no overload, unless there is nothing converged at all (NaN)
        "line_overload_frequency": (mean("over", s["n_over"]) if s["n_over"] or not n_conv
                                    else 0.0),
        "v_min_pu": -mx["v_min_pu"] if s["n_node_steps"] else nan,
        "v_max_pu": extreme("v_max_pu", s["n_node_steps"]),
        "max_line_loading": (extreme("max_line_loading", s["n_loading"]) if s["n_loading"]
                             or not n_conv else 0.0),
        "nonconverged": int(s["nonconverged"]),
        "nonconverged_share": mean("nonconverged", s["n_day_steps"]) if s["n_day_steps"] else 0.0,
        "clipped_actions": int(s["clipped_actions"]),
        "pf_iterations_mean": mean("pf_iterations", n_conv),
        "pf_iterations_max": extreme("pf_iterations_max", n_conv),
        "pf_contraction_mean": mean("pf_rate", s["n_pf_rate"]),
        "pf_contraction_max": extreme("pf_contraction_max", s["n_pf_rate"]),
        **{f"cost_{k}": (x / n_days if n_days else nan)
           for k, x in zip(parts, sums[len(SUMS):], strict=True)},
        # voltage and line metrics in their own units (module docstring)
        "voltage_violation_days": mean("voltage_violation_days", n_days),
        "line_violation_days": mean("line_violation_days", n_days),
        "voltage_worst_pu": mean("voltage_worst_pu", n_days),
        "voltage_worst_pu_max": extreme("voltage_worst_pu_max", n_days),
        "line_worst_overload": mean("line_worst_overload", n_days),
        "line_worst_overload_max": extreme("line_worst_overload_max", n_days),
        "vuf_mean": mean("vuf", s["n_vuf"]),
        "vuf_max": extreme("vuf_max", s["n_vuf"]),
    }


@torch.no_grad()
def evaluate(env, policy, days, chunk: int = 64, *,
             across_ranks: bool = False) -> tuple[dict[str, float], DayRollout | None]:
    """Metrics of ``policy`` (a rollout policy, e.g. a ``StackedPolicy`` or :func:`no_control`)
    over ``days``, in chunks of ``chunk`` days; also returns the whole rollout (the chunks
    concatenated). ``across_ranks``: every rank passes the same ``days`` and rolls out its
    block of them (:func:`.distributed.shard`); the metrics are all ranks' together, the
    rollout this rank's (nothing changes in one process)."""
    days = torch.as_tensor(days, dtype=torch.long)
    if across_ranks:
        days = days[distributed.shard(len(days))]
    rolls = [rollout(env, c, policy) for c in days.split(chunk)]
    roll = rolls[0] if len(rolls) == 1 else concat(rolls)
    return metrics(env, roll, across_ranks=across_ranks), roll


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
