"""Config validation: NaN and infinite floats are rejected for every float field, naming the key
and the value (NaN passes every ``<`` / ``>`` bound, so it needs its own check)."""

import dataclasses
import math

import pytest

from gradmap_agents.config import load_config
from gridedge_env.config import ConfigError, check_fields


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("key", ["margin_pu", "lr_voltage", "line_margin", "max_gbp"])
def test_non_finite_dual_values_are_rejected(key, value):
    with pytest.raises(ConfigError, match=rf"dual\.{key} must be .*{value}"):
        load_config(None, {"dual": {key: value}})


@pytest.mark.parametrize("section, key", [("algo", "lr"), ("algo", "eta"), ("algo", "eps"),
                                          ("policy", "out_scale")])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_rejected_in_every_section(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be a finite number, got {value}"):
        load_config(None, {section: {key: value}})


def test_nan_from_a_yaml_file_is_rejected(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dual:\n  margin_pu: .nan\n")
    with pytest.raises(ConfigError, match=r"run\.yaml.*dual\.margin_pu.*nan"):
        load_config(path)


def test_check_fields_looks_inside_tuples_and_dicts():
    @dataclasses.dataclass
    class C:
        scale: float = 1.0
        pair: tuple[float, float] = (0.0, 1.0)
        by_kind: dict = dataclasses.field(default_factory=dict)
        count: int = 1
        name: str = "nan"

    check_fields(C())
    with pytest.raises(ValueError, match=r"x\.pair must be a finite number, got \(0\.0, inf\)"):
        check_fields(C(pair=(0.0, math.inf)), "x.")
    with pytest.raises(ValueError, match="by_kind"):
        check_fields(C(by_kind={"battery": math.nan}))
    with pytest.raises(ValueError, match="scale .*nan"):
        check_fields(C(scale=math.nan), positive=("scale",))


def test_finite_defaults_still_load():
    cfg = load_config(None, {"dual": {"margin_pu": 0.0, "lr_voltage": 1e9}})
    assert cfg.dual.margin_pu == 0.0 and cfg.dual.lr_voltage == 1e9
