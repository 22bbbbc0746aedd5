"""Time-of-use tariffs: import and export prices as a function of the clock time of day.

The default, :data:`OCTOPUS_FLUX_2023`, is Octopus Energy's *Flux* import/export tariff for
homes with solar and batteries, with the rates published in May 2023 (sources and caveats in
``docs/data.md``): three bands on the clock, off-peak 02:00-05:00, peak 16:00-19:00, day rate
otherwise, and an export rate 11 p/kWh below the import rate in each band. The bands are applied
on the profiles' own clock (the bundled profiles use a fixed clock without daylight saving).

Real price series (e.g. the Low Carbon London dynamic time-of-use signal) enter through the
CSV loaders as a ``price_gbp_per_kwh`` column instead; see :mod:`gridedge_env.data.adapters`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

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
read the real schedule with :func:`gridedge_env.data.adapters.read_lcl_dtou`."""
