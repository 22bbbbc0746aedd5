"""Bundled profiles, the container, day splits, resampling, tariffs and per-agent gathering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gridedge_env.data import (
    DEFAULT_TARIFF,
    OCTOPUS_FLUX_2023,
    PROFILES_DIR,
    ProfileDataError,
    Profiles,
    TouTariff,
    assign_agents,
    calendar_index,
    change_resolution,
    gather_agents,
    load_bundled,
    provenance,
    split_days,
)


@pytest.fixture(scope="module")
def bundled() -> Profiles:
    return load_bundled()


def test_shipped_files_small_and_match_provenance():
    files = [f for f in PROFILES_DIR.iterdir() if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 3_000_000
    prov = provenance()
    for key in ("demand_pv", "temperature"):
        data = (PROFILES_DIR / prov[key]["file"]).read_bytes()
        assert len(data) == prov[key]["bytes"]
        assert hashlib.sha256(data).hexdigest() == prov[key]["sha256"]
    names = {f.name for f in files}
    assert {"LICENSE-simbench-ODbL.txt", "LICENSE-try2010-temperature.txt"} <= names
    assert json.loads((PROFILES_DIR / "provenance.json").read_text()) == prov


def test_bundled_shapes_and_units(bundled):
    p = bundled
    import gridedge_env

    # the files live inside the package, not in ../shared
    assert PROFILES_DIR.parent.parent == Path(gridedge_env.__file__).resolve().parent
    assert (p.n_days, p.n_steps, p.dt_minutes, p.dt_h) == (366, 48, 30, 0.5)
    assert p.demand_kw.shape == (366, 48, 5) and p.pv_kw_per_kwp.shape == (366, 48, 8)
    for x in (p.temp_out_c, p.price_gbp_per_kwh, p.export_price_gbp_per_kwh):
        assert x.shape == (366, 48) and x.dtype == torch.float32
    assert p.dates[0] == "2016-01-01" and p.dates[-1] == "2016-12-31"
    assert p.is_contiguous_record()
    assert p.household_names == ("H0-A", "H0-B", "H0-C", "H0-G", "H0-L")
    # household demand in kW: annual 1.4-3.8 MWh, peaks of a few kW, never negative
    annual = (p.demand_kw.sum(dim=(0, 1)) * p.dt_h).numpy()
    assert np.all((annual > 1400) & (annual < 3800))
    assert 0 <= p.demand_kw.min() and p.demand_kw.max() < 3.01
    # PV per kWp: 0 at night, 575-700 full-load hours a year (Germany)
    flh = (p.pv_kw_per_kwp.sum(dim=(0, 1)) * p.dt_h).numpy()
    assert np.all((flh > 550) & (flh < 720)) and p.pv_kw_per_kwp.max() < 0.7
    # dark all year 00:00-03:00 and 20:00-24:00: the fixed clock is close to UTC
    assert p.pv_kw_per_kwp[:, :6].abs().max() == 0 and p.pv_kw_per_kwp[:, 40:].abs().max() == 0
    # temperature in degC, maritime climate: mean ~10, January colder than July
    assert 9 < p.temp_out_c.mean() < 11
    jan, jul = p.temp_out_c[:31].mean(), p.temp_out_c[182:213].mean()
    assert jan < 5 < 15 < jul
    # prices: the default tariff
    torch.testing.assert_close(p.price_gbp_per_kwh[100], DEFAULT_TARIFF.prices()[0])


def test_bundled_leap_day_temperature_is_28_february(bundled):
    i29 = bundled.dates.index("2016-02-29")
    torch.testing.assert_close(bundled.temp_out_c[i29], bundled.temp_out_c[i29 - 1])


def test_split_days_deterministic_disjoint_covering():
    a, b = split_days(366, seed=3), split_days(366, seed=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    allidx = torch.cat(list(a))
    assert allidx.numel() == 366 and torch.equal(allidx.sort().values, torch.arange(366))
    assert [len(x) for x in a] == [256, 55, 55]
    for x in a:
        assert torch.equal(x, x.sort().values) and x.dtype == torch.long
    c = split_days(366, seed=4)
    assert not torch.equal(a.test, c.test)
    np.testing.assert_array_equal(split_days(10, 0, (0.5, 0.25, 0.25)).test.numpy(),
                                  split_days(10, 0, (0.5, 0.25, 0.25)).test.numpy())
    assert [len(x) for x in split_days(10, 0, (0.8, 0.2, 0.0))] == [8, 2, 0]
    with pytest.raises(ValueError):
        split_days(10, 0, (0.5, 0.6, 0.1))


def test_profiles_split_and_select(bundled):
    parts = bundled.split(seed=0)
    assert sum(p.n_days for p in parts.values()) == 366
    assert not set(parts["train"].dates) & set(parts["test"].dates)
    idx = split_days(366, 0).test
    torch.testing.assert_close(parts["test"].demand_kw, bundled.demand_kw[idx])
    assert not parts["test"].is_contiguous_record()


def test_profiles_validates_shapes(bundled):
    with pytest.raises(ValueError, match="temp_out_c"):
        Profiles(bundled.demand_kw, bundled.pv_kw_per_kwp, bundled.temp_out_c[:, :24],
                 bundled.price_gbp_per_kwh, bundled.export_price_gbp_per_kwh, bundled.dates)


def test_change_resolution(bundled):
    p60 = load_bundled(60)
    assert p60.demand_kw.shape == (366, 24, 5)
    # hourly means keep energy
    torch.testing.assert_close(p60.demand_kw.sum(1) * 1.0, bundled.demand_kw.sum(1) * 0.5)
    with pytest.raises(ProfileDataError, match="upsample"):
        load_bundled(15)
    p15 = load_bundled(15, upsample="hold")
    torch.testing.assert_close(p15.demand_kw.sum(1) * 0.25, bundled.demand_kw.sum(1) * 0.5)
    lin = change_resolution(bundled, 15, upsample="linear")
    assert lin.temp_out_c.shape == (366, 96)
    assert (lin.temp_out_c[:, ::2] - bundled.temp_out_c).abs().max() < 1.5


def test_tariff_flux():
    imp, exp = OCTOPUS_FLUX_2023.prices(30)
    assert imp.shape == exp.shape == (48,)
    assert imp[0].item() == pytest.approx(0.3352) and imp[4].item() == pytest.approx(0.2011)
    assert imp[9].item() == pytest.approx(0.2011) and imp[10].item() == pytest.approx(0.3352)
    assert imp[32].item() == pytest.approx(0.4693) and imp[38].item() == pytest.approx(0.3352)
    torch.testing.assert_close(imp - exp, torch.full((48,), 0.11))
    # a band edge inside a step: time-weighted mean
    imp120, _ = OCTOPUS_FLUX_2023.prices(120)
    assert imp120[1].item() == pytest.approx(0.2011)  # 02:00-04:00
    assert imp120[2].item() == pytest.approx((0.2011 + 0.3352) / 2)  # 04:00-06:00
    flat = OCTOPUS_FLUX_2023.with_flat_export(0.15)
    assert torch.all(flat.prices()[1] == torch.tensor(0.15))
    wrap = TouTariff("night", 0.3, 0.05, import_windows=((23, 7, 0.1),))
    w = wrap.prices(60)[0]
    assert w[23].item() == pytest.approx(0.1) and w[6].item() == pytest.approx(0.1)
    assert w[7].item() == pytest.approx(0.3)


def test_calendar_index():
    src = [str(np.datetime64("2010-01-01") + i) for i in range(365)]
    dst = ["2016-02-28", "2016-02-29", "2016-03-01", "2010-06-01"]
    idx = calendar_index(src, dst)
    assert [src[i] for i in idx] == ["2010-02-28", "2010-02-28", "2010-03-01", "2010-06-01"]
    with pytest.raises(ProfileDataError, match="no source day"):
        calendar_index(src[:100], ["2016-12-01"])


def test_assign_agents_deterministic_and_balanced():
    a = assign_agents(1000, 5, 8, seed=7)
    b = assign_agents(1000, 5, 8, seed=7)
    for f in ("household", "pv", "scale", "offset_steps"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.bincount(a.household, minlength=5).tolist() == [200] * 5
    assert torch.bincount(a.pv, minlength=8).tolist() == [125] * 8
    assert 0.8 <= a.scale.min() and a.scale.max() <= 1.25
    assert a.offset_steps.abs().max() <= 2 and len(a.offset_steps.unique()) == 5
    assert not torch.equal(a.household, assign_agents(1000, 5, 8, seed=8).household)


def test_gather_agents_matches_loop(bundled):
    a = assign_agents(37, bundled.n_households, bundled.n_pv, seed=1, max_offset_steps=50)
    days = torch.tensor([0, 5, 200, 365])
    demand, pv = gather_agents(bundled, a, days)
    assert demand.shape == pv.shape == (4, 48, 37)
    flat = bundled.demand_kw.reshape(-1, bundled.n_households)
    n = flat.shape[0]
    for k, d in enumerate(days.tolist()):
        for t in (0, 17, 47):
            for i in range(37):
                j = (d * 48 + t + int(a.offset_steps[i])) % n
                want = a.scale[i] * flat[j, a.household[i]]
                assert demand[k, t, i].item() == pytest.approx(want.item())
                assert pv[k, t, i] == bundled.pv_kw_per_kwp[d, t, a.pv[i]]
    # default: all days; zero offsets work on a selection
    a0 = assign_agents(10, 5, 8, seed=0, max_offset_steps=0, scale_range=(1.0, 1.0))
    d_all, _ = gather_agents(bundled, a0)
    assert d_all.shape == (366, 48, 10)
    sel = bundled.select_days([3, 9])
    d_sel, _ = gather_agents(sel, a0)
    torch.testing.assert_close(d_sel, d_all[[3, 9]])
    with pytest.raises(ValueError, match="contiguous record"):
        gather_agents(sel, a)


def test_day_split_and_env_params_pickle():
    """Vectorised RL wrappers send the environment to worker processes by pickling it."""
    import pickle

    from gridedge_env.data import split_days
    from gridedge_env.registry import env_params

    s = split_days(30, 0)
    t = pickle.loads(pickle.dumps(s))
    assert type(t) is type(s) and all((a == b).all() for a, b in zip(s, t, strict=True))
    assert pickle.loads(pickle.dumps(env_params("ieee13-50-v0"))).n_agents == 50
