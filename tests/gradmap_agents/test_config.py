"""Training configs: every YAML file loads; unknown keys, wrong types and impossible values are
errors naming the file and key; --set overrides."""

from pathlib import Path

import pytest

from gradmap_agents.config import TrainConfig, load_config, parse_set
from gridedge_env.config import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_training_configs():
    assert {p.name for p in CONFIGS} >= {"ieee13-50.yaml", "ieee123-1000.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_training_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, TrainConfig) and cfg.env.endswith("-v0")
    assert cfg.fingerprint() == load_config(path).fingerprint()


@pytest.mark.parametrize("text,match", [
    ("algo: {epochz: 3}", r"x\.yaml\.algo: unknown key 'epochz'"),
    ("algo: {epochs: three}", r"x\.yaml\.algo\.epochs: expected an integer, got 'three'"),
    ("algo: {eps: -0.1}", r"x\.yaml\.algo: algo\.eps must be > 0"),
    ("dual: {granularity: bus}", r"granularity: must be one of"),
    ("env: ieee999-v0", r"env 'ieee999-v0' is not registered"),
    ("iterations: 0", r"iterations must be >= 1"),
    ("- a list", r"top level must be a mapping"),
])
def test_bad_configs_are_named(tmp_path, text, match):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_set_overrides_nested_keys(tmp_path):
    over = parse_set(["algo.epochs=8", "seed=3", "policy.hidden=[16, 16]", "dual.fixed=true"])
    cfg = load_config(None, over)
    assert (cfg.algo.epochs, cfg.seed, cfg.policy.hidden, cfg.dual.fixed) == (8, 3, (16, 16), True)
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set(["epochs"])
    base = load_config(None)
    assert load_config(None, {"iterations": 999}).fingerprint() == base.fingerprint()  # resumable
    assert load_config(None, {"seed": 1}).fingerprint() != base.fingerprint()
