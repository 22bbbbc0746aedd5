"""Readers for three published profile formats, converted to the schema of :mod:`.series`.

Each returns a validated :class:`~gridedge_env.data.series.TimeSeries` (the same timestamp,
number and magnitude checks as :func:`~gridedge_env.data.series.read_profile_csv`), with the
unit conversions stated here and nothing else changed:

* :func:`read_lcl_dtou`: Low Carbon London dynamic time-of-use trial 2013 (mean household
  consumption, kWh per half-hour -> kW, and the real dToU price signal, GBP/kWh).
* :func:`read_simbench_csv`: SimBench household / PV profiles at 30 min, normalised
  (household: annual 15-min peak = 1; PV: per unit installed) -> kW and kW/kWp.
* :func:`read_citylearn_csv`: CityLearn Challenge 2022 homes, hourly; 30 min only with an
  explicit ``upsample``.

The compact CSV extracts these read are described in ``shared/data/profiles/README.md``; they
are references for tests and users, not shipped with the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from .series import (
    CheckUnits,
    ProfileDataError,
    TimeSeries,
    check_magnitudes,
    check_regular,
    parse_numbers,
    parse_timestamps,
    read_table,
)

SIMBENCH_HOUSEHOLDS = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-L")
"""SimBench household (H0) profiles used by default. ``H0-H`` is left out: it is nearly flat
(mean 0.66 of its peak) and no load of the SimBench data set uses it."""

CITYLEARN_START = np.datetime64("2016-07-31T23:00", "m")
"""Start of the first row of the CityLearn 2022 extract: its first row is ``month`` 7, ``hour``
24 (the hour ending at midnight of 31 July 2016); the next is 1 August, hour 1."""

SIMBENCH_PEAK_KW = 3.0
"""Scale of a SimBench household profile, kW: the median ``pLoad`` (0.003 MW) of the loads with
an H0 profile in SimBench's ``1-complete_data-mixed-all-0-sw/Load.csv`` (same for all five)."""


def _require(header: list[str], names: list[str], where: str):
    missing = [n for n in names if n not in header]
    if missing:
        raise ProfileDataError(f"{where}: missing column(s) {', '.join(repr(m) for m in missing)}"
                               f" (columns: {', '.join(header)})")


def read_lcl_dtou(
    path: str | Path, *, groups: tuple[str, ...] = ("all", "flex", "noflex"),
    check_units: CheckUnits = "error",
) -> TimeSeries:
    """Read ``uk_lcl_dtou_2013_halfhourly.csv`` (LCL dToU trial, London, 2013, 30 min).

    Columns produced: ``demand_kw_mean_<group>`` = ``mean_kwh_<group>`` / 0.5 h (mean household
    demand in kW over the half-hour) for each group, and ``price_gbp_per_kwh`` (the real
    day-ahead dToU price signal: 0.0399 / 0.1176 / 0.6720 GBP/kWh). The group totals
    (``sum_kwh_*``, hundreds of households) are not read. Timestamps: fixed clock (GMT).
    """
    where = str(path)
    header, rows = read_table(path)
    cols = ["timestamp", "price_gbp_per_kwh"] + [f"mean_kwh_{g}" for g in groups]
    _require(header, cols, where)
    idx = {h: j for j, h in enumerate(header)}
    stamps, off = parse_timestamps([r[idx["timestamp"]] for r in rows], where)
    check_regular(stamps, 30, where)
    data = {}
    for g in groups:
        kwh = parse_numbers([r[idx[f"mean_kwh_{g}"]] for r in rows], where, f"mean_kwh_{g}")
        name = f"demand_kw_mean_{g}"
        data[name] = kwh / 0.5
        check_magnitudes(name, data[name], where, check_units)
    price = parse_numbers([r[idx["price_gbp_per_kwh"]] for r in rows], where, "price_gbp_per_kwh")
    check_magnitudes("price_gbp_per_kwh", price, where, check_units)
    data["price_gbp_per_kwh"] = price
    return TimeSeries(stamps, data, 30, where, off,
                      notes=("LCL dToU 2013: kWh per half-hour / 0.5 h = kW",))


def read_simbench_csv(
    path: str | Path, *, households: tuple[str, ...] = SIMBENCH_HOUSEHOLDS,
    peak_kw: float = SIMBENCH_PEAK_KW, pv: bool = True, check_units: CheckUnits = "error",
) -> TimeSeries:
    """Read ``simbench_2016_household_pv_30min.csv`` (SimBench profiles, 2016, 30 min).

    ``demand_kw_<H0-x>`` = ``<H0-x>_pload`` (normalised, annual 15-min peak 1) * ``peak_kw``;
    ``pv_kw_per_kwp_<PVn>`` = ``PVn`` (already per unit installed) when ``pv``. Reactive
    ``_qload`` columns are not read.

    Clock: upstream labels (``time_local``, ``DD.MM.YYYY HH:MM``) are German local time with
    daylight saving, but the series has exactly ``366 * 48`` values with the DST days
    relabelled, not missing or doubled. The rows are therefore taken in file order on a fixed
    clock starting at the first label (2016-01-01 00:00) -- the same convention as the bundled
    profiles; the PV noon of the data then sits near 11:20, i.e. the fixed clock is close to
    UTC. The first label and the row count are checked.
    """
    where = str(path)
    header, rows = read_table(path)
    cols = ["time_local"] + [f"{h}_pload" for h in households]
    pv_cols = [c for c in header if c.startswith("PV")] if pv else []
    _require(header, cols, where)
    if pv and not pv_cols:
        raise ProfileDataError(f"{where}: no PV columns (PV1..PV8)")
    if rows[0][header.index("time_local")].strip() != "01.01.2016 00:00":
        raise ProfileDataError(f"{where}: column 'time_local', line 2: expected "
                               "'01.01.2016 00:00' (SimBench 2016)")
    if len(rows) != 366 * 48:
        raise ProfileDataError(f"{where}: {len(rows)} data lines, expected {366 * 48} "
                               "(SimBench 2016 at 30 min)")
    stamps = np.datetime64("2016-01-01T00:00", "m") + np.arange(len(rows)) * np.timedelta64(30, "m")
    idx = {h: j for j, h in enumerate(header)}
    data = {}
    for h in households:
        x = parse_numbers([r[idx[f"{h}_pload"]] for r in rows], where, f"{h}_pload") * peak_kw
        data[f"demand_kw_{h}"] = x
        check_magnitudes(f"demand_kw_{h}", x, where, check_units)
    for c in pv_cols:
        x = parse_numbers([r[idx[c]] for r in rows], where, c)
        data[f"pv_kw_per_kwp_{c}"] = x
        check_magnitudes(f"pv_kw_per_kwp_{c}", x, where, check_units)
    return TimeSeries(stamps, data, 30, where, None, notes=(
        f"SimBench 2016: household = normalised profile * {peak_kw:g} kW; file order on a "
        "fixed clock from 2016-01-01 00:00",))


def read_citylearn_csv(
    path: str | Path,
    dt_minutes: int = 30,
    *,
    upsample: Literal["hold", "linear"] | None = None,
    buildings: tuple[int, ...] | None = None,
    gbp_per_usd: float | None = None,
    check_units: CheckUnits = "error",
) -> TimeSeries:
    """Read ``citylearn2022_fontana_hourly.csv`` (17 homes, Fontana CA, 2016-17, hourly).

    ``demand_kw_b<N>`` = ``b<N>_load_kwh`` (kWh in the hour = mean kW); ``pv_kw_per_kwp_b<N>``
    = ``b<N>_pv_w_per_kw`` / 1000. The tariff column is in USD: it becomes
    ``price_gbp_per_kwh`` only if ``gbp_per_usd`` (an exchange rate) is given, else it is not
    read. Timestamps: hourly from 2016-07-31 23:00 (:data:`CITYLEARN_START`) in file order; the
    file's ``month`` and ``hour`` (hour-ending) columns are checked against that calendar. The
    series thus starts and ends with a partial day: use ``partial_days="drop"`` in
    :func:`~gridedge_env.data.profiles_from_series` (364 whole days remain).

    The file is hourly: ``dt_minutes=60`` reads it as it is; ``dt_minutes=30`` requires
    ``upsample="hold"`` (each hour's mean repeated: keeps energy) or ``"linear"``
    (interpolation between hour centres); anything else is an error.
    """
    where = str(path)
    header, rows = read_table(path)
    _require(header, ["step", "month", "hour"], where)
    if buildings is None:
        buildings = tuple(sorted(int(c[1:].split("_")[0]) for c in header
                                 if c.startswith("b") and c.endswith("_load_kwh")))
    cols = [f"b{b}_load_kwh" for b in buildings] + [f"b{b}_pv_w_per_kw" for b in buildings]
    _require(header, cols + (["price_usd_per_kwh"] if gbp_per_usd is not None else []), where)
    if dt_minutes == 60:
        if upsample is not None:
            raise ValueError("upsample only applies with dt_minutes < 60")
        k = 1
    elif dt_minutes in (30, 20, 15, 10, 5) and upsample in ("hold", "linear"):
        k = 60 // dt_minutes
    elif dt_minutes in (30, 20, 15, 10, 5):
        raise ProfileDataError(
            f"{where}: the file is hourly; reading it at {dt_minutes} min invents data. Pass "
            "upsample='hold' (repeat each hour, keeps energy) or 'linear', or dt_minutes=60.")
    else:
        raise ValueError(f"dt_minutes must be 60 or divide 60, got {dt_minutes}")
    n = len(rows)
    hourly = CITYLEARN_START + np.arange(n) * np.timedelta64(60, "m")
    idx = {h: j for j, h in enumerate(header)}
    # hour-ending convention: the row starting at hh:00 has "hour" hh + 1 (1..24) and the month
    # of its start; both are checked against the calendar from CITYLEARN_START
    month = parse_numbers([r[idx["month"]] for r in rows], where, "month").astype(int)
    hour = parse_numbers([r[idx["hour"]] for r in rows], where, "hour").astype(int)
    cal_month = (hourly.astype("datetime64[M]").astype(int) % 12) + 1
    cal_hour = (hourly - hourly.astype("datetime64[D]")).astype(np.int64) // 60 + 1
    for name, got, want in (("month", month, cal_month), ("hour", hour, cal_hour)):
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = int(bad[0])
            raise ProfileDataError(
                f"{where}: column '{name}', line {i + 2}: {got[i]} but the hourly calendar "
                f"from {CITYLEARN_START} (hour ending) gives {want[i]} ({hourly[i]})")
    data = {}
    for b in buildings:
        data[f"demand_kw_b{b}"] = parse_numbers(
            [r[idx[f"b{b}_load_kwh"]] for r in rows], where, f"b{b}_load_kwh")
        data[f"pv_kw_per_kwp_b{b}"] = parse_numbers(
            [r[idx[f"b{b}_pv_w_per_kw"]] for r in rows], where, f"b{b}_pv_w_per_kw") / 1000.0
    if gbp_per_usd is not None:
        data["price_gbp_per_kwh"] = parse_numbers(
            [r[idx["price_usd_per_kwh"]] for r in rows], where, "price_usd_per_kwh") * gbp_per_usd
    for c, x in data.items():
        check_magnitudes(c, x, where, check_units)
    notes = ["CityLearn 2022: kWh in the hour = kW; W/kW / 1000 = kW/kWp"]
    if k > 1:
        pos = (np.arange(n * k) + 0.5) / k - 0.5
        for c, x in data.items():
            data[c] = np.repeat(x, k) if upsample == "hold" else np.interp(pos, np.arange(n), x)
        notes.append(f"upsampled 60 -> {dt_minutes} min ({upsample})")
    stamps = hourly[0] + np.arange(n * k) * np.timedelta64(dt_minutes, "m")
    return TimeSeries(stamps, data, dt_minutes, where, None, notes=tuple(notes))
