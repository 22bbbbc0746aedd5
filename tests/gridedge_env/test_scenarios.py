"""Scenario configs, placement and the no-control violation statistics."""

from pathlib import Path

import numpy as np
import pytest

from gridedge_env.config import ConfigError
from gridedge_env.network import load_feeder
from gridedge_env.scenarios import (
    SCENARIOS,
    build_scenario,
    load_scenario,
    place_agents,
    violation_stats,
)
from gridedge_env.scenarios.placement import largest_remainder, spot_load_kw_per_node

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "env"


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
