"""The profiles shipped with the package (``gridedge_env/data/profiles/``) as :class:`Profiles`.

* Demand and PV: SimBench 2016 (Germany), 5 household profiles in kW and 8 PV profiles in
  kW/kWp, 366 days at 30 min (ODbL 1.0; ``LICENSE-simbench-ODbL.txt``).
* Outdoor temperature: DWD test reference year TRY 2010, region 1 (North Sea coast,
  Bremerhaven), a nominal 365-day year at 30 min, aligned to the 2016 days by calendar date
  (29 February takes 28 February's temperatures).
* Prices: a time-of-use tariff evaluated on the clock (default Octopus Flux, May 2023 rates), or
  a day-ahead schedule by date (``lcl_dtou_2013_schedule.json``, the LCL dToU trial of 2013).

All series share one fixed clock without daylight saving, close to UTC (= GMT). Provenance and
licences: ``docs/data.md`` and ``profiles/provenance.json``; rebuild with
``python scripts/build_profiles.py``.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path

import torch

from .container import Profiles, Upsample, calendar_index, change_resolution
from .series import TimeSeries, read_profile_csv
from .tariff import DEFAULT_TARIFF, Tariff

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
"""Folder of the bundled profile files."""


def provenance() -> dict:
    """The build record ``profiles/provenance.json`` (sources, wheel and file SHA-256)."""
    return json.loads((PROFILES_DIR / "provenance.json").read_text())


@lru_cache(maxsize=2)
def _series(name: str, require: tuple[str, ...]) -> TimeSeries:
    return read_profile_csv(PROFILES_DIR / name, 30, require=require)


def load_bundled(
    dt_minutes: int = 30,
    *,
    tariff: Tariff = DEFAULT_TARIFF,
    upsample: Upsample | None = None,
    dtype: torch.dtype = torch.float32,
) -> Profiles:
    """The bundled profiles: 366 days of 2016, ``H = 5`` households, ``S = 8`` PV profiles.

    Args:
        dt_minutes: step length, min. 30 (default, ``T = 48``) is the data's own; a multiple of
            30 averages the data (prices are re-evaluated from the tariff exactly); a divisor of
            30 needs ``upsample`` (``"hold"`` or ``"linear"``).
        tariff: import/export prices: a clock tariff (:class:`~.tariff.TouTariff`, the same every
            day) or a :class:`~.tariff.DayAheadTariff` (each day's import price from the
            schedule day aligned to its 2016 date, e.g. :data:`~.tariff.LCL_DTOU_2013`).
        dtype: floating dtype of the tensors.
    """
    prov = provenance()
    sb = _series(prov["demand_pv"]["file"], ("demand_kw", "pv_kw_per_kwp"))
    tr = _series(prov["temperature"]["file"], ("temp_out_c",))
    T = 48
    D = len(sb) // T
    dates = tuple(str(d) for d in sb.timestamps[::T].astype("datetime64[D]"))
    tr_dates = tuple(str(d) for d in tr.timestamps[::T].astype("datetime64[D]"))
    temp = torch.as_tensor(tr.columns["temp_out_c"].reshape(-1, T), dtype=dtype)
    temp = temp[torch.as_tensor(calendar_index(tr_dates, dates))]
    imp, exp = tariff.prices_on(dates, 30, dtype)
    p = Profiles(
        demand_kw=torch.as_tensor(sb.stack("demand_kw").reshape(D, T, -1), dtype=dtype),
        pv_kw_per_kwp=torch.as_tensor(sb.stack("pv_kw_per_kwp").reshape(D, T, -1), dtype=dtype),
        temp_out_c=temp,
        price_gbp_per_kwh=imp,
        export_price_gbp_per_kwh=exp,
        dates=dates,
        dt_minutes=30,
        household_names=tuple(sb.labels("demand_kw")),
        pv_names=tuple(sb.labels("pv_kw_per_kwp")),
        source=(f"bundled: {prov['demand_pv']['file']} (SimBench 2016, ODbL); "
                f"{prov['temperature']['file']} (DWD TRY 2010 region 1 via demandlib, aligned "
                f"by calendar date); prices: {tariff.name}"),
    )
    if dt_minutes != 30:
        p = change_resolution(p, dt_minutes, upsample=upsample)
        imp, exp = tariff.prices_on(dates, dt_minutes, dtype)
        p = dataclasses.replace(p, price_gbp_per_kwh=imp, export_price_gbp_per_kwh=exp)
    return p
