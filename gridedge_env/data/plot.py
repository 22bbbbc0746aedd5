"""Plot a few days of every profile series (for ``docs/data.md``); matplotlib with Agg."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundled import load_bundled
from .container import Profiles

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
