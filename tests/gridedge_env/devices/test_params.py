"""Per-agent sampling (ranges, seeds, dtypes) and the device table."""

import csv
import dataclasses
import io

import pytest
import torch

from gridedge_env.devices import (
    BatteryConfig,
    GeneratorConfig,
    HeatPumpConfig,
    HouseholdConfig,
    device_table,
    sample_battery,
    sample_generator,
    sample_heat_pump,
    sample_household,
)

SAMPLERS = [
    (sample_battery, BatteryConfig()),
    (sample_heat_pump, HeatPumpConfig()),
    (sample_heat_pump, HeatPumpConfig(cop_model="staffell2012", discretisation="euler")),
    (sample_generator, GeneratorConfig()),
    (sample_household, HouseholdConfig()),
]


@pytest.mark.parametrize(("sample", "cfg"), SAMPLERS)
def test_same_seed_same_params_other_seed_differs(sample, cfg):
    a = sample(cfg, 50, seed=3)
    b = sample(cfg, 50, generator=torch.Generator().manual_seed(3))
    c = sample(cfg, 50, seed=4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize(("sample", "cfg"), SAMPLERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_ranges(sample, cfg, dtype):
    p = sample(cfg, 37, seed=0, dtype=dtype)
    for name, t in p._asdict().items():
        assert t.shape == (37,), name
        assert t.dtype in (dtype, torch.bool), name
        assert torch.isfinite(t.double()).all(), name
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, tuple) and f.name in p._fields:
            t = getattr(p, f.name).double()
            if f.name == "pv_kwp":
                t = t[p.has_pv]
            lo, hi = value
            assert ((t >= lo - 1e-6 * abs(lo)) & (t <= hi + 1e-6 * abs(hi))).all(), f.name


def test_float32_and_float64_draw_the_same_values():
    a = sample_battery(BatteryConfig(), 20, seed=9, dtype=torch.float32)
    b = sample_battery(BatteryConfig(), 20, seed=9, dtype=torch.float64)
    torch.testing.assert_close(a.capacity_kwh.double(), b.capacity_kwh)


def test_heat_pump_band_and_initial_temperature():
    p = sample_heat_pump(HeatPumpConfig(band_k=2.5), 100, seed=1, dtype=torch.float64)
    torch.testing.assert_close(p.t_high_c - p.t_low_c, torch.full((100,), 2.5, dtype=torch.float64))
    assert ((p.t_init_c >= p.t_low_c) & (p.t_init_c <= p.t_high_c)).all()
    assert (p.p_max_kw > 0).all()


@pytest.mark.parametrize(("share", "n", "n_pv"), [(0.3, 10, 3), (0.0, 8, 0), (1.0, 5, 5)])
def test_exact_pv_share(share, n, n_pv):
    p = sample_household(HouseholdConfig(pv_share=share), n, seed=0)
    assert int(p.has_pv.sum()) == n_pv
    assert (p.pv_kwp[~p.has_pv] == 0).all() and (p.pv_kwp[p.has_pv] >= 2.0).all()


def test_device_table_rows_and_csv():
    bat = sample_battery(BatteryConfig(), 3, seed=0, dtype=torch.float64)
    hh = sample_household(HouseholdConfig(), 4, seed=0, dtype=torch.float64)
    rows = device_table({"battery": bat, "household": hh})
    assert [r["kind"] for r in rows] == ["battery"] * 3 + ["household"] * 4
    assert [r["agent"] for r in rows] == [0, 1, 2, 0, 1, 2, 3]
    assert rows[1]["capacity_kwh"] == bat.capacity_kwh[1].item()
    assert rows[0]["signed_map"] is True and isinstance(rows[4]["has_pv"], bool)
    text = device_table({"battery": bat, "household": hh}, as_csv=True)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 7
    assert float(parsed[2]["p_max_kw"]) == bat.p_max_kw[2].item()
    assert parsed[0]["pv_kwp"] == "" and float(parsed[5]["pf"]) == hh.pf[2].item()


def test_device_table_single_params_names_its_kind():
    rows = device_table(sample_heat_pump(HeatPumpConfig(), 2, seed=0))
    assert {r["kind"] for r in rows} == {"heat_pump"} and len(rows) == 2
    assert set(rows[0]) >= {"r_k_per_kw", "c_kwh_per_k", "p_max_kw", "t_low_c"}
