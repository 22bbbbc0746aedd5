"""Plots for the docs (matplotlib with Agg): a few days of every profile series (``docs/data.md``)
and the day-ahead price schedule of the ``-v1`` scenarios (``docs/scenarios.md``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundled import load_bundled
from .container import Profiles
from .schedule import PriceSchedule

FIVE_DAYS_START = "2016-04-11"
"""First day of the documentation plot: a Monday in April, with sun, heating and the week."""


def plot_five_days(
    path: str | Path, profiles: Profiles | None = None, start: str = FIVE_DAYS_START,
    n_days: int = 5,
) -> Path:
    """Draw demand, PV, temperature and prices of ``n_days`` consecutive days into ``path``.

    ``profiles`` defaults to :func:`~gridedge_env.data.load_bundled`. Returns ``path``.
    """
    import matplotlib  # matplotlib only when plotting (import time)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen

    if profiles is None:
            profiles = load_bundled()
    d0 = profiles.dates.index(start)
    days = list(range(d0, d0 + n_days))
    p = profiles.select_days(days)
    T, dt_h = p.n_steps, p.dt_h
    hours = np.arange(n_days * T) * dt_h + dt_h / 2  # step centres, h from the first midnight

    def flat(x):
        return x.reshape((n_days * T,) + tuple(x.shape[2:])).numpy()

    fig, ax = plt.subplots(4, 1, figsize=(10, 9.5), sharex=True, constrained_layout=True)
    dem = flat(p.demand_kw)
    for j in range(dem.shape[1]):
        name = p.household_names[j] if p.household_names else f"household {j}"
        ax[0].plot(hours, dem[:, j], lw=0.9, label=name)
    ax[0].plot(hours, dem.mean(axis=1), "k", lw=1.8, label="mean")
    ax[0].set_ylim(0, dem.max() * 1.3)
    ax[0].set_ylabel("demand (kW)")
    ax[0].legend(ncol=6, fontsize=8, loc="upper left")
    pv = flat(p.pv_kw_per_kwp)
    for j in range(pv.shape[1]):
        ax[1].plot(hours, pv[:, j], lw=0.9, label=p.pv_names[j] if p.pv_names else f"PV {j}")
    ax[1].set_ylim(0, max(pv.max(), 0.1) * 1.3)
    ax[1].set_ylabel("PV (kW per kWp)")
    ax[1].legend(ncol=8, fontsize=8, loc="upper left")
    ax[2].plot(hours, flat(p.temp_out_c), color="tab:red")
    ax[2].set_ylabel("outdoor temp. (°C)")
    ax[3].step(hours - dt_h / 2, flat(p.price_gbp_per_kwh) * 100, where="post", label="import")
    ax[3].step(hours - dt_h / 2, flat(p.export_price_gbp_per_kwh) * 100, where="post",
               label="export")
    ax[3].set_ylabel("price (p/kWh)")
    ax[3].legend(fontsize=8, loc="upper left")
    ticks = np.arange(0, n_days * 24 + 1, 6)
    ax[3].set_xticks(ticks)
    ax[3].set_xticklabels([f"{int(h % 24):02d}:00" if h % 24 else "" for h in ticks], fontsize=7)
    for a in ax:
        a.grid(alpha=0.3)
        for k in range(n_days + 1):
            a.axvline(24 * k, color="0.5", lw=0.6)
    for k, d in enumerate(p.dates):
        wd = np.datetime64(d, "D").astype(object).strftime("%a %d %b %Y")
        ax[0].annotate(wd, (24 * k + 12, 1.0), xycoords=("data", "axes fraction"),
                       ha="center", va="bottom", fontsize=8)
    ax[3].set_xlabel(f"time of day (fixed clock ≈ UTC), {p.dt_minutes}-min steps")
    fig.suptitle(f"{n_days} days of the bundled profiles ({p.dates[0]} to {p.dates[-1]})",
                 fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DTOU_WEEK_START = "2016-01-16"
"""First day of the -v1 price plot: a Saturday whose aligned 2013 week has low and high events."""


def plot_dtou_prices(
    path: str | Path, schedule: PriceSchedule, flat: Profiles, dynamic: Profiles,
    start: str = DTOU_WEEK_START, n_days: int = 7,
) -> Path:
    """Draw a day-ahead ``schedule`` (days x steps, coloured by level) over the import prices
    of ``n_days`` days from ``start`` under a clock tariff (``flat``) and under the schedule
    (``dynamic``, same dates), into ``path``. Returns ``path``."""
    import matplotlib  # matplotlib only when plotting (import time)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the backend is chosen
    from matplotlib.colors import ListedColormap  # needs the backend chosen above

    fig, ax = plt.subplots(2, 1, figsize=(9, 6.4), constrained_layout=True,
                           gridspec_kw={"height_ratios": [1.25, 1]})
    levels = np.asarray(schedule.levels_gbp_per_kwh)
    k = len(levels)
    rank_of = np.argsort(np.argsort(levels))  # (K,): 0 = cheapest level
    palette = (["tab:green", "0.85", "tab:red"] if k == 3
               else [plt.get_cmap("viridis")(x) for x in np.linspace(0, 1, k)])
    ax[0].imshow(rank_of[schedule.level_index].T, aspect="auto", interpolation="nearest",
                 origin="lower", cmap=ListedColormap(palette), vmin=-0.5, vmax=k - 0.5,
                 extent=(0, schedule.n_days, 0, 24))
    for j in np.argsort(levels):
        ax[0].plot([], [], "s", color=palette[rank_of[j]],
                   label=f"{schedule.level_names[j]} {levels[j] * 100:.2f} p/kWh")
    ax[0].legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax[0].set(ylabel="time of day (h)", yticks=[0, 6, 12, 18, 24],
              xlabel=f"day of {schedule.dates[0][:4]}",
              title=f"{schedule.name}: level of every half-hour")
    d0 = dynamic.dates.index(start)
    days = list(range(d0, d0 + n_days))
    T, dt_h = dynamic.n_steps, dynamic.dt_h
    hours = np.arange(n_days * T) * dt_h
    for p, label, kw in ((flat, "-v0 import (clock tariff)", {"color": "0.5"}),
                         (dynamic, "-v1 import (day-ahead schedule)", {"color": "tab:blue"}),
                         (dynamic, "export (both)", {"color": "tab:orange", "ls": "--"})):
        x = p.export_price_gbp_per_kwh if label.startswith("export") else p.price_gbp_per_kwh
        ax[1].step(hours, x[days].reshape(-1).numpy() * 100, where="post", lw=1.2, label=label,
                   **kw)
    for k, d in enumerate(dynamic.dates[d0:d0 + n_days]):
        ax[1].axvline(24 * k, color="0.6", lw=0.6)
        wd = np.datetime64(d, "D").astype(object).strftime("%a %d %b")
        ax[1].annotate(wd, (24 * k + 12, 1.0), xycoords=("data", "axes fraction"), ha="center",
                       va="bottom", fontsize=8)
    top = float(max(dynamic.price_gbp_per_kwh[days].max(), flat.price_gbp_per_kwh[days].max()))
    ax[1].set(ylabel="price (p/kWh)", xlim=(0, n_days * 24), ylim=(0, top * 100 * 1.3),
              xticks=np.arange(0, n_days * 24 + 1, 12),
              xlabel=f"hours from {start} 00:00 ({dynamic.dates[0][:4]} profile days)")
    ax[1].legend(fontsize=8, loc="upper right", ncol=3)
    ax[1].grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
