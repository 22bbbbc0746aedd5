"""Scenario configs, placement and the no-control violation statistics."""

from pathlib import Path

import numpy as np
import pytest

from gridedge_env.analysis import violation_stats
from gridedge_env.config import ConfigError
from gridedge_env.feeders import load_feeder
from gridedge_env.scenarios import (
    SCENARIOS,
    build_scenario,
    load_scenario,
    place_agents,
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
    assert stats.v_max_pu > 1.05 and stats.max_line_loading > 1.0


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
