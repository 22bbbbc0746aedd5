"""Adapters on the reference files in ../shared/data/profiles (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gridedge_env.data import (
    LCL_DTOU_LEVELS_GBP_PER_KWH,
    ProfileDataError,
    load_bundled,
    profiles_from_series,
    read_citylearn_csv,
    read_lcl_dtou,
    read_simbench_csv,
)

LCL = "uk_lcl_dtou_2013_halfhourly.csv"
SIMBENCH = "simbench_2016_household_pv_30min.csv"
CITYLEARN = "citylearn2022_fontana_hourly.csv"


def test_lcl_dtou_real_price_and_kw(profiles_dir):
    s = read_lcl_dtou(profiles_dir / LCL)
    assert len(s) == 17520 and s.dt_minutes == 30
    assert str(s.timestamps[0]) == "2013-01-01T00:00"
    price = s.columns["price_gbp_per_kwh"]
    levels, counts = np.unique(price.round(4), return_counts=True)
    assert levels.tolist() == sorted(LCL_DTOU_LEVELS_GBP_PER_KWH.values())
    assert counts.tolist() == [1660, 15072, 788]  # low, normal, high half-hours in 2013
    # kWh per half-hour -> kW: the mean household uses 4,029 kWh in the year
    assert s.columns["demand_kw_mean_all"].sum() * 0.5 == pytest.approx(4029, abs=1)
    p = profiles_from_series(s, fallback=load_bundled())
    assert p.demand_kw.shape == (365, 48, 3) and p.dates[0] == "2013-01-01"
    assert p.household_names == ("mean_all", "mean_flex", "mean_noflex")
    # the real price series is kept, not replaced by the tariff
    torch.testing.assert_close(p.price_gbp_per_kwh.reshape(-1).double(),
                               torch.from_numpy(price), atol=1e-6, rtol=0)


def test_simbench_reference_matches_bundled(profiles_dir):
    s = read_simbench_csv(profiles_dir / SIMBENCH)
    b = load_bundled()
    d = s.stack("demand_kw").reshape(366, 48, 5)
    pv = s.stack("pv_kw_per_kwp").reshape(366, 48, 8)
    # same upstream, independent reductions (both rounded to 4 significant digits)
    assert np.abs(d - b.demand_kw.numpy()).max() < 2e-3
    assert np.abs(pv - b.pv_kw_per_kwp.numpy()).max() < 1e-3
    assert s.labels("demand_kw") == list(b.household_names)
    assert s.labels("pv_kw_per_kwp") == list(b.pv_names)


def test_citylearn_hourly_needs_explicit_upsampling(profiles_dir):
    path = profiles_dir / CITYLEARN
    with pytest.raises(ProfileDataError, match="hourly.*upsample='hold'"):
        read_citylearn_csv(path)
    h = read_citylearn_csv(path, 60, gbp_per_usd=0.8)
    assert h.dt_minutes == 60 and len(h) == 8760
    assert str(h.timestamps[0]) == "2016-07-31T23:00"
    assert h.stack("demand_kw").shape == (8760, 17)
    assert 0.4 < h.columns["price_gbp_per_kwh"].max() < 0.45  # 0.54 USD * 0.8
    hold = read_citylearn_csv(path, upsample="hold", buildings=(1, 9))
    assert hold.dt_minutes == 30 and len(hold) == 17520
    for c in hold.columns:  # hold keeps energy: kW * 0.5 h summed = hourly kWh summed
        assert hold.columns[c].sum() * 0.5 == pytest.approx(h.columns[c].sum())
    lin = read_citylearn_csv(path, upsample="linear", buildings=(1,))
    assert len(lin) == 17520
    p = profiles_from_series(hold, fallback=load_bundled(), partial_days="drop")
    assert p.dates[0] == "2016-08-01" and p.n_days == 364
    assert p.pv_kw_per_kwp.max() < 1.0 and p.pv_names == ("b1", "b9")
