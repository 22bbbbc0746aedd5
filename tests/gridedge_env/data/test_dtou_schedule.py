"""The shipped LCL dToU schedule, its conversion from the reference CSV, the day alignment rule
and the day-ahead tariff's prices."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gridedge_env.data import (
    LCL_DTOU_2013,
    LCL_DTOU_EXPORT_GBP_PER_KWH,
    LCL_DTOU_LEVELS_GBP_PER_KWH,
    OCTOPUS_FLUX_2023,
    PROFILES_DIR,
    DayAheadTariff,
    ProfileDataError,
    align_days,
    read_lcl_dtou,
    read_price_schedule,
)
from gridedge_env.data.schedule import schedule_from_prices, write_price_schedule

ROOT = Path(__file__).resolve().parents[3]
CSV = ROOT.parent / "shared" / "data" / "profiles" / "uk_lcl_dtou_2013_halfhourly.csv"
needs_csv = pytest.mark.skipif(not CSV.is_file(), reason="shared/data/profiles not present")
YEAR_2013 = tuple(str(np.datetime64("2013-01-01") + i) for i in range(365))


@pytest.fixture(scope="module")
def schedule():
    return LCL_DTOU_2013.schedule


def test_shipped_schedule_is_in_the_package_with_the_trial_levels(schedule):
    assert LCL_DTOU_2013.schedule_file.parent == PROFILES_DIR
    assert LCL_DTOU_2013.schedule_file.stat().st_size < 40_000
    assert schedule.dates == YEAR_2013 and schedule.level_index.shape == (365, 48)
    assert dict(zip(schedule.level_names, schedule.levels_gbp_per_kwh, strict=True)) == \
        LCL_DTOU_LEVELS_GBP_PER_KWH
    # the counts of shared/data/profiles/README.md: 1,660 low, 15,072 normal, 788 high
    assert np.bincount(schedule.level_index.ravel()).tolist() == [1660, 15072, 788]
    meta = json.loads(LCL_DTOU_2013.schedule_file.read_text())
    assert "UK Power Networks" in meta["source"] and "docs/data.md" in meta["notice"]


@needs_csv
def test_shipped_schedule_reproduces_every_half_hour_of_the_csv(schedule):
    s = read_lcl_dtou(CSV, groups=("all",))
    np.testing.assert_array_equal(schedule.prices().ravel(), s.columns["price_gbp_per_kwh"])
    assert tuple(str(d) for d in s.timestamps[::48].astype("datetime64[D]")) == schedule.dates


@needs_csv
def test_conversion_script_rebuilds_the_shipped_file_byte_for_byte(tmp_path):
    spec = importlib.util.spec_from_file_location("build_dtou", ROOT / "scripts" /
                                                  "build_dtou_schedule.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "schedule.json"
    mod.main(["--csv", str(CSV), "--out", str(out)])
    assert out.read_bytes() == LCL_DTOU_2013.schedule_file.read_bytes()


def test_alignment_rule_known_days():
    dates = ["2016-01-01", "2016-02-29", "2016-03-01", "2016-12-31", "2013-05-05",
             "2010-12-31", "2011-01-01"]
    got = [YEAR_2013[i] for i in align_days(dates, YEAR_2013)]
    # Fri -> same date 2013 is a Tue, +3 days; leap day -> 28 Feb 2013 (Thu) -> Mon 25 Feb;
    # a 2013 date is itself; past the year's ends: 7 days the other way
    assert got == ["2013-01-04", "2013-02-25", "2013-02-26", "2013-12-28", "2013-05-05",
                   "2013-12-27", "2013-01-05"]


@pytest.mark.parametrize("year", [2010, 2013, 2016, 2024])
def test_alignment_keeps_weekday_and_season(year):
    dates = np.arange(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year + 1}-01-01"))
    iso = [str(d) for d in dates]
    idx = align_days(iso, YEAR_2013)
    aligned = np.datetime64("2013-01-01") + idx
    assert np.array_equal((aligned.astype(np.int64) + 3) % 7, (dates.astype(np.int64) + 3) % 7)
    same = np.array([f"2013-{d[5:]}" if d[5:] != "02-29" else "2013-02-28" for d in iso],
                    dtype="datetime64[D]")
    gap = np.abs((aligned - same).astype(np.int64))
    assert gap.max() <= 10 and (gap <= 3).mean() > 0.98
    if year == 2013:
        assert np.array_equal(idx, np.arange(365))
    assert np.array_equal(idx, align_days(iso, YEAR_2013))  # deterministic


def test_alignment_needs_a_year_of_schedule():
    with pytest.raises(ValueError, match="no schedule day for 2016-12-31"):
        align_days(["2016-12-31"], YEAR_2013[:300])


def test_prices_on_averages_and_holds_the_schedule(schedule):
    dates = ("2016-01-16", "2016-01-17", "2016-07-01")
    day = schedule.prices()[align_days(dates, schedule.dates)]  # (3, 48)
    imp, exp = LCL_DTOU_2013.prices_on(dates, 30, torch.float64)
    np.testing.assert_array_equal(imp.numpy(), day)
    flux_imp, _ = OCTOPUS_FLUX_2023.prices_on(dates, 30, torch.float64)
    # a flat export price at the trial's low level: never above import, the bill stays convex
    torch.testing.assert_close(exp, torch.full_like(exp, LCL_DTOU_EXPORT_GBP_PER_KWH))
    assert torch.all(exp <= imp)
    assert not torch.equal(imp[0], imp[2]) and not torch.equal(imp, flux_imp)
    imp60, _ = LCL_DTOU_2013.prices_on(dates, 60, torch.float64)
    np.testing.assert_allclose(imp60.numpy(), day.reshape(3, 24, 2).mean(2), rtol=1e-12)
    imp15, _ = LCL_DTOU_2013.prices_on(dates, 15, torch.float32)
    assert imp15.dtype == torch.float32
    np.testing.assert_array_equal(imp15.numpy(), np.repeat(day, 2, axis=1).astype(np.float32))
    with pytest.raises(ValueError, match="dt_minutes must divide"):
        LCL_DTOU_2013.prices_on(dates, 7)


def test_clock_tariff_prices_on_is_its_day_prices():
    dates = ("2016-01-01", "2016-06-01")
    for a, b in zip(OCTOPUS_FLUX_2023.prices_on(dates, 30), OCTOPUS_FLUX_2023.day_prices(2, 30),
                    strict=True):
        assert torch.equal(a, b)


def test_schedule_round_trip_and_a_price_off_the_levels(tmp_path):
    levels, codes = {"cheap": 0.05, "dear": 0.5}, {"cheap": "c", "dear": "d"}
    prices = np.where(np.arange(96) % 48 >= 34, 0.5, 0.05)
    s = schedule_from_prices("test", ("2020-02-28", "2020-02-29"), prices, levels, codes,
                             meta={"source": "made up"})
    back = read_price_schedule(write_price_schedule(s, tmp_path / "s.json"))
    np.testing.assert_array_equal(back.prices(), prices.reshape(2, 48))
    assert back.dates == s.dates and back.meta == {"source": "made up"}
    prices[50] = 0.2
    with pytest.raises(ProfileDataError, match=r"mine\.csv: row 50 \(2020-02-29 step 2\): price 0.2"):
        schedule_from_prices("test", s.dates, prices, levels, codes, where="mine.csv")


@pytest.mark.parametrize("edit, match", [
    (lambda o: o.update(format="other"), "key 'format' must be"),
    (lambda o: o.pop("levels"), "missing key 'levels'"),
    (lambda o: o["levels"].append({"code": "X", "name": "x", "gbp_per_kwh": 67.2}),
     r"levels\[3\] must be"),
    (lambda o: o["days"].update({"2013-01-02": "N" * 47}), r"days\['2013-01-02'\] must be 48 codes"),
    (lambda o: o["days"].update({"2013-01-03": "N" * 47 + "Z"}), r"days\['2013-01-03'\]"),
    (lambda o: o["days"].pop("2013-06-01"), "2013-05-31 is followed by 2013-06-02"),
])
def test_bad_schedule_files_are_named(tmp_path, edit, match):
    obj = json.loads(LCL_DTOU_2013.schedule_file.read_text())
    edit(obj)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(ProfileDataError, match=match):
        read_price_schedule(path)
    tariff = DayAheadTariff("bad", path, OCTOPUS_FLUX_2023)
    with pytest.raises(ProfileDataError, match="bad.json"):
        tariff.prices_on(("2016-01-01",))
