"""The user-CSV loader: every error names file, column and line; nothing is resampled."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
import torch

from gridedge_env.data import (
    ProfileDataError,
    UnitWarning,
    load_bundled,
    profiles_from_series,
    read_profile_csv,
)


def stamps(n, start="2024-01-01 00:00", dt=30):
    t0 = np.datetime64(start.replace(" ", "T"), "m")
    return [str(t0 + i * np.timedelta64(dt, "m")).replace("T", " ") for i in range(n)]


def write(tmp_path, header, rows, name="p.csv"):
    path = tmp_path / name
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def day_rows(n=48, dt=30, demand=0.5, start="2024-01-01 00:00", **extra):
    return [[s, demand, *extra.values()] for s in stamps(n, start, dt)]


def test_valid_file_round_trip(tmp_path):
    n = 96
    ts = stamps(n)
    rows = [[s, 0.3 + 0.01 * (i % 7), 1.2, 0.1 * (i % 5), 5.0, 0.25, 0.15]
            for i, s in enumerate(ts)]
    header = ["timestamp", "demand_kw_a", "demand_kw_b", "pv_kw_per_kwp", "temp_out_c",
              "price_gbp_per_kwh", "export_price_gbp_per_kwh"]
    s = read_profile_csv(write(tmp_path, header, rows))
    assert len(s) == n and s.dt_minutes == 30
    assert s.labels("demand_kw") == ["a", "b"]
    assert s.stack("demand_kw").shape == (n, 2)
    p = profiles_from_series(s)
    assert p.demand_kw.shape == (2, 48, 2) and p.pv_kw_per_kwp.shape == (2, 48, 1)
    assert p.dates == ("2024-01-01", "2024-01-02")
    assert p.household_names == ("a", "b")
    torch.testing.assert_close(p.price_gbp_per_kwh, torch.full((2, 48), 0.25))
    torch.testing.assert_close(p.export_price_gbp_per_kwh, torch.full((2, 48), 0.15))
    assert p.demand_kw[0, 1, 0].item() == pytest.approx(0.31)


def test_gzip_and_utc_offset(tmp_path):
    ts = [s.replace(" ", "T") + "+01:00" for s in stamps(48)]
    text = "timestamp,demand_kw\n" + "".join(f"{s},0.4\n" for s in ts)
    path = tmp_path / "p.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    s = read_profile_csv(path)
    assert s.utc_offset_minutes == 60 and str(s.timestamps[0]) == "2024-01-01T00:00"


def test_missing_file(tmp_path):
    with pytest.raises(ProfileDataError, match="no such file"):
        read_profile_csv(tmp_path / "nope.csv")


def test_missing_timestamp_column(tmp_path):
    path = write(tmp_path, ["time", "demand_kw"], [["2024-01-01 00:00", 1]])
    with pytest.raises(ProfileDataError, match=r"p\.csv: missing column 'timestamp'"):
        read_profile_csv(path)


def test_missing_required_quantity(tmp_path):
    path = write(tmp_path, ["timestamp", "temp_out_c"], [[s, 5] for s in stamps(48)])
    with pytest.raises(ProfileDataError, match="missing column 'demand_kw'"):
        read_profile_csv(path)


def test_unknown_column_and_ignore(tmp_path):
    rows = [[s, 0.5, 7] for s in stamps(48)]
    path = write(tmp_path, ["timestamp", "demand_kw", "humidity"], rows)
    with pytest.raises(ProfileDataError, match="unknown column 'humidity'"):
        read_profile_csv(path)
    assert set(read_profile_csv(path, extra="ignore").columns) == {"demand_kw"}


@pytest.mark.parametrize("col,hint", [("demand_w", "in W"), ("demand_kwh_x", "energy per step"),
                                      ("temp_out_k", "in K"), ("price_p_per_kwh", "p/kWh")])
def test_wrong_unit_column_names(tmp_path, col, hint):
    path = write(tmp_path, ["timestamp", "demand_kw", col], [[s, 0.5, 1] for s in stamps(48)])
    with pytest.raises(ProfileDataError, match=f"column '{col}': .*{hint}"):
        read_profile_csv(path)


def test_labelled_single_quantity_rejected(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "temp_out_c_x"],
                 [[s, 0.5, 1] for s in stamps(48)])
    with pytest.raises(ProfileDataError, match="takes no label"):
        read_profile_csv(path)


def test_duplicate_column(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "demand_kw"],
                 [[s, 0.5, 1] for s in stamps(48)])
    with pytest.raises(ProfileDataError, match="appears twice"):
        read_profile_csv(path)


def test_gap_in_timestamps(tmp_path):
    rows = day_rows(48)
    del rows[10:12]  # 05:00 and 05:30 missing
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError,
                       match=r"column 'timestamp', line 12: gap of 2 missing step\(s\)"):
        read_profile_csv(path)


def test_repeated_timestamp(tmp_path):
    rows = day_rows(48)
    rows[5][0] = rows[4][0]
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError, match="line 7: .*not after the previous"):
        read_profile_csv(path)


def test_wrong_resolution_and_explicit_dt(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw"], day_rows(24, dt=60))
    with pytest.raises(ProfileDataError, match="time step is 60 min, expected 30 min"):
        read_profile_csv(path)
    s = read_profile_csv(path, dt_minutes=60)
    assert s.dt_minutes == 60
    p = profiles_from_series(s, fallback=load_bundled(60))
    assert p.demand_kw.shape == (1, 24, 1) and p.n_steps == 24


def test_irregular_step(tmp_path):
    rows = day_rows(48)
    rows[3][0] = rows[3][0][:-2] + "45"  # 01:30 -> 01:45
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError, match="line 5: irregular step of 45 min"):
        read_profile_csv(path)


def test_mixed_utc_offsets(tmp_path):
    ts = [s.replace(" ", "T") + "+00:00" for s in stamps(48)]
    ts[20] = ts[20].replace("+00:00", "+01:00")
    path = write(tmp_path, ["timestamp", "demand_kw"], [[s, 0.5] for s in ts])
    with pytest.raises(ProfileDataError, match="line 22: UTC offset"):
        read_profile_csv(path)


def test_bad_timestamp(tmp_path):
    rows = day_rows(48)
    rows[7][0] = "yesterday"
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError, match="line 9: cannot parse 'yesterday'"):
        read_profile_csv(path)


@pytest.mark.parametrize("value,what", [("abc", "non-numeric value 'abc'"), ("", "empty value"),
                                        ("nan", "'nan' is not a finite number"),
                                        ("inf", "'inf' is not a finite number")])
def test_bad_numbers(tmp_path, value, what):
    rows = day_rows(48, temp=5.0)
    rows[30][2] = value
    path = write(tmp_path, ["timestamp", "demand_kw", "temp_out_c"], rows)
    with pytest.raises(ProfileDataError, match=f"column 'temp_out_c', line 32: {what}"):
        read_profile_csv(path)


def test_ragged_line(tmp_path):
    rows = day_rows(48)
    rows[2].append(3)
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError, match="line 4 has 3 fields"):
        read_profile_csv(path)


def test_demand_in_watts(tmp_path):
    rows = day_rows(48, demand=350.0)
    rows[9][1] = 2500.0
    path = write(tmp_path, ["timestamp", "demand_kw_h1"], rows)
    with pytest.raises(ProfileDataError,
                       match=r"column 'demand_kw_h1', line 11: value 2500 kW .*probably in W"):
        read_profile_csv(path)
    with pytest.warns(UnitWarning, match="probably in W"):
        read_profile_csv(path, check_units="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_profile_csv(path, check_units="off")


def test_negative_demand(tmp_path):
    rows = day_rows(48)
    rows[0][1] = -0.4
    path = write(tmp_path, ["timestamp", "demand_kw"], rows)
    with pytest.raises(ProfileDataError, match="line 2: value -0.4 kW"):
        read_profile_csv(path)


def test_high_household_demand_warns(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw"], day_rows(48, demand=45.0))
    with pytest.warns(UnitWarning, match="above 30 kW"):
        read_profile_csv(path)


def test_pv_in_w_per_kwp(tmp_path):
    rows = day_rows(48, pv=0.0)
    rows[24][2] = 640.0
    path = write(tmp_path, ["timestamp", "demand_kw", "pv_kw_per_kwp"], rows)
    with pytest.raises(ProfileDataError, match="pv_kw_per_kwp', line 26: .*W/kWp"):
        read_profile_csv(path)


def test_temperature_in_kelvin_and_fahrenheit(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "temp_out_c"], day_rows(48, t=281.0))
    with pytest.raises(ProfileDataError, match="Kelvin"):
        read_profile_csv(path)
    path = write(tmp_path, ["timestamp", "demand_kw", "temp_out_c"], day_rows(48, t=45.0))
    with pytest.warns(UnitWarning, match="Fahrenheit"):
        read_profile_csv(path)


def test_price_in_pence(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "price_gbp_per_kwh"], day_rows(48, p=24.5))
    with pytest.raises(ProfileDataError, match="p/kWh"):
        read_profile_csv(path)


def test_partial_days(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "pv_kw_per_kwp", "temp_out_c"],
                 day_rows(96, start="2024-01-01 12:00", pv=0.0, t=5.0))
    s = read_profile_csv(path)
    with pytest.raises(ProfileDataError, match="line 2: the series must consist of whole days"):
        profiles_from_series(s)
    p = profiles_from_series(s, partial_days="drop")
    assert p.dates == ("2024-01-02",)


def test_missing_pv_needs_fallback(tmp_path):
    path = write(tmp_path, ["timestamp", "demand_kw", "temp_out_c"], day_rows(48, t=4.0))
    s = read_profile_csv(path)
    with pytest.raises(ProfileDataError, match="no 'pv_kw_per_kwp' column"):
        profiles_from_series(s)
    bundled = load_bundled()
    p = profiles_from_series(s, fallback=bundled)
    j = bundled.dates.index("2016-01-01")  # 2024-01-01 takes 1 January of the bundled year
    torch.testing.assert_close(p.pv_kw_per_kwp[0], bundled.pv_kw_per_kwp[j])
    torch.testing.assert_close(p.temp_out_c[0], torch.full((48,), 4.0))
    assert "fallback" in p.source and "tariff" in p.source
