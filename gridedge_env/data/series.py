"""Validated time series read from CSV files: the user schema and its checks.

A profile CSV has one header line and one line per time step::

    timestamp,demand_kw_house1,demand_kw_house2,pv_kw_per_kwp,temp_out_c,price_gbp_per_kwh
    2024-01-01 00:00,0.31,0.52,0,4.2,0.2011
    2024-01-01 00:30,0.28,0.47,0,4.1,0.2011

* ``timestamp``: the **start** of the step, ISO 8601 (``YYYY-MM-DD HH:MM[:SS]``, ``T`` or space).
  One clock for the whole file: either all naive, or all with the same UTC offset
  (``+01:00``). A clock with daylight saving (a missing or a repeated hour) is rejected: the
  error names the line, so convert the file to a fixed offset (e.g. UTC or GMT) first.
* Data columns are named ``<quantity>`` or ``<quantity>_<label>``; the quantity fixes the unit
  (see :data:`QUANTITIES`). ``demand_kw`` and ``pv_kw_per_kwp`` may have many labelled columns
  (one per household / PV site); the others at most one, unlabelled.

Nothing is resampled, filled or reordered silently. :func:`read_profile_csv` raises
:class:`ProfileDataError` naming the file, the column and the line for: missing file or
columns, unknown columns, unparsable or irregular timestamps (gaps, repeats, a step other
than ``dt_minutes``), empty / non-numeric / NaN / infinite values and values whose magnitude
shows a wrong unit (W instead of kW, Kelvin, pence, ...). The unit checks are thresholds on
magnitude, listed in :data:`QUANTITIES`; ``check_units="warn"`` turns them into
:class:`UnitWarning` and ``"off"`` skips them.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

CheckUnits = Literal["error", "warn", "off"]


class ProfileDataError(ValueError):
    """A profile file or series is not usable as it is; the message says where and why."""


class UnitWarning(UserWarning):
    """A value range that is possible but suspicious for the unit in the column name."""


@dataclass(frozen=True)
class Quantity:
    """A quantity of the CSV schema: its column prefix, unit and plausibility thresholds.

    ``error_*`` bounds raise (or warn under ``check_units="warn"``); ``warn_*`` bounds only
    warn. Bounds apply to single values except ``warn_mean_above``, which applies to the mean
    of a column.
    """

    name: str
    unit: str
    meaning: str
    multi: bool
    error_min: float
    error_max: float
    hint_high: str
    hint_low: str = ""
    warn_max: float = math.inf
    warn_mean_above: float = math.inf
    hint_warn: str = ""


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity(
            "demand_kw", "kW", "household active-power demand, mean over the step", True,
            error_min=0.0, error_max=100.0,
            hint_high="a household above 100 kW: the column is probably in W (divide by 1000)",
            hint_low="demand must be >= 0 (put PV in pv_kw_per_kwp columns, not as net load)",
            warn_max=30.0, hint_warn="above 30 kW is unusual for one household: check the unit",
        ),
        Quantity(
            "pv_kw_per_kwp", "kW/kWp", "PV output per kWp installed, mean over the step", True,
            error_min=-0.05, error_max=1.5,
            hint_high="above 1.5 kW per kWp: probably W/kWp (divide by 1000) or a whole "
            "system's kW (divide by its kWp)",
            hint_low="PV output below -0.05 kW/kWp (only inverter standby may be slightly < 0)",
        ),
        Quantity(
            "temp_out_c", "degC", "outdoor air temperature", False,
            error_min=-60.0, error_max=60.0,
            hint_high="above 60 degC: probably Kelvin (subtract 273.15) or Fahrenheit",
            hint_low="below -60 degC: check the unit",
            warn_mean_above=30.0,
            hint_warn="a mean above 30 degC: is the column in Fahrenheit?",
        ),
        Quantity(
            "price_gbp_per_kwh", "GBP/kWh", "import (retail) energy price", False,
            error_min=-5.0, error_max=5.0,
            hint_high="above 5 GBP/kWh: probably p/kWh (divide by 100) or GBP/MWh (divide by "
            "1000)",
            hint_low="below -5 GBP/kWh: probably p/kWh or GBP/MWh",
        ),
        Quantity(
            "export_price_gbp_per_kwh", "GBP/kWh", "export price paid for energy fed in", False,
            error_min=-5.0, error_max=5.0,
            hint_high="above 5 GBP/kWh: probably p/kWh (divide by 100) or GBP/MWh (divide by "
            "1000)",
            hint_low="below -5 GBP/kWh: probably p/kWh or GBP/MWh",
        ),
    )
}
"""The schema's quantities by column prefix, with their units and plausibility thresholds."""

_WRONG_UNIT_PREFIXES = {
    "demand_w": "demand in W: convert to kW and name the column demand_kw...",
    "demand_kwh": "energy per step: convert to mean kW (kWh / step hours) and name it demand_kw...",
    "demand_mw": "demand in MW: convert to kW",
    "pv_w": "PV in W: convert to kW per kWp installed (pv_kw_per_kwp...)",
    "pv_kw": "PV in kW: divide by the installed kWp and name the column pv_kw_per_kwp...",
    "pv_kwh": "PV energy per step: convert to kW per kWp (pv_kw_per_kwp...)",
    "temp_out_k": "temperature in K: convert to degC (temp_out_c)",
    "temp_out_f": "temperature in degF: convert to degC (temp_out_c)",
    "price_p_per_kwh": "price in p/kWh: divide by 100 (price_gbp_per_kwh)",
    "price_gbp_per_mwh": "price in GBP/MWh: divide by 1000 (price_gbp_per_kwh)",
}

TIMESTAMP = "timestamp"


@dataclass(frozen=True, eq=False)
class TimeSeries:
    """A validated, regular time series of schema quantities (numpy, float64).

    ``timestamps`` are the starts of the steps, ``datetime64[m]`` ``(N,)``, in the file's own
    fixed clock (``utc_offset_minutes`` when the file gave one, else unknown). ``columns`` maps
    each column name (``<quantity>[_<label>]``) to its values ``(N,)`` in the quantity's unit.
    """

    timestamps: np.ndarray
    columns: dict[str, np.ndarray]
    dt_minutes: int
    source: str
    utc_offset_minutes: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.timestamps)

    def names(self, quantity: str) -> list[str]:
        """Column names of ``quantity`` in file order (e.g. all ``demand_kw_*`` columns)."""
        return [c for c in self.columns if quantity_of(c) == quantity]

    def labels(self, quantity: str) -> list[str]:
        """The labels of ``quantity``'s columns (``""`` for an unlabelled column)."""
        return [c[len(quantity) + 1:] for c in self.names(quantity)]

    def stack(self, quantity: str) -> np.ndarray:
        """Values of all ``quantity`` columns, ``(N, k)``; ``(N, 0)`` when there are none."""
        names = self.names(quantity)
        if not names:
            return np.zeros((len(self), 0))
        return np.stack([self.columns[c] for c in names], axis=1)

    def has(self, quantity: str) -> bool:
        return bool(self.names(quantity))


def quantity_of(column: str) -> str | None:
    """The schema quantity a column name belongs to, or None (``demand_kw_a`` -> ``demand_kw``).

    A column matches a quantity when it equals it or starts with it plus ``_``; the longest
    match wins. ``demand_kwh`` matches nothing (and gets a unit hint in
    :func:`classify_columns`).
    """
    best = None
    for q in QUANTITIES:
        if (column == q or column.startswith(q + "_")) and (best is None or len(q) > len(best)):
            best = q
    return best


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_table(path: str | Path, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of a CSV (``.csv`` or ``.csv.gz``); line ``i+2`` is row ``i``.

    Raises :class:`ProfileDataError` for a missing/empty file, a row with a different number of
    fields than the header, or duplicate column names.
    """
    path = Path(path)
    if not path.is_file():
        raise ProfileDataError(f"{path}: no such file")
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        except StopIteration:
            raise ProfileDataError(f"{path}: empty file (no header line)") from None
        rows = []
        for i, row in enumerate(reader):
            if not row or (len(row) == 1 and not row[0].strip()):
                raise ProfileDataError(f"{path}: line {i + 2} is empty")
            if len(row) != len(header):
                raise ProfileDataError(
                    f"{path}: line {i + 2} has {len(row)} fields, the header has {len(header)}"
                )
            rows.append(row)
    seen = set()
    for h in header:
        if h in seen:
            raise ProfileDataError(f"{path}: column '{h}' appears twice in the header")
        seen.add(h)
    if not rows:
        raise ProfileDataError(f"{path}: no data lines after the header")
    return header, rows


def parse_timestamps(
    values: Sequence[str], where: str, column: str = TIMESTAMP
) -> tuple[np.ndarray, int | None]:
    """Parse ISO 8601 step starts into ``datetime64[m]`` on the file's own fixed clock.

    Returns ``(stamps, utc_offset_minutes)`` (offset None for naive stamps). Mixed naive and
    aware stamps, or differing UTC offsets (daylight saving), raise with the first bad line.
    """
    out = np.empty(len(values), dtype="datetime64[m]")
    offset: timedelta | None = None
    for i, raw in enumerate(values):
        s = raw.strip()
        try:
            ts = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
        except ValueError:
            raise ProfileDataError(
                f"{where}: column '{column}', line {i + 2}: cannot parse {raw!r} as an ISO 8601 "
                "timestamp (e.g. '2024-01-31 23:30')"
            ) from None
        off = ts.utcoffset()
        if i == 0:
            offset = off
        elif (off is None) != (offset is None) or (off is not None and off != offset):
            raise ProfileDataError(
                f"{where}: column '{column}', line {i + 2}: UTC offset {off} differs from the "
                f"first line's {offset} (daylight saving?). Use one fixed offset for the file."
            )
        if ts.second or ts.microsecond:
            raise ProfileDataError(
                f"{where}: column '{column}', line {i + 2}: {raw!r} is not on a whole minute"
            )
        out[i] = np.datetime64(ts.replace(tzinfo=None), "m")
    minutes = None if offset is None else int(offset.total_seconds() // 60)
    return out, minutes


def check_regular(stamps: np.ndarray, dt_minutes: int, where: str, column: str = TIMESTAMP):
    """Raise unless consecutive stamps are exactly ``dt_minutes`` apart.

    The message distinguishes a file at another resolution (every step the same but not
    ``dt_minutes``), a gap (missing steps), a repeated or decreasing stamp (e.g. the autumn
    daylight-saving hour) and an irregular step, and names the line.
    """
    if len(stamps) < 2:
        return
    d = np.diff(stamps).astype(np.int64)  # minutes
    if np.all(d == d[0]) and d[0] != dt_minutes and d[0] > 0:
        raise ProfileDataError(
            f"{where}: column '{column}': the time step is {int(d[0])} min, expected "
            f"{dt_minutes} min. Pass dt_minutes={int(d[0])} to read it at its own resolution "
            "(nothing is resampled implicitly)."
        )
    bad = np.flatnonzero(d != dt_minutes)
    if bad.size == 0:
        return
    i = int(bad[0])
    a, b, step = stamps[i], stamps[i + 1], int(d[i])
    line = i + 3  # the second stamp of the pair
    if step <= 0:
        raise ProfileDataError(
            f"{where}: column '{column}', line {line}: timestamp {b} is not after the previous "
            f"one ({a}): repeated or out of order (a daylight-saving repeat?)"
        )
    if step % dt_minutes == 0:
        raise ProfileDataError(
            f"{where}: column '{column}', line {line}: gap of {step // dt_minutes - 1} missing "
            f"step(s) between {a} and {b} (expected every {dt_minutes} min)"
        )
    raise ProfileDataError(
        f"{where}: column '{column}', line {line}: irregular step of {step} min between {a} and "
        f"{b} (expected {dt_minutes} min)"
    )


def parse_numbers(values: Sequence[str], where: str, column: str) -> np.ndarray:
    """Parse a column to float64, raising on empty, non-numeric, NaN or infinite values."""
    out = np.empty(len(values))
    for i, raw in enumerate(values):
        try:
            x = float(raw)
        except ValueError:
            what = "empty value" if not raw.strip() else f"non-numeric value {raw!r}"
            raise ProfileDataError(f"{where}: column '{column}', line {i + 2}: {what}") from None
        if not math.isfinite(x):
            raise ProfileDataError(
                f"{where}: column '{column}', line {i + 2}: {raw.strip()!r} is not a finite "
                "number (missing data must be filled explicitly before loading)"
            )
        out[i] = x
    return out


def check_magnitudes(
    column: str, x: np.ndarray, where: str, mode: CheckUnits = "error", line_offset: int = 2
):
    """Judge ``x`` against the thresholds of its quantity (see :data:`QUANTITIES`).

    Hard-bound violations raise :class:`ProfileDataError` (``mode="error"``) or warn
    (``"warn"``); soft bounds always only warn; ``"off"`` does nothing.
    """
    if mode == "off":
        return
    q = QUANTITIES[quantity_of(column)]

    def fail(msg: str):
        if mode == "error":
            raise ProfileDataError(msg + " (check_units='warn' or 'off' to load anyway)")
        warnings.warn(msg, UnitWarning, stacklevel=3)

    hi, lo = int(np.argmax(x)), int(np.argmin(x))
    if x[hi] > q.error_max:
        fail(f"{where}: column '{column}', line {hi + line_offset}: value {x[hi]:g} {q.unit} "
             f"is implausible: {q.hint_high}")
    elif x[hi] > q.warn_max:
        warnings.warn(f"{where}: column '{column}', line {hi + line_offset}: value {x[hi]:g} "
                      f"{q.unit}: {q.hint_warn}", UnitWarning, stacklevel=2)
    if x[lo] < q.error_min:
        fail(f"{where}: column '{column}', line {lo + line_offset}: value {x[lo]:g} {q.unit} "
             f"is implausible: {q.hint_low}")
    if x.mean() > q.warn_mean_above:
        warnings.warn(f"{where}: column '{column}': mean {x.mean():.3g} {q.unit}: {q.hint_warn}",
                      UnitWarning, stacklevel=2)


def classify_columns(
    header: Iterable[str], where: str, extra: Literal["error", "ignore"] = "error"
) -> list[str]:
    """The schema data columns of ``header`` (timestamp excluded), validating the names.

    Unknown names raise (with a hint for known wrong units, e.g. ``demand_w``) unless
    ``extra="ignore"``; a single-valued quantity given twice or with a label raises.
    """
    cols = []
    for h in header:
        if h == TIMESTAMP:
            continue
        q = quantity_of(h)
        if q is None:
            hint = next((v for k, v in _WRONG_UNIT_PREFIXES.items()
                         if h == k or h.startswith(k + "_")), None)
            if hint is not None:
                raise ProfileDataError(f"{where}: column '{h}': {hint}")
            if extra == "ignore":
                continue
            raise ProfileDataError(
                f"{where}: unknown column '{h}'. Known quantities (column = quantity or "
                f"quantity_label): {', '.join(QUANTITIES)}; pass extra='ignore' to skip others."
            )
        if not QUANTITIES[q].multi and h != q:
            raise ProfileDataError(f"{where}: column '{h}': '{q}' takes no label (one column)")
        cols.append(h)
    return cols


def read_profile_csv(
    path: str | Path,
    dt_minutes: int = 30,
    *,
    require: Sequence[str] = ("demand_kw",),
    check_units: CheckUnits = "error",
    extra: Literal["error", "ignore"] = "error",
) -> TimeSeries:
    """Read and validate a profile CSV in the user schema (module docstring).

    Args:
        path: ``.csv`` or ``.csv.gz`` file.
        dt_minutes: the step the file must have, min (default 30: half-hourly). A file at
            another resolution is an error unless this says so; nothing is resampled.
        require: quantities that must have at least one column (default: ``demand_kw``).
        check_units: ``"error"`` (default), ``"warn"`` or ``"off"`` for the magnitude checks.
        extra: ``"error"`` (default) or ``"ignore"`` for columns outside the schema.

    Returns:
        a :class:`TimeSeries` with one float64 array ``(N,)`` per data column.
    """
    path = Path(path)
    where = str(path)
    if dt_minutes <= 0 or 1440 % dt_minutes:
        raise ValueError(f"dt_minutes must divide a day (1440 min), got {dt_minutes}")
    header, rows = read_table(path)
    if TIMESTAMP not in header:
        raise ProfileDataError(
            f"{where}: missing column '{TIMESTAMP}' (columns: {', '.join(header)})")
    cols = classify_columns(header, where, extra)
    for q in require:
        if not any(quantity_of(c) == q for c in cols):
            raise ProfileDataError(
                f"{where}: missing column '{q}' (or '{q}_<label>'); columns: {', '.join(header)}"
            )
    idx = {h: j for j, h in enumerate(header)}
    stamps, offset = parse_timestamps([r[idx[TIMESTAMP]] for r in rows], where)
    check_regular(stamps, dt_minutes, where)
    data = {}
    for c in cols:
        x = parse_numbers([r[idx[c]] for r in rows], where, c)
        check_magnitudes(c, x, where, check_units)
        data[c] = x
    return TimeSeries(stamps, data, dt_minutes, where, offset)

