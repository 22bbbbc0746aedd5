"""The :class:`Profiles` container, day splits, calendar alignment and explicit resampling.

Every tensor of a :class:`Profiles` is ``(days, T, ...)`` with ``T = 1440 / dt_minutes`` steps
per day (48 at the default 30 min). Entry ``[d, t]`` is the mean over the step that starts at
``t * dt`` after midnight of ``dates[d]`` on the data's own clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .series import ProfileDataError, TimeSeries
from .tariff import DEFAULT_TARIFF, Tariff

Upsample = Literal["hold", "linear"]


@dataclass(frozen=True, eq=False)
class Profiles:
    """Exogenous day profiles for the environment (torch tensors, one row per day).

    Shapes: ``D`` days, ``T = 1440 / dt_minutes`` steps a day, ``H`` household demand profiles,
    ``S`` PV profiles.
    """

    demand_kw: torch.Tensor
    """``(D, T, H)`` household active-power demand, kW, mean over the step (>= 0)."""
    pv_kw_per_kwp: torch.Tensor
    """``(D, T, S)`` PV output per kWp installed, kW/kWp, mean over the step (``0..~1``)."""
    temp_out_c: torch.Tensor
    """``(D, T)`` outdoor air temperature, degC."""
    price_gbp_per_kwh: torch.Tensor
    """``(D, T)`` import energy price, GBP/kWh."""
    export_price_gbp_per_kwh: torch.Tensor
    """``(D, T)`` export price paid for energy fed in, GBP/kWh."""
    dates: tuple[str, ...]
    """``D`` ISO dates (``YYYY-MM-DD``) of the days, in the data's own clock."""
    dt_minutes: int = 30
    """Step length, min (30: half-hourly, ``T = 48``)."""
    household_names: tuple[str, ...] = ()
    """``H`` labels of the demand profiles (empty: unnamed)."""
    pv_names: tuple[str, ...] = ()
    """``S`` labels of the PV profiles (empty: unnamed)."""
    source: str = ""
    """Provenance in words (files, processing)."""

    def __post_init__(self):
        D, T = len(self.dates), self.n_steps
        if self.dt_minutes <= 0 or 1440 % self.dt_minutes:
            raise ValueError(f"dt_minutes must divide 1440, got {self.dt_minutes}")
        expect = {
            "demand_kw": 3, "pv_kw_per_kwp": 3, "temp_out_c": 2, "price_gbp_per_kwh": 2,
            "export_price_gbp_per_kwh": 2,
        }
        for name, ndim in expect.items():
            x = getattr(self, name)
            if not isinstance(x, torch.Tensor) or x.dim() != ndim or tuple(x.shape[:2]) != (D, T):
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                want = f"({D}, {T}{', k' if ndim == 3 else ''})"
                raise ValueError(f"Profiles.{name}: expected a tensor {want}, got {shape}")
        for names, x, what in ((self.household_names, self.demand_kw, "household_names"),
                               (self.pv_names, self.pv_kw_per_kwp, "pv_names")):
            if names and len(names) != x.shape[2]:
                raise ValueError(f"Profiles.{what}: {len(names)} names for {x.shape[2]} profiles")

    def __repr__(self) -> str:
        span = f"{self.dates[0]}..{self.dates[-1]}" if self.dates else "no days"
        return (f"Profiles({self.n_days} days {span}, T={self.n_steps} x {self.dt_minutes} min, "
                f"{self.n_households} households, {self.n_pv} PV, "
                f"{self.demand_kw.dtype}, {self.demand_kw.device})")

    @property
    def n_days(self) -> int:
        return len(self.dates)

    @property
    def n_steps(self) -> int:
        """``T``, steps per day."""
        return 1440 // self.dt_minutes

    @property
    def dt_h(self) -> float:
        """Step length, h."""
        return self.dt_minutes / 60.0

    @property
    def n_households(self) -> int:
        return self.demand_kw.shape[2]

    @property
    def n_pv(self) -> int:
        return self.pv_kw_per_kwp.shape[2]

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def select_days(self, days: torch.Tensor | Sequence[int]) -> Profiles:
        """The profiles of the given day indices (a new container; order as given)."""
        idx = torch.as_tensor(days, dtype=torch.long)
        new = {k: v[idx.to(v.device)] for k, v in self._tensors().items()}
        dates = tuple(self.dates[i] for i in idx.tolist())
        return dataclasses.replace(self, dates=dates, **new)

    def split(
        self, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    ) -> dict[str, Profiles]:
        """``{"train", "validation", "test"}`` containers from :func:`split_days`."""
        s = split_days(self.n_days, seed, fractions)
        return {k: self.select_days(v) for k, v in s._asdict().items()}

    def to(self, device=None, dtype: torch.dtype | None = None) -> Profiles:
        """A copy with every tensor moved to ``device`` and/or cast to floating ``dtype``."""
        return dataclasses.replace(
            self, **{k: v.to(device=device, dtype=dtype) for k, v in self._tensors().items()})

    def is_contiguous_record(self) -> bool:
        """True when ``dates`` are consecutive calendar days (a record, not a selection)."""
        d = np.array(self.dates, dtype="datetime64[D]")
        return bool(np.all(np.diff(d).astype(np.int64) == 1))


class DaySplit(tuple):
    """``(train, validation, test)``: sorted, disjoint ``LongTensor`` day indices."""

    __slots__ = ()
    _fields = ("train", "validation", "test")

    def __new__(cls, train, validation, test):
        return tuple.__new__(cls, (train, validation, test))

    def __getnewargs__(self):  # pickling (e.g. to worker processes) calls __new__ with these
        return tuple(self)

    train = property(lambda self: self[0])
    validation = property(lambda self: self[1])
    test = property(lambda self: self[2])

    def _asdict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self._fields, self, strict=True))


def split_days(
    n_days: int, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> DaySplit:
    """Split day indices ``0..n_days-1`` at random, once, into train / validation / test.

    Deterministic for a given ``(n_days, seed, fractions)`` on every platform (numpy PCG64).
    Validation and test get ``round(fraction * n_days)`` days (at least one when their
    fraction is positive), train the rest. Each part is returned sorted.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or abs(f.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    counts = [0, 0, 0]
    for k in (1, 2):
        counts[k] = max(1, round(f[k] * n_days)) if f[k] > 0 else 0
    counts[0] = n_days - counts[1] - counts[2]
    if counts[0] < (1 if f[0] > 0 else 0):
        raise ValueError(f"{n_days} days are too few for fractions {fractions}")
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(n_days)
    parts, start = [], 0
    for c in counts:
        parts.append(torch.from_numpy(np.sort(perm[start:start + c])).long())
        start += c
    return DaySplit(*parts)


def calendar_index(src_dates: Sequence[str], dst_dates: Sequence[str]) -> np.ndarray:
    """For each destination date, the index of the source day to use, aligned by calendar date.

    The same date if the source has it; otherwise the first source day with the same month and
    day (another year); 29 February falls back to 28 February. Raises if a destination date
    has no match (the source does not cover that part of the year).
    """
    src = np.array(src_dates, dtype="datetime64[D]")
    exact = {str(d): i for i, d in reversed(list(enumerate(src)))}
    by_md = {}
    for i, d in reversed(list(enumerate(src))):
        by_md[str(d)[5:]] = i
    out = np.empty(len(dst_dates), dtype=np.int64)
    for j, d in enumerate(dst_dates):
        d = str(np.datetime64(d, "D"))
        i = exact.get(d, by_md.get(d[5:]))
        if i is None and d[5:] == "02-29":
            i = by_md.get("02-28")
        if i is None:
            raise ProfileDataError(f"no source day for {d} (source covers {src[0]}..{src[-1]})")
        out[j] = i
    return out


def whole_days(series: TimeSeries, partial_days: Literal["error", "drop"] = "error"):
    """``(first_row, n_days)`` of the whole days (00:00 to the last step) in ``series``.

    A series that starts after 00:00 or ends before the last step of a day raises, naming the
    line, unless ``partial_days="drop"`` (then the partial days at either end are dropped).
    """
    T = 1440 // series.dt_minutes
    st = series.timestamps
    minute = (st - st.astype("datetime64[D]")).astype(np.int64)
    starts = np.flatnonzero(minute == 0)
    if starts.size == 0:
        raise ProfileDataError(f"{series.source}: no step starts at 00:00: not one whole day")
    first = int(starts[0])
    n_days = (len(st) - first) // T
    used = first + n_days * T
    if partial_days == "error" and (first != 0 or used != len(st)):
        line = 2 if first else used + 2
        raise ProfileDataError(
            f"{series.source}: line {line}: the series must consist of whole days from 00:00 "
            f"({T} steps of {series.dt_minutes} min a day); it starts at {st[0]} and ends at "
            f"{st[-1]}. Trim the file or pass partial_days='drop'."
        )
    if n_days == 0:
        raise ProfileDataError(f"{series.source}: shorter than one whole day")
    return first, n_days


def profiles_from_series(
    series: TimeSeries,
    *,
    tariff: Tariff = DEFAULT_TARIFF,
    fallback: Profiles | None = None,
    partial_days: Literal["error", "drop"] = "error",
    dtype: torch.dtype = torch.float32,
) -> Profiles:
    """Build :class:`Profiles` from a validated series (e.g. :func:`read_profile_csv`).

    * demand: all ``demand_kw*`` columns (at least one required).
    * PV / temperature: the ``pv_kw_per_kwp*`` / ``temp_out_c`` columns; if absent, taken from
      ``fallback`` (e.g. the bundled profiles, same ``dt_minutes``) by calendar date
      (:func:`calendar_index`), else an error.
    * prices: the ``price_gbp_per_kwh`` / ``export_price_gbp_per_kwh`` columns if present,
      otherwise ``tariff`` on the series' dates (documented default, Octopus Flux; a
      :class:`~.tariff.DayAheadTariff` prices each date by its aligned schedule day).
    """
    T = 1440 // series.dt_minutes
    first, D = whole_days(series, partial_days)
    rows = slice(first, first + D * T)
    dates = tuple(str(d) for d in series.timestamps[rows][::T].astype("datetime64[D]"))

    def days(x: np.ndarray) -> torch.Tensor:
        x = x[rows]
        return torch.as_tensor(x.reshape((D, T) + x.shape[1:]), dtype=dtype)

    if not series.has("demand_kw"):
        raise ProfileDataError(f"{series.source}: no demand_kw column")
    if fallback is not None and fallback.dt_minutes != series.dt_minutes:
        raise ValueError(f"fallback has dt_minutes={fallback.dt_minutes}, the series "
                         f"{series.dt_minutes}: resample one of them explicitly")
    notes = [f"demand from {series.source}"]

    def from_fallback(name: str, column: str):
        if fallback is None:
            raise ProfileDataError(
                f"{series.source}: no '{column}' column; add one or pass fallback= (e.g. "
                "gridedge_env.data.load_bundled()) to take it from other profiles by date")
        notes.append(f"{column} from fallback profiles aligned by calendar date")
        return getattr(fallback, name)[torch.as_tensor(calendar_index(fallback.dates, dates))]

    if series.has("pv_kw_per_kwp"):
        pv, pv_names = days(series.stack("pv_kw_per_kwp")), tuple(series.labels("pv_kw_per_kwp"))
    else:
        pv, pv_names = from_fallback("pv_kw_per_kwp", "pv_kw_per_kwp"), fallback.pv_names
    if series.has("temp_out_c"):
        temp = days(series.columns["temp_out_c"])
    else:
        temp = from_fallback("temp_out_c", "temp_out_c")
    imp, exp = tariff.prices_on(dates, series.dt_minutes, dtype)
    if series.has("price_gbp_per_kwh"):
        imp = days(series.columns["price_gbp_per_kwh"])
    else:
        notes.append(f"import price from tariff {tariff.name}")
    if series.has("export_price_gbp_per_kwh"):
        exp = days(series.columns["export_price_gbp_per_kwh"])
    else:
        notes.append(f"export price from tariff {tariff.name}")
    return Profiles(
        demand_kw=days(series.stack("demand_kw")), pv_kw_per_kwp=pv.to(dtype),
        temp_out_c=temp.to(dtype), price_gbp_per_kwh=imp, export_price_gbp_per_kwh=exp,
        dates=dates, dt_minutes=series.dt_minutes,
        household_names=tuple(series.labels("demand_kw")), pv_names=pv_names,
        source="; ".join(notes),
    )


def _block_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    D, T = x.shape[:2]
    return x.reshape((D, T // k, k) + x.shape[2:]).mean(dim=2)


def _upsample(x: torch.Tensor, k: int, how: Upsample) -> torch.Tensor:
    D, T = x.shape[:2]
    if how == "hold":
        return x.repeat_interleave(k, dim=1)
    # linear between step centres over the whole record (days are consecutive), ends held
    flat = x.reshape((D * T,) + x.shape[2:])
    n = D * T
    pos = (torch.arange(n * k, dtype=torch.float64) + 0.5) / k - 0.5  # fine centres, coarse units
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 2))
    out = flat[lo] * (1 - w) + flat[hi] * w
    return out.reshape((D, T * k) + x.shape[2:])


def change_resolution(
    profiles: Profiles, dt_minutes: int, *, upsample: Upsample | None = None
) -> Profiles:
    """Explicitly resample every series of ``profiles`` to ``dt_minutes``.

    Coarser (a multiple of the current step): mean over the steps, which keeps energy for
    powers and gives the time-weighted mean price. Finer (the current step a multiple of the
    new one): only with ``upsample="hold"`` (repeat; keeps energy) or ``"linear"``
    (interpolation between step centres, across midnight; for a selection of days that are
    not consecutive use ``"hold"``).
    """
    old = profiles.dt_minutes
    if dt_minutes == old:
        return profiles
    if dt_minutes <= 0 or 1440 % dt_minutes:
        raise ValueError(f"dt_minutes must divide 1440, got {dt_minutes}")
    if dt_minutes > old:
        if dt_minutes % old:
            raise ValueError(f"{dt_minutes} min is not a multiple of {old} min")
        fn = lambda x: _block_mean(x, dt_minutes // old)  # noqa: E731
    else:
        if old % dt_minutes:
            raise ValueError(f"{old} min is not a multiple of {dt_minutes} min")
        if upsample not in ("hold", "linear"):
            raise ProfileDataError(
                f"going from {old} to {dt_minutes} min invents data: pass upsample='hold' or "
                "'linear' to choose how")
        fn = lambda x: _upsample(x, old // dt_minutes, upsample)  # noqa: E731
    new = {k: fn(v) for k, v in profiles._tensors().items()}
    note = f"; resampled {old} -> {dt_minutes} min ({'mean' if dt_minutes > old else upsample})"
    return dataclasses.replace(profiles, dt_minutes=dt_minutes, source=profiles.source + note,
                               **new)
