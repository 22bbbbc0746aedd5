"""Scenario configs, placement, the no-control violation statistics and the -v1 (dToU) scenarios."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from gridedge_env.analysis import violation_stats
from gridedge_env.config import ConfigError
from gridedge_env.core import reset, step
from gridedge_env.data import (
    LCL_DTOU_2013,
    LCL_DTOU_LEVELS_GBP_PER_KWH,
    OCTOPUS_FLUX_2023,
    align_days,
)
from gridedge_env.feeders import load_feeder
from gridedge_env.registry import env_params, registry
from gridedge_env.scenarios import (
    DTOU_SCENARIOS,
    SCENARIOS,
    build_scenario,
    load_scenario,
    place_agents,
    with_prices,
)
from gridedge_env.scenarios.placement import largest_remainder, spot_load_kw_per_node

CONFIGS = Path(__file__).resolve().parents[2] / "gradmap_agents" / "configs" / "env"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_yaml_mirrors_registry(name):
    assert load_scenario(CONFIGS / f"{name}.yaml") == SCENARIOS[name]


def test_every_yaml_is_registered():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == set(SCENARIOS)


@pytest.mark.parametrize("overrides, match", [
    ({"batery": {}}, "unknown key 'batery'"),
    ({"battery": {"p_max_kw": "big"}}, r"battery\.p_max_kw"),
    ({"limits": {"v_min_pu": 1.2}}, "v_min_pu < v_max_pu"),
    ({"n_agents": 2.5}, r"n_agents: expected an integer"),
    ({"device_mix": {"battery": -1}}, "device_mix"),
    ({"data": {"split": [0.5, 0.5, 0.5]}}, "split"),
    ({"households_per_agent": 0}, "households_per_agent"),
])
def test_bad_overrides_are_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_scenario("ieee13-50", **overrides)


def test_bad_yaml_file_is_named(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nfeeder: ieee13\nlimits: {v_max: 1.1}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml\.limits: unknown key 'v_max'"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="neither registered"):
        load_scenario("ieee999-1")


def test_placement_follows_spot_load():
    f = load_feeder("ieee123")
    pl = place_agents(f, 1000, {"battery": 0.4, "heatpump": 0.4, "generator": 0.2}, seed=0)
    counts = np.bincount(pl.node, minlength=f.n_nodes)
    w = spot_load_kw_per_node(f)
    assert counts.sum() == 1000 and np.all(np.abs(counts - 1000 * w / w.sum()) < 1)
    assert np.bincount(pl.kind).tolist() == [400, 400, 200]
    names = pl.names()
    assert len(set(names)) == 1000 and "heatpump_17" in names and "generator_199" in names
    again = place_agents(f, 1000, {"battery": 0.4, "heatpump": 0.4, "generator": 0.2}, seed=0)
    assert np.array_equal(pl.kind, again.kind)


def test_largest_remainder_exact():
    assert largest_remainder(10, np.array([1.0, 1.0, 1.0])).sum() == 10
    with pytest.raises(ValueError):
        largest_remainder(5, np.zeros(3))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_control_violates_on_a_meaningful_share_of_days(name):
    scn = build_scenario(SCENARIOS[name])
    stats = violation_stats(scn, scn.split.test)
    assert stats.nonconverged == 0
    assert 0.2 <= stats.share_days_violating <= 0.9
    assert stats.share_days_overvoltage > 0.1  # midday PV export
    assert stats.v_max_pu > 1.05
    if name == "ieee8500-10000":  # a long, weak feeder: voltage binds (winter evenings) first
        assert stats.share_days_undervoltage > 0.1 and stats.v_min_pu < 0.95
    else:
        assert stats.max_line_loading > 1.0


def test_agents_are_numbered_kind_by_kind_carrying_their_draws():
    """build_scenario renumbers agents so each kind is a contiguous block; every agent keeps
    the node, kind, kind_index and household draws it had in placement order."""
    import torch

    from gridedge_env.data import assign_agents, load_bundled
    from gridedge_env.devices import sample_household
    from gridedge_env.scenarios.placement import KINDS

    cfg = load_scenario("ieee13-50")
    scn = build_scenario(cfg)
    raw = place_agents(scn.feeder, cfg.n_agents, cfg.device_mix, cfg.seed)
    order = np.argsort(raw.kind, kind="stable")
    np.testing.assert_array_equal(scn.placement.node, raw.node[order])
    np.testing.assert_array_equal(scn.placement.kind_index, raw.kind_index[order])
    names = scn.placement.names()
    start = 0
    for k, kind in enumerate(KINDS):
        sl = scn.kind_slice(kind)
        assert sl.start == start and (scn.placement.kind[sl] == k).all()
        assert names[sl][:2] == [f"{kind}_0", f"{kind}_1"][: sl.stop - sl.start]
        torch.testing.assert_close(scn.agents_of(kind), torch.arange(sl.start, sl.stop))
        start = sl.stop
    assert start == cfg.n_agents
    g = torch.Generator().manual_seed(cfg.seed)
    hh = sample_household(cfg.household, cfg.n_agents, generator=g, dtype=torch.float64)
    for got, want in zip(scn.household, hh, strict=True):
        torch.testing.assert_close(got, want[torch.as_tensor(order)])
    prof = load_bundled(int(round(cfg.data.dt_h * 60)))
    a = assign_agents(cfg.n_agents, prof.n_households, prof.n_pv, cfg.seed, scale_range=(1, 1))
    torch.testing.assert_close(scn.assignment.household, a.household[torch.as_tensor(order)])


# ---- -v1: the day-varying LCL dToU import price ------------------------------------------------

V1_PAIRS = sorted((i, i[:-1] + "1") for i in registry if i.endswith("-v0"))


@pytest.fixture(scope="module")
def v0_v1():
    return build_scenario(load_scenario("ieee13-50")), build_scenario(load_scenario("ieee13-50-dtou"))


@pytest.mark.parametrize("v0, v1", V1_PAIRS)
def test_every_v0_has_a_v1_that_changes_only_the_prices(v0, v1):
    assert v1 in registry
    base = load_scenario(registry[v0].scenario)
    cfg = load_scenario(registry[v1].scenario)
    assert cfg == with_prices(base, "lcl-dtou-2013", f"{base.name}-dtou")
    assert cfg.data.prices == "lcl-dtou-2013" and base.data.prices == "octopus-flux-2023"
    assert dataclasses.replace(cfg, name=base.name) == load_scenario(
        base.name, data={"prices": "lcl-dtou-2013"})
    assert set(DTOU_SCENARIOS) == {f"{n}-dtou" for n in SCENARIOS}


def test_v1_import_price_is_the_aligned_dtou_day_and_all_else_is_v0(v0_v1):
    a, b = v0_v1
    pa, pb = a.profiles, b.profiles
    # -v0 keeps the clock tariff, the same every day
    flux_imp, flux_exp = OCTOPUS_FLUX_2023.day_prices(pa.n_days, 30, torch.float64)
    assert torch.equal(pa.price_gbp_per_kwh, flux_imp)
    # -v1: each day is the schedule day of the alignment rule, exactly the trial's 3 levels
    sched = LCL_DTOU_2013.schedule
    want = sched.prices()[align_days(pb.dates, sched.dates)]
    np.testing.assert_array_equal(pb.price_gbp_per_kwh.numpy(), want)
    levels = torch.unique(pb.price_gbp_per_kwh).tolist()
    assert levels == sorted(LCL_DTOU_LEVELS_GBP_PER_KWH.values())
    # days differ: 153 of the 365 days of 2013 had low or high half-hours, in 46 patterns
    assert len(torch.unique(pb.price_gbp_per_kwh, dim=0)) > 40
    assert 0.35 < (pb.price_gbp_per_kwh != 0.1176).any(1).double().mean() < 0.5
    # export at the trial's low level, never above import (docs/data.md decision); -v0 Flux's
    assert torch.equal(pa.export_price_gbp_per_kwh, flux_exp)
    torch.testing.assert_close(pb.export_price_gbp_per_kwh,
                               torch.full_like(pb.export_price_gbp_per_kwh, 0.0399))
    assert torch.all(pb.export_price_gbp_per_kwh <= pb.price_gbp_per_kwh)
    # everything else is the -v0 scenario's
    for f in ("demand_kw", "pv_kw_per_kwp", "temp_out_c"):
        assert torch.equal(getattr(pa, f), getattr(pb, f))
    assert pa.dates == pb.dates
    np.testing.assert_array_equal(a.placement.node, b.placement.node)
    np.testing.assert_array_equal(a.placement.kind, b.placement.kind)
    for x, y in zip(a.household + a.battery + a.heat_pump + a.generator,
                    b.household + b.battery + b.heat_pump + b.generator, strict=True):
        assert torch.equal(x, y)
    assert all(torch.equal(x, y) for x, y in zip(a.split, b.split, strict=True))


def test_v1_price_observation_is_the_days_dtou_price_at_every_step():
    env = env_params("ieee13-50-v1")
    prof = env.scenario.profiles
    sched = LCL_DTOU_2013.schedule
    aligned = align_days(prof.dates, sched.dates)
    levels = sched.level_index[aligned]  # (D, T): 0 low, 1 normal, 2 high
    days = torch.as_tensor([np.flatnonzero((levels == 2).any(1))[0],
                            np.flatnonzero((levels == 0).any(1))[-1],
                            np.flatnonzero((levels == 1).all(1))[0]])
    want = torch.as_tensor(sched.prices()[aligned[days.numpy()]])  # (B, T) GBP/kWh
    state, obs = reset(env, len(days), days=days)
    seen = [obs]
    for _ in range(env.n_steps - 1):
        state, out = step(env, state, torch.zeros(len(days), env.n_agents, dtype=torch.float64))
        seen.append(out.obs)
    price = torch.stack([o[..., 2] for o in seen], dim=1) * 0.5  # (B, T, N) price / 0.5
    torch.testing.assert_close(price, want[..., None].expand_as(price), rtol=1e-15, atol=0)
    assert len(torch.unique(want)) == 3 and len(torch.unique(want, dim=0)) == 3


def test_bad_price_source_is_named():
    with pytest.raises(ConfigError, match=r"data\.prices must be one of .*'lcl-dtou-2013'.*'agile'"):
        load_scenario("ieee13-50", data={"prices": "agile"})
