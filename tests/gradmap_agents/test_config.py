"""Training configs: every YAML file loads; unknown keys, wrong types and impossible values are
errors naming the file and key; --set overrides; registered configs load by name."""

from pathlib import Path

import pytest

from gradmap_agents.config import TrainConfig, config_names, config_path, load_config, parse_set
from gridedge_env.config import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "gradmap_agents" / "configs").glob("*.yaml"))
REGISTERED = ["ieee123-100", "ieee123-1000", "ieee123-300", "ieee13-50", "ieee8500-10000"]


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


def test_registered_names_are_the_shipped_files():
    assert config_names() == REGISTERED == sorted(p.stem for p in CONFIGS)
    assert [config_path(n).resolve() for n in REGISTERED] == [p.resolve() for p in CONFIGS]
    assert config_path("ieee13-50.yaml") == config_path("ieee13-50")


@pytest.mark.parametrize("name", REGISTERED)
def test_config_loads_by_name_by_path_and_by_file_name(name):
    by_name = load_config(name)
    assert load_config(f"{name}.yaml") == by_name
    assert load_config(config_path(name)) == by_name == load_config(str(config_path(name)))
    assert load_config(name, {"seed": 7}).seed == 7


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ieee13-50.yaml").write_text("seed: 5\n")
    assert load_config("ieee13-50.yaml").seed == 5
    assert load_config("ieee13-50").seed == 0  # no such file: the registered config


@pytest.mark.parametrize("value", ["ieee13-5", "nope.yaml", "configs/ieee13-50.yaml"])
def test_unknown_name_lists_the_registered_names(value):
    with pytest.raises(ConfigError) as err:
        load_config(value)
    msg = str(err.value)
    assert "\n" not in msg and repr(value) in msg and "not a registered config name" in msg
    assert "registered: " + ", ".join(REGISTERED) in msg
    with pytest.raises(ConfigError, match="registered: ieee123-100"):
        config_path("ieee13-5")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n# and another\n", "---\n"])
def test_empty_config_file_is_an_error(tmp_path, text):
    path = tmp_path / "blank.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"blank\.yaml: config file is empty"):
        load_config(path)
    (tmp_path / "explicit.yaml").write_text("{}\n")  # an explicit empty mapping: the defaults
    assert load_config(tmp_path / "explicit.yaml") == load_config(None)


def test_max_nonconverged_share_is_checked_and_resumable():
    assert load_config(None).max_nonconverged_share == 0.01
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="max_nonconverged_share"):
            load_config(None, {"max_nonconverged_share": bad})
    base = load_config(None)
    assert load_config(None, {"max_nonconverged_share": 0.5}).fingerprint() == base.fingerprint()


def test_diff_keys_names_the_dotted_keys():
    from gradmap_agents.config import diff_keys  # why: appended test, imports stay above

    a = load_config(None).as_dict()
    b = load_config(None, {"algo": {"lr": 0.01}, "env_overrides": {"households_per_agent": 3},
                           "seed": 2}).as_dict()
    assert diff_keys(a, b) == ["algo.lr", "env_overrides.households_per_agent", "seed"]
    assert diff_keys(a, a) == []
    assert diff_keys({"x": {"y": 1}}, {"x": 2}) == ["x"]
