"""Exogenous profiles: household demand, PV, outdoor temperature and prices.

* :func:`load_bundled`: the shipped real profiles (SimBench 2016 households and PV, DWD TRY
  2010 temperature) with a time-of-use tariff, as a :class:`Profiles` of ``(days, T, ...)``
  tensors; ``tariff=LCL_DTOU_2013`` gives each day the real LCL dToU import price of an aligned
  2013 day (:class:`DayAheadTariff`, :func:`align_days`, :class:`PriceSchedule`).
* :func:`read_profile_csv` + :func:`profiles_from_series`: user CSV files in the documented
  schema, strictly validated (:class:`ProfileDataError` names file, column and line).
* :mod:`.adapters`: readers for the LCL dToU, SimBench and CityLearn reference extracts.
* :func:`split_days`: deterministic train / validation / test days;
  :func:`assign_agents` + :func:`gather_agents`: per-agent profiles with one indexing op.

Units and provenance: ``docs/data.md``.
"""

from .adapters import read_citylearn_csv, read_lcl_dtou, read_simbench_csv
from .agents import AgentAssignment, assign_agents, gather_agents
from .bundled import PROFILES_DIR, load_bundled, provenance
from .container import (
    DaySplit,
    Profiles,
    calendar_index,
    change_resolution,
    profiles_from_series,
    split_days,
)
from .schedule import PriceSchedule, read_price_schedule
from .series import (
    QUANTITIES,
    ProfileDataError,
    TimeSeries,
    UnitWarning,
    read_profile_csv,
)
from .tariff import (
    DEFAULT_TARIFF,
    LCL_DTOU_2013,
    LCL_DTOU_EXPORT_GBP_PER_KWH,
    LCL_DTOU_LEVELS_GBP_PER_KWH,
    OCTOPUS_FLUX_2023,
    OCTOPUS_OUTGOING_FIXED_2023_GBP_PER_KWH,
    TARIFFS,
    DayAheadTariff,
    Tariff,
    TouTariff,
    align_days,
)

__all__ = [
    "DEFAULT_TARIFF",
    "LCL_DTOU_2013",
    "LCL_DTOU_EXPORT_GBP_PER_KWH",
    "LCL_DTOU_LEVELS_GBP_PER_KWH",
    "OCTOPUS_FLUX_2023",
    "OCTOPUS_OUTGOING_FIXED_2023_GBP_PER_KWH",
    "PROFILES_DIR",
    "QUANTITIES",
    "TARIFFS",
    "AgentAssignment",
    "DayAheadTariff",
    "DaySplit",
    "PriceSchedule",
    "ProfileDataError",
    "Profiles",
    "Tariff",
    "TimeSeries",
    "TouTariff",
    "UnitWarning",
    "align_days",
    "assign_agents",
    "calendar_index",
    "change_resolution",
    "gather_agents",
    "load_bundled",
    "profiles_from_series",
    "provenance",
    "read_citylearn_csv",
    "read_lcl_dtou",
    "read_price_schedule",
    "read_profile_csv",
    "read_simbench_csv",
    "split_days",
]
