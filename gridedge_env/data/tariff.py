"""Time-of-use tariffs: import and export prices as a function of the clock time of day.

The default, :data:`OCTOPUS_FLUX_2023`, is Octopus Energy's *Flux* import/export tariff for
homes with solar and batteries, with the rates published in May 2023 (sources and caveats in
``docs/data.md``): three bands on the clock, off-peak 02:00-05:00, peak 16:00-19:00, day rate
otherwise, and an export rate 11 p/kWh below the import rate in each band. The bands are applied
on the profiles' own clock (the bundled profiles use a fixed clock without daylight saving).

Prices that change from day to day: :class:`DayAheadTariff` takes the import price of each day
from a dated day-ahead schedule (:mod:`.schedule`), aligned to the profiles' dates by
:func:`align_days`; :data:`LCL_DTOU_2013` is the real Low Carbon London dynamic time-of-use
schedule of 2013 shipped with the package. Every tariff has ``prices_on(dates, dt_minutes,
dtype) -> (import, export)``; :data:`TARIFFS` names them for scenario configs. Other real
price series enter through the CSV loaders as a ``price_gbp_per_kwh`` column; see
:mod:`gridedge_env.data.adapters`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .schedule import PriceSchedule, read_price_schedule

Window = tuple[float, float, float]
"""``(start_h, end_h, price_gbp_per_kwh)``: the price from clock hour ``start_h`` (inclusive)
to ``end_h`` (exclusive); ``end_h < start_h`` wraps past midnight."""


@dataclass(frozen=True)
class TouTariff:
    """A time-of-use tariff: a default import/export price and windows that override it.

    Prices are GBP/kWh; the windows are clock hours in ``[0, 24]``. Where windows overlap the
    later one wins. :meth:`prices` averages the price over each step (minute resolution), so a
    band edge inside a step gives the time-weighted mean, i.e. the exact bill for a constant
    power over the step.
    """

    name: str
    import_gbp_per_kwh: float
    """Import price outside the windows, GBP/kWh."""
    export_gbp_per_kwh: float
    """Export price outside the windows, GBP/kWh."""
    import_windows: tuple[Window, ...] = ()
    export_windows: tuple[Window, ...] = ()
    source: str = ""

    def __post_init__(self):
        for w in self.import_windows + self.export_windows:
            if len(w) != 3 or not (0 <= w[0] <= 24 and 0 <= w[1] <= 24):
                raise ValueError(f"{self.name}: window {w} is not (start_h, end_h, price)")

    def with_flat_export(self, export_gbp_per_kwh: float, name: str | None = None) -> TouTariff:
        """The same import prices with one export price at all times, GBP/kWh."""
        return replace(self, export_gbp_per_kwh=float(export_gbp_per_kwh), export_windows=(),
                       name=name or f"{self.name}, flat export {export_gbp_per_kwh:g} GBP/kWh")

    @staticmethod
    def _curve(default: float, windows: tuple[Window, ...], dt_minutes: int) -> torch.Tensor:
        if dt_minutes <= 0 or 1440 % dt_minutes:
            raise ValueError(f"dt_minutes must divide a day (1440 min), got {dt_minutes}")
        if not windows:  # exact: a mean of equal floats can round one ulp off the price
            return torch.full((1440 // dt_minutes,), float(default), dtype=torch.float64)
        minute = torch.arange(1440, dtype=torch.float64) / 60.0  # start of each minute, h
        p = torch.full((1440,), float(default), dtype=torch.float64)
        for start, end, price in windows:
            if start <= end:
                inside = (minute >= start) & (minute < end)
            else:
                inside = (minute >= start) | (minute < end)
            p = torch.where(inside, torch.tensor(float(price), dtype=torch.float64), p)
        return p.reshape(1440 // dt_minutes, dt_minutes).mean(dim=1)

    def prices(
        self, dt_minutes: int = 30, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(import, export)`` prices, GBP/kWh, each ``(T,)`` with ``T = 1440 / dt_minutes``;
        entry ``t`` is the mean price over ``[t dt, (t+1) dt)`` from midnight."""
        imp = self._curve(self.import_gbp_per_kwh, self.import_windows, dt_minutes)
        exp = self._curve(self.export_gbp_per_kwh, self.export_windows, dt_minutes)
        return imp.to(dtype), exp.to(dtype)

    def day_prices(
        self, n_days: int, dt_minutes: int = 30, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`prices` repeated over ``n_days``: ``(import, export)``, each ``(n_days, T)``."""
        imp, exp = self.prices(dt_minutes, dtype)
        return imp.expand(n_days, -1).clone(), exp.expand(n_days, -1).clone()

    def prices_on(
        self, dates: Sequence[str], dt_minutes: int = 30, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(import, export)`` prices of the days ``dates``, each ``(D, T)``, GBP/kWh: the same
        clock curve every day (:meth:`day_prices`); the common interface of all tariffs."""
        return self.day_prices(len(dates), dt_minutes, dtype)


OCTOPUS_FLUX_2023 = TouTariff(
    name="Octopus Flux (May 2023 rates)",
    import_gbp_per_kwh=0.3352,
    export_gbp_per_kwh=0.2252,
    import_windows=((2.0, 5.0, 0.2011), (16.0, 19.0, 0.4693)),
    export_windows=((2.0, 5.0, 0.0911), (16.0, 19.0, 0.3593)),
    source=(
        "Octopus Energy 'Flux' import/export time-of-use tariff; bands 02:00-05:00 off-peak, "
        "16:00-19:00 peak, day rate otherwise; import 20.11 / 33.52 / 46.93 p/kWh, export "
        "9.11 / 22.52 / 35.93 p/kWh (off-peak / day / peak) as published in May 2023 "
        "(M. Golding, 'Octopus Flux', Spirit Energy homeowner blog, 24 May 2023, "
        "https://blog.spiritenergy.co.uk/homeowner/octopus-energy-tariffs). Rates vary by region "
        "and over time; see docs/data.md."
    ),
)
"""Default tariff: Octopus Flux, May 2023 rates (GBP/kWh). Off-peak 02:00-05:00 import 0.2011 /
export 0.0911; peak 16:00-19:00 import 0.4693 / export 0.3593; otherwise import 0.3352 / export
0.2252."""

OCTOPUS_OUTGOING_FIXED_2023_GBP_PER_KWH = 0.15
"""Octopus *Outgoing Fixed* export rate, 15 p/kWh at all times (same source as the Flux rates);
use ``OCTOPUS_FLUX_2023.with_flat_export(OCTOPUS_OUTGOING_FIXED_2023_GBP_PER_KWH)`` for a flat
export price."""

DEFAULT_TARIFF = OCTOPUS_FLUX_2023

LCL_DTOU_LEVELS_GBP_PER_KWH = {"low": 0.0399, "normal": 0.1176, "high": 0.6720}
"""The three price levels of the Low Carbon London dynamic time-of-use trial (2013), GBP/kWh.
They are not a function of the time of day (the trial sent day-ahead signals on chosen days):
the real schedule is :data:`LCL_DTOU_2013` (shipped) or :func:`gridedge_env.data.adapters.read_lcl_dtou`
(the reference CSV)."""


def align_days(dates: Sequence[str], schedule_dates: Sequence[str]) -> np.ndarray:
    """For each of ``dates`` (ISO), the index of the schedule day that prices it ``(D,)``.

    The rule (deterministic, vectorised): take the same calendar date (month and day) in the
    schedule's year (the year of ``schedule_dates[0]``; 29 February -> 28 February in a common
    year), then move to the nearest date with the same weekday as the original date, which is
    at most 3 days away (the shift in ``-3..+3`` is unique). Should that leave the schedule (the
    first or last days of the year), move 7 days the other way instead. So every day keeps its
    weekday (weekends stay weekends) and its season to within 3 days (10 at the year's ends);
    a few schedule days serve two dates and a few none. Dates of the schedule's own year map
    to themselves. Bank holidays are not matched.
    ``schedule_dates`` must be consecutive (a :class:`~.schedule.PriceSchedule` is).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    first = np.datetime64(schedule_dates[0], "D")
    last = first + np.timedelta64(len(schedule_dates) - 1, "D")
    year = first.astype("datetime64[Y]")
    month = d.astype("datetime64[M]")
    day_of_month = (d - month.astype("datetime64[D]")).astype(np.int64)
    target_month = year.astype("datetime64[M]") + (month.astype(np.int64) % 12)
    month_end = (target_month + 1).astype("datetime64[D]") - np.timedelta64(1, "D")
    same = np.minimum(target_month.astype("datetime64[D]") + day_of_month, month_end)
    weekday = (d.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    shift = (weekday - (same.astype(np.int64) + 3) % 7 + 3) % 7 - 3  # in -3..3
    aligned = same + shift.astype("timedelta64[D]")
    aligned = np.where(aligned < first, aligned + np.timedelta64(7, "D"), aligned)
    aligned = np.where(aligned > last, aligned - np.timedelta64(7, "D"), aligned)
    outside = (aligned < first) | (aligned > last)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f"no schedule day for {d[i]}: the schedule covers {first} to {last}, "
                         "less than the year the alignment rule needs")
    return (aligned - first).astype(np.int64)


LCL_DTOU_SCHEDULE_FILE = Path(__file__).resolve().parent / "profiles" / "lcl_dtou_2013_schedule.json"
"""The shipped schedule of the Low Carbon London dToU trial, 2013 (``docs/data.md``)."""


@dataclass(frozen=True)
class DayAheadTariff:
    """Import prices from a dated day-ahead schedule, export prices from a clock tariff.

    The import price of a day is the schedule day that :func:`align_days` assigns to its date;
    the export price is ``export``'s clock curve (the same every day). Prices are GBP/kWh;
    :meth:`prices_on` averages each schedule step over the requested step (exact bills, as
    :class:`TouTariff` does), so a step that is a divisor of the schedule's repeats its level.
    """

    name: str
    schedule_file: Path
    """A :mod:`~.schedule` file, read once when first used."""
    export: TouTariff
    """Source of the export price (its import prices are not used)."""
    source: str = ""

    @property
    def schedule(self) -> PriceSchedule:
        return read_price_schedule(self.schedule_file)

    def schedule_days(self, dates: Sequence[str]) -> np.ndarray:
        """Index ``(D,)`` of the schedule day that prices each of ``dates`` (:func:`align_days`)."""
        return align_days(dates, self.schedule.dates)

    def prices_on(
        self, dates: Sequence[str], dt_minutes: int = 30, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(import, export)`` prices of the days ``dates``, each ``(D, T)``, GBP/kWh, with
        ``T = 1440 / dt_minutes``; entry ``[d, t]`` is the mean price over ``[t dt, (t+1) dt)``
        of ``dates[d]``."""
        if dt_minutes <= 0 or 1440 % dt_minutes:
            raise ValueError(f"dt_minutes must divide a day (1440 min), got {dt_minutes}")
        sched = self.schedule
        g = math.gcd(dt_minutes, sched.dt_minutes)  # a common sub-step, min
        fine = torch.as_tensor(sched.prices()[self.schedule_days(dates)])
        fine = fine.repeat_interleave(sched.dt_minutes // g, dim=1)  # (D, 1440 / g)
        # mean over the sub-steps of a step: exactly the level where a step lies in one
        imp = fine.reshape(len(dates), 1440 // dt_minutes, dt_minutes // g).mean(dim=2)
        _, exp = self.export.day_prices(len(dates), dt_minutes, dtype)
        return imp.to(dtype), exp


LCL_DTOU_EXPORT_GBP_PER_KWH = 0.0399
"""Export price of the ``-v1`` scenarios, GBP/kWh at all times: the trial's low import level
(3.99 p/kWh), so export never pays more than import in any half-hour. **Decision**
(``docs/data.md``): Flux's export rates (9.11-35.93 p/kWh) beside the dToU import prices would
pay more for export than import costs in 84 % of the half-hours, making the energy bill
nonconvex in net power and rewarding import-to-export cycling; the 2013 feed-in-tariff export
rate (about 4.6 p/kWh) is close to this level."""

LCL_DTOU_2013 = DayAheadTariff(
    name="LCL dToU 2013 day-ahead import, flat export at its low level",
    schedule_file=LCL_DTOU_SCHEDULE_FILE,
    export=OCTOPUS_FLUX_2023.with_flat_export(LCL_DTOU_EXPORT_GBP_PER_KWH,
                                              name="flat export 3.99 p/kWh"),
    source=(
        "Import: the dynamic time-of-use tariff schedule of UK Power Networks' Low Carbon London "
        "trial, 2013 (low 3.99 / normal 11.76 / high 67.20 p/kWh, announced a day ahead), each "
        "day of the profiles priced by the 2013 day of align_days. Export: 3.99 p/kWh at all "
        "times, the trial's low level, so export never pays more than import. See docs/data.md."
    ),
)
"""The real dToU import price of LCL 2013 (day by day) with a flat export price at its low
level; the prices of the ``-v1`` scenarios (``docs/scenarios.md``)."""

Tariff = TouTariff | DayAheadTariff
"""Anything with ``prices_on(dates, dt_minutes, dtype) -> (import, export)``."""

TARIFFS: dict[str, Tariff] = {"octopus-flux-2023": OCTOPUS_FLUX_2023, "lcl-dtou-2013": LCL_DTOU_2013}
"""Price sources by the name a scenario's ``data.prices`` uses."""
