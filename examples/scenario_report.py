"""No-control statistics and voltage envelopes of the registered scenarios (for docs/scenarios.md).

    python examples/scenario_report.py [--out docs/img] [--scenarios A,B] [--convergence] [--json]

For each scenario: violation frequency and magnitude over the test days with no control
(batteries idle, generators off, heat pumps on a thermostat), worst voltages, and a plot of the
voltage envelope (min / max over nodes at every step) of the worst test day and of all test days.
With ``--convergence``, also the power flow over every day-step of the year (all days, no control):
day-steps flagged unconverged and the iterations they took.
"""

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gridedge_env.analysis import (  # noqa: E402
    no_control_convergence,
    no_control_voltages,
    violation_stats,
)
from gridedge_env.scenarios import SCENARIOS, build_scenario  # noqa: E402


def envelope_plot(name, scn, out: Path) -> Path:
    days = scn.split.test
    v, _, _ = no_control_voltages(scn, days)
    keep = torch.ones(scn.feeder.n_nodes, dtype=torch.bool)
    keep[torch.as_tensor(scn.feeder.source_nodes)] = False
    v = v[..., keep]
    lim = scn.config.limits
    excess = (torch.relu(v - lim.v_max_pu) + torch.relu(lim.v_min_pu - v)).flatten(1).sum(1)
    worst = int(excess.argmax())
    hours = torch.arange(v.shape[1]) * scn.config.data.dt_h
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.fill_between(hours, v.amin(-1).amin(0), v.amax(-1).amax(0), color="0.85",
                    label=f"all {len(days)} test days (min..max)")
    ax.fill_between(hours, v[worst].amin(-1), v[worst].amax(-1), color="tab:blue", alpha=0.5,
                    label=f"worst test day {scn.profiles.dates[int(days[worst])]}")
    for y in (lim.v_min_pu, lim.v_max_pu):
        ax.axhline(y, color="tab:red", ls="--", lw=1)
    ax.set(xlabel="hour of day", ylabel="node voltage (p.u.)", xlim=(0, 24),
           title=f"{name}: voltage envelope with no control")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = out / f"scenario_{name}_envelope.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated registered scenarios (default: all)")
    ap.add_argument("--convergence", action="store_true",
                    help="also solve every day-step of every day with no control")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {}
    for name in args.scenarios.split(","):
        scn = build_scenario(SCENARIOS[name])
        stats = violation_stats(scn, scn.split.test).as_dict()
        stats["plot"] = str(envelope_plot(name, scn, args.out))
        report[name] = stats
        print(f"{name}: {stats['share_days_violating']:.0%} of {stats['n_days']} test days "
              f"violate (over {stats['share_days_overvoltage']:.0%}, under "
              f"{stats['share_days_undervoltage']:.0%}, line {stats['share_days_line_overload']:.0%})"
              f"; node-step frequency {stats['node_step_frequency']:.3%}; voltages "
              f"{stats['v_min_pu']:.4f}..{stats['v_max_pu']:.4f} p.u.; max line loading "
              f"{stats['max_line_loading']:.2f}")
        if args.convergence:
            t0, c0 = time.perf_counter(), time.process_time()
            conv = no_control_convergence(scn, torch.arange(scn.profiles.n_days))
            conv |= {"wall_s": round(time.perf_counter() - t0, 1),
                     "cpu_s": round(time.process_time() - c0, 1)}
            stats["convergence"] = conv
            print(f"{name}: every day-step: {conv}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
