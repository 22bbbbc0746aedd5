#!/usr/bin/env python3
"""Convert the LCL dToU extract into the tariff schedule shipped with the package.

    python scripts/build_dtou_schedule.py                # from ../shared/data/profiles/
    python scripts/build_dtou_schedule.py --csv PATH     # from another copy of the extract
    python scripts/build_dtou_schedule.py --plot-only    # only redraw docs/img/scenario_dtou_prices.png

Input: ``uk_lcl_dtou_2013_halfhourly.csv`` (GPL-3.0 compilation, ``shared/data/profiles/README.md``),
read and checked with :func:`gridedge_env.data.read_lcl_dtou`. Only its ``price_gbp_per_kwh``
column is used: every half-hour of 2013 is mapped to one of the trial's three levels (an error
names any other value), and written as
``gridedge_env/data/profiles/lcl_dtou_2013_schedule.json``: the three levels and one line of 48
codes (``L`` low, ``N`` normal, ``H`` high) per day. No demand column, nothing else of the
compilation, is written (the licence decision: docs/data.md). The output is byte-identical on
rebuild; the input's SHA-256 is recorded in it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from gridedge_env.data import (
    LCL_DTOU_2013,
    LCL_DTOU_LEVELS_GBP_PER_KWH,
    load_bundled,
    read_lcl_dtou,
)
from gridedge_env.data.plot import plot_dtou_prices
from gridedge_env.data.schedule import PriceSchedule, schedule_from_prices, write_price_schedule

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT.parent / "shared" / "data" / "profiles" / "uk_lcl_dtou_2013_halfhourly.csv"
OUT = LCL_DTOU_2013.schedule_file
FIGURE = ROOT / "docs" / "img" / "scenario_dtou_prices.png"
CODES = {"low": "L", "normal": "N", "high": "H"}

META = {
    "source": (
        "UK Power Networks, Low Carbon London (LCL) project, dynamic time-of-use (dToU) pricing "
        "trial, 2013 (with EDF Energy): the tariff schedule announced a day ahead to the 1,122 "
        "trial households. Published with the LCL smart-meter data on the London Datastore, "
        "'SmartMeter Energy Consumption Data in London Households' "
        "(https://data.london.gov.uk/dataset/smartmeter-energy-use-data-in-london-households). "
        "The trial's data release is described in UK Data Service study 7857, 'Low Carbon "
        "London Project: Data from the Dynamic Time-of-Use Electricity Pricing Trial, 2013' "
        "(doi:10.5255/UKDA-SN-7857-2)."
    ),
    "notice": (
        "Only the tariff schedule is here: three price levels and which level each half-hour "
        "of 2013 had, re-encoded by scripts/build_dtou_schedule.py. It was read from the "
        "price column of a GPL-3.0 compilation (groupoasys/Data_Low_Carbon_London, "
        "Data_features.xlsx, sheet DTOU_2013), none of whose own content (household demand "
        "aggregates, temperature) is included; see docs/data.md for the licence decision."
    ),
    "clock": "fixed clock without daylight saving (GMT), as the LCL files; days 00:00-24:00",
}


def build(csv: Path) -> PriceSchedule:
    """The schedule of the extract at ``csv`` (levels checked against the trial's three)."""
    series = read_lcl_dtou(csv, groups=("all",))
    T = 48
    if str(series.timestamps[0]) != "2013-01-01T00:00" or len(series) != 365 * T:
        sys.exit(f"{csv}: expected 2013-01-01 00:00 and 365 x 48 rows, got {series.timestamps[0]} "
                 f"and {len(series)} rows")
    dates = tuple(str(d) for d in series.timestamps[::T].astype("datetime64[D]"))
    meta = dict(META, derived_from={"file": csv.name,
                                    "sha256": hashlib.sha256(csv.read_bytes()).hexdigest()})
    return schedule_from_prices("Low Carbon London dToU tariff schedule, 2013", dates,
                                series.columns["price_gbp_per_kwh"], LCL_DTOU_LEVELS_GBP_PER_KWH,
                                CODES, 30, meta, where=str(csv))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV, help="the LCL dToU extract")
    ap.add_argument("--out", type=Path, default=OUT, help="schedule file to write")
    ap.add_argument("--plot", action="store_true", help=f"also redraw {FIGURE.relative_to(ROOT)}")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the figure")
    args = ap.parse_args(argv)
    if not args.plot_only:
        if not args.csv.is_file():
            sys.exit(f"{args.csv}: no such file (pass --csv PATH)")
        sched = write_price_schedule(build(args.csv), args.out)
        data = sched.read_bytes()
        print(f"wrote {sched} ({len(data):,} B, sha256 {hashlib.sha256(data).hexdigest()})")
    if args.plot or args.plot_only:
        print("drew", plot_dtou_prices(FIGURE, LCL_DTOU_2013.schedule, load_bundled(),
                                        load_bundled(tariff=LCL_DTOU_2013)))


if __name__ == "__main__":
    main()
