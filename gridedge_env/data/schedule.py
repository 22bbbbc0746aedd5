"""Day-ahead price schedules: a few price levels and which level each step of each dated day had.

A dynamic time-of-use tariff such as the Low Carbon London dToU trial (2013) is not a function of
the clock: its operator announced, a day ahead, which half-hours would be charged at which of a
few fixed price levels. A :class:`PriceSchedule` holds exactly that and nothing else: the levels
(GBP/kWh) and a level index per step of every day. It is stored as a small JSON file::

    {"format": "gridedge-price-schedule-1", "name": ..., "dt_minutes": 30,
     "levels": [{"code": "L", "name": "low", "gbp_per_kwh": 0.0399}, ...],
     "days": {"2013-01-01": "NNNN...N", ...},      # one code per step, T = 1440 / dt_minutes
     "source": ..., "notice": ..., ...}             # provenance, free-form

Days must be consecutive calendar dates. :func:`schedule_from_prices` builds a schedule from a
validated price series (every price must be one of the levels exactly) and
:func:`write_price_schedule` writes it byte-reproducibly; ``scripts/build_dtou_schedule.py``
uses both to convert the LCL extract. Which schedule day drives which day of other profiles is
the business of :func:`gridedge_env.data.tariff.align_days`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .series import ProfileDataError

FORMAT = "gridedge-price-schedule-1"
"""Value of the ``format`` key of a schedule file."""


@dataclass(frozen=True, eq=False)
class PriceSchedule:
    """Price levels and the level of every step of ``D`` consecutive days.

    ``level_index[d, t]`` (``(D, T)`` int, ``T = 1440 / dt_minutes``) indexes
    ``levels_gbp_per_kwh`` (``(K,)``) for step ``t`` (starting ``t * dt_minutes`` after midnight)
    of ``dates[d]``.
    """

    name: str
    levels_gbp_per_kwh: tuple[float, ...]
    """``K`` price levels, GBP/kWh."""
    level_names: tuple[str, ...]
    """``K`` names of the levels (``low``, ``normal``, ``high``)."""
    level_codes: tuple[str, ...]
    """``K`` one-character codes of the levels in the file (``L``, ``N``, ``H``)."""
    dates: tuple[str, ...]
    """``D`` consecutive ISO dates."""
    level_index: np.ndarray
    """``(D, T)`` int8 index into the levels (read-only)."""
    dt_minutes: int = 30
    """Step length, min."""
    meta: dict = field(default_factory=dict)
    """Provenance keys of the file (``source``, ``notice``, ...), as written."""

    def __post_init__(self):
        index = np.array(self.level_index, dtype=np.int8)  # a private, read-only copy
        index.setflags(write=False)
        object.__setattr__(self, "level_index", index)
        k = len(self.levels_gbp_per_kwh)
        if not k or len(self.level_names) != k or len(self.level_codes) != k:
            raise ValueError(f"{self.name}: need as many level names and codes as levels ({k})")
        if self.dt_minutes <= 0 or 1440 % self.dt_minutes:
            raise ValueError(f"{self.name}: dt_minutes must divide 1440, got {self.dt_minutes}")
        shape = (len(self.dates), 1440 // self.dt_minutes)
        if self.level_index.shape != shape:
            raise ValueError(f"{self.name}: level_index has shape {self.level_index.shape}, "
                             f"expected {shape} (days, steps)")
        if self.level_index.size and not (0 <= self.level_index.min() <= self.level_index.max() < k):
            raise ValueError(f"{self.name}: level_index outside [0, {k})")
        d = np.array(self.dates, dtype="datetime64[D]")
        if len(d) and np.any(np.diff(d) != np.timedelta64(1, "D")):
            bad = int(np.flatnonzero(np.diff(d) != np.timedelta64(1, "D"))[0])
            raise ValueError(f"{self.name}: dates must be consecutive days; {self.dates[bad]} is "
                             f"followed by {self.dates[bad + 1]}")

    @property
    def n_days(self) -> int:
        return len(self.dates)

    def prices(self) -> np.ndarray:
        """``(D, T)`` float64 price of every step, GBP/kWh."""
        return np.asarray(self.levels_gbp_per_kwh, dtype=np.float64)[self.level_index]


def schedule_from_prices(
    name: str, dates: tuple[str, ...], prices: np.ndarray, levels: dict[str, float],
    codes: dict[str, str], dt_minutes: int = 30, meta: dict | None = None, where: str = "",
) -> PriceSchedule:
    """A schedule from a price series ``prices`` ``(D * T,)`` (GBP/kWh) of whole days ``dates``.

    ``levels`` maps level name -> price (GBP/kWh), ``codes`` level name -> one-character code.
    Every price must equal one level (to 1e-9 GBP/kWh); the first one that does not raises a
    :class:`ProfileDataError` naming ``where``, the row and the value."""
    prices = np.asarray(prices, dtype=np.float64).reshape(-1)
    T = 1440 // dt_minutes
    if prices.size != len(dates) * T:
        raise ProfileDataError(f"{where}: {prices.size} prices for {len(dates)} days of {T} "
                               "steps: not whole days")
    names = tuple(levels)
    value = np.array([levels[n] for n in names], dtype=np.float64)
    dist = np.abs(prices[:, None] - value[None, :])
    index = dist.argmin(axis=1)
    off = np.flatnonzero(dist[np.arange(prices.size), index] > 1e-9)
    if off.size:
        i = int(off[0])
        raise ProfileDataError(
            f"{where}: row {i} ({dates[i // T]} step {i % T}): price {prices[i]} GBP/kWh is none "
            f"of the levels {dict(zip(names, value.tolist(), strict=True))}")
    return PriceSchedule(name=name, levels_gbp_per_kwh=tuple(value.tolist()), level_names=names,
                         level_codes=tuple(codes[n] for n in names), dates=tuple(dates),
                         level_index=index.astype(np.int8).reshape(len(dates), T),
                         dt_minutes=dt_minutes, meta=dict(meta or {}))


def schedule_json(schedule: PriceSchedule) -> str:
    """The file text of ``schedule``: keys in a fixed order, one day per line (reproducible)."""
    head = {"format": FORMAT, "name": schedule.name, **schedule.meta,
            "dt_minutes": schedule.dt_minutes,
            "levels": [{"code": c, "name": n, "gbp_per_kwh": p} for c, n, p in zip(
                schedule.level_codes, schedule.level_names, schedule.levels_gbp_per_kwh,
                strict=True)]}
    codes = np.array(schedule.level_codes)
    days = [f'  "{d}": "{"".join(codes[row])}"'
            for d, row in zip(schedule.dates, schedule.level_index, strict=True)]
    text = json.dumps(head, indent=1, ensure_ascii=False)
    return text[:-2] + ',\n "days": {\n' + ",\n".join(days) + "\n }\n}\n"


def write_price_schedule(schedule: PriceSchedule, path: str | Path) -> Path:
    """Write ``schedule`` to ``path`` (:func:`schedule_json`, UTF-8); returns the path."""
    path = Path(path)
    path.write_text(schedule_json(schedule), encoding="utf-8")
    return path


def _field(obj: dict, key: str, kind: type, where: str):
    if key not in obj:
        raise ProfileDataError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], kind):
        raise ProfileDataError(f"{where}: key {key!r} must be a {kind.__name__}, got "
                               f"{obj[key]!r:.60}")
    return obj[key]


@lru_cache(maxsize=4)
def read_price_schedule(path: str | Path) -> PriceSchedule:
    """Read and check a schedule file (module docstring); bad content raises
    :class:`ProfileDataError` naming the file, the key and the value. Cached by path."""
    where = str(path)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileDataError(f"{where}: not a readable JSON file ({exc})") from None
    if obj.get("format") != FORMAT:
        raise ProfileDataError(f"{where}: key 'format' must be {FORMAT!r}, got "
                               f"{obj.get('format')!r}")
    dt = _field(obj, "dt_minutes", int, where)
    levels = _field(obj, "levels", list, where)
    for j, lv in enumerate(levels):
        ok = (isinstance(lv, dict) and isinstance(lv.get("code"), str) and len(lv["code"]) == 1
              and isinstance(lv.get("name"), str)
              and isinstance(lv.get("gbp_per_kwh"), (int, float)) and 0 <= lv["gbp_per_kwh"] < 5)
        if not ok:
            raise ProfileDataError(f"{where}: levels[{j}] must be {{code: one character, name, "
                                   f"gbp_per_kwh: 0..5}}, got {lv!r}")
    code_of = {lv["code"]: j for j, lv in enumerate(levels)}
    days = _field(obj, "days", dict, where)
    T = 1440 // dt if dt > 0 and 1440 % dt == 0 else -1
    index = np.zeros((len(days), max(T, 0)), dtype=np.int8)
    for i, (date, text) in enumerate(days.items()):
        if not isinstance(text, str) or len(text) != T or set(text) - set(code_of):
            raise ProfileDataError(f"{where}: days[{date!r}] must be {T} codes from "
                                   f"{''.join(code_of)}, got {text!r:.70}")
        index[i] = [code_of[c] for c in text]
    meta = {k: v for k, v in obj.items() if k not in ("format", "name", "dt_minutes", "levels",
                                                    "days")}
    try:
        return PriceSchedule(
            name=str(obj.get("name", where)),
            levels_gbp_per_kwh=tuple(float(lv["gbp_per_kwh"]) for lv in levels),
            level_names=tuple(lv["name"] for lv in levels),
            level_codes=tuple(lv["code"] for lv in levels), dates=tuple(days), level_index=index,
            dt_minutes=dt, meta=meta)
    except ValueError as exc:
        raise ProfileDataError(f"{where}: {exc}") from None
