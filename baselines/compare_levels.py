"""What each method of a comparison needs to reach a level: the cross-level matrix, the time to
a list of shares the reader names, and the Student-t half-width every mean carries.

Both read the runs' validation histories through :func:`gradmap_agents.protocol.time_to`, the
function that scores each run, so a table of times to common levels is a command
(``gradmap-compare ... --shares 0.9,0.92,0.93``) and no longer a script beside the results.
The protocol's own levels (25/50/75 % of the cost gap) stay the ones fixed before any run;
``--shares`` adds levels chosen by the reader, after the runs if need be, and the docs that
quote them say so (``docs/protocol.md``).
"""

from __future__ import annotations

import math
import statistics

import scipy.stats

from gradmap_agents import protocol
from gradmap_agents.protocol import Levels

AXES = ("wall", "gradients")
"""Axes of the time-to-shares table: training wall seconds and environment gradients."""


def t_halfwidth(values: list[float], level: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean of ``values`` (``None``
    for fewer than 2)."""
    n = len(values)
    if n < 2:
        return None
    return float(scipy.stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n))


def cross_levels(results: list[dict], rows: list[dict], learned: tuple[str, ...], lv: Levels,
                 penalised: bool) -> dict:
    """``{a: {b: mean wall seconds a needs to reach b's mean final captured share}}`` (``None``
    where a seed of ``a`` never reaches it or ``b`` never became feasible); ``penalised``: the
    share of the penalised objective (``final_penalised``), defined feasible or not."""
    final, key = {}, "final_penalised" if penalised else "final_captured"
    for m in dict.fromkeys(r["method"] for r in rows if r["method"] in learned):
        vals = [r.get(key) for r in rows if r["method"] == m and not r["failed"]]
        final[m] = statistics.mean(vals) if vals and None not in vals else None
    out = {}
    for a in final:
        runs = [r for r in results if r["method"] == a and "failed" not in r]
        out[a] = {}
        for b, share in final.items():
            times = [protocol.time_to(r["history"], lv, share, "wall", penalised)
                     for r in runs] if share is not None else [None]
            out[a][b] = statistics.mean(times) if times and None not in times else None
    return out


def matrix_markdown(cross: dict | None, what: str) -> str:
    """A cross-level matrix (:func:`cross_levels`) as a Markdown table."""
    if not cross:
        return ""
    names = list(cross)
    return (f"\n\nWall seconds each method (row) needs to reach every method's (column) {what} "
            "(– : not reached by every seed):\n\n| | " + " | ".join(names) + " |\n"
            + "| --- " * (len(names) + 1) + "|\n"
            + "\n".join(f"| {a} | " + " | ".join(
                "–" if cross[a][b] is None else f"{cross[a][b]:.0f}" for b in names) + " |"
                for a in names))


def time_to_shares(results: list[dict], learned: tuple[str, ...], gradient: tuple[str, ...],
                   lv: Levels, shares: tuple[float, ...], penalised: bool) -> dict:
    """For each share ``s`` and learning method: over its seeds, how many reach ``s`` and, where
    every seed does, the mean and 95 % half-width of the training wall seconds (and, for the
    methods in ``gradient``, environment gradients) to the first validation point at ``s`` or
    above, and the ratio of each mean to the first learning method's (> 1: slower).
    ``penalised``: shares of the penalised objective ``J`` (defined feasible or not); otherwise
    feasible captured shares (P2).

    Returns ``{"penalised": bool, "reference": method, "shares": {str(s): {method: cell}}}``,
    a cell ``{"runs", "reached", "wall", "wall_ci95", "wall_ratio", "gradients", ...}``."""
    methods = [m for m in dict.fromkeys(r["method"] for r in results) if m in learned]
    out = {"penalised": penalised, "reference": methods[0] if methods else None, "shares": {}}
    for s in shares:
        cells = {}
        for m in methods:
            runs = [r for r in results if r["method"] == m and "failed" not in r]
            cell = {"runs": len(runs)}
            for axis in AXES:  # every axis reaches s at the same validation point
                reached = [x for x in (protocol.time_to(r["history"], lv, s, axis, penalised)
                                       for r in runs) if x is not None]
                whole = bool(reached) and len(reached) == len(runs) and (
                    axis == "wall" or m in gradient)  # PPO computes no environment gradient
                cell[axis] = statistics.mean(reached) if whole else None
                cell[f"{axis}_ci95"] = t_halfwidth(reached) if whole else None
            cell["reached"] = len(reached)
            cells[m] = cell
        ref = cells.get(out["reference"], {})
        for cell in cells.values():
            for axis in AXES:
                a, b = cell[axis], ref.get(axis)
                cell[f"{axis}_ratio"] = a / b if a is not None and b else None
        out["shares"][repr(float(s))] = cells
    return out


def _mean(cell: dict, axis: str, fmt: str) -> str:
    hw = cell[f"{axis}_ci95"]
    return format(cell[axis], fmt) + ("" if hw is None else f" ± {format(hw, fmt)}")


def _times(cell: dict) -> str:
    if cell["wall"] is None:
        return "never" if cell["reached"] == 0 else f"{cell['reached']} of {cell['runs']} seeds"
    text = _mean(cell, "wall", ".1f") + " s"
    return text + (f" ({_mean(cell, 'gradients', '.0f')})" if cell["gradients"] is not None else "")


def _ratio(cell: dict) -> str:
    if cell["wall_ratio"] is None:
        return "–"
    g = cell["gradients_ratio"]
    return f"{cell['wall_ratio']:.2f}×" + ("" if g is None else f" ({g:.2f}×)")


def shares_markdown(block: dict | None) -> str:
    """A :func:`time_to_shares` block as a Markdown table: wall seconds (environment gradients)
    of each method to each share, and its ratio to the reference method."""
    if not block or not block["shares"]:
        return ""
    ref = block["reference"]
    methods = list(next(iter(block["shares"].values())))
    others = [m for m in methods if m != ref]
    what = ("share of the penalised objective" if block["penalised"]
            else "feasible captured share of the cost gap")
    head = (f"\n\nTraining wall seconds (environment gradients) to each {what} named with "
            f"`--shares`, mean ± 95 % half-width where every seed reaches it, and the ratio of "
            f"the means to {ref}'s (wall (gradients); > 1: slower):\n\n| share | "
            + " | ".join(methods + [f"{m} / {ref}" for m in others]) + " |\n"
            + "| --- " * (1 + len(methods) + len(others)) + "|\n")
    return head + "\n".join(
        f"| {float(s):g} | " + " | ".join([_times(cells[m]) for m in methods]
                                          + [_ratio(cells[m]) for m in others]) + " |"
        for s, cells in block["shares"].items())
