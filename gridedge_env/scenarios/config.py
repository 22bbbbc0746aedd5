"""Scenario configuration: feeder + agent placement + device mix + data + constraint limits.

A scenario is a :class:`ScenarioConfig`. The registered ones are defined here in Python (so an
installed package has them) and mirrored by YAML files under ``configs/env/`` (only overrides of
the defaults; a test keeps the two equal). Users describe their own in YAML; unknown keys and bad
values raise :class:`~gridedge_env.config.ConfigError` naming the file and key.
See ``docs/scenarios.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..config import ConfigError, from_dict, load_yaml, merge
from ..data import TARIFFS
from ..devices import BatteryConfig, GeneratorConfig, HeatPumpConfig, HouseholdConfig
from .placement import CONNECTIONS


@dataclass(frozen=True)
class Limits:
    """Network constraint limits."""

    v_min_pu: float = 0.95
    """Lowest allowed node voltage magnitude, p.u. (every non-source node and phase)."""
    v_max_pu: float = 1.05
    """Highest allowed node voltage magnitude, p.u."""
    line_loading_max: float = 1.0
    """Highest allowed line current as a fraction of its rating (OpenDSS ``normamps``)."""

    def __post_init__(self):
        if not 0 < self.v_min_pu < self.v_max_pu:
            raise ValueError(f"limits: need 0 < v_min_pu < v_max_pu, got {self.v_min_pu}, "
                             f"{self.v_max_pu}")
        if not self.line_loading_max > 0:
            raise ValueError(f"limits: line_loading_max must be > 0, got {self.line_loading_max}")


@dataclass(frozen=True)
class DataConfig:
    """Which profiles drive the scenario and how days are split."""

    dt_h: float = 0.5
    """Step length, hours (48 steps a day at the default 0.5)."""
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Train / validation / test shares of the days."""
    split_seed: int = 0
    """Seed of the fixed day split (test days are never trained on)."""
    prices: str = "octopus-flux-2023"
    """Import/export prices, a name of :data:`gridedge_env.data.TARIFFS`:
    ``"octopus-flux-2023"`` (the ``-v0`` scenarios: Octopus Flux time-of-use, the same every
    day) or ``"lcl-dtou-2013"`` (the ``-v1`` scenarios: each day's import price is the real Low
    Carbon London dToU schedule of the 2013 day aligned to its date, the export price stays
    Flux's; ``docs/scenarios.md``)."""

    def __post_init__(self):
        if not 0 < self.dt_h <= 24 or abs(24 / self.dt_h - round(24 / self.dt_h)) > 1e-9:
            raise ValueError(f"data.dt_h must divide 24 h, got {self.dt_h}")
        if any(s < 0 for s in self.split) or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"data.split must be three shares summing to 1, got {self.split}")
        if self.prices not in TARIFFS:
            raise ValueError(f"data.prices must be one of {sorted(TARIFFS)}, got {self.prices!r}")


@dataclass(frozen=True)
class ScenarioConfig:
    """One scenario; every field is documented, YAML files hold overrides only."""

    name: str
    """Scenario name (``ieee123-1000``)."""
    feeder: str = "ieee13"
    """Bundled feeder name or path of an OpenDSS master / saved feeder file."""
    regulator_taps: dict[str, float] = field(default_factory=dict)
    """Winding-2 taps (pu) of two-winding transformers to change, by name (empty: as the feeder
    has them). The published IEEE taps suit the feeders' heavy nominal loads, not households."""
    capacitors_open: tuple[str, ...] = ()
    """Capacitor banks switched open, by name (``Feeder.with_capacitors_open``; empty: as the
    feeder has them). A bank that a capacitor control closes at the feeder's heavy nominal load
    lifts a household-loaded feeder's voltage all day."""
    source_pu: float | None = None
    """Substation voltage setpoint, p.u. (None: as the feeder has it)."""
    n_agents: int = 50
    """Number of agents; each runs one device in one household."""
    households_per_agent: float = 1.0
    """Identical homes behind each agent's connection: its demand, PV, device power and costs
    scale by this factor (so few agents can carry a large feeder's load). Default 1."""
    household_connection: str = "phase"
    """How a household connects: ``"phase"`` (phase to neutral on one node, every feeder) or
    ``"split-phase"`` (both 120 V legs of a 120/240 V service, half its power on each, where the
    feeder has such services: ``docs/scenarios.md``)."""
    device_mix: dict[str, float] = field(default_factory=lambda: {
        "battery": 0.4, "heatpump": 0.4, "generator": 0.2})
    """Share of each device kind (normalised; kinds: battery, heatpump, generator)."""
    household: HouseholdConfig = HouseholdConfig()
    battery: BatteryConfig = BatteryConfig()
    heat_pump: HeatPumpConfig = HeatPumpConfig()
    generator: GeneratorConfig = GeneratorConfig()
    limits: Limits = Limits()
    data: DataConfig = DataConfig()
    seed: int = 0
    """Seed of placement, device kinds and per-agent parameters."""

    def __post_init__(self):
        if self.n_agents < 1:
            raise ValueError(f"n_agents must be >= 1, got {self.n_agents}")
        if self.household_connection not in CONNECTIONS:
            raise ValueError(f"household_connection must be one of {CONNECTIONS}, got "
                             f"{self.household_connection!r}")
        if not self.households_per_agent > 0:
            raise ValueError(f"households_per_agent must be > 0, got {self.households_per_agent}")
        bad = {k: v for k, v in self.device_mix.items() if v < 0}
        if bad or sum(self.device_mix.values()) <= 0:
            raise ValueError(f"device_mix needs non-negative shares with a positive sum, got "
                             f"{self.device_mix}")


#: The registered scenarios (mirrored in ``configs/env/<name>.yaml``).
SCENARIOS = {
    "ieee13-50": ScenarioConfig(
        name="ieee13-50", feeder="ieee13", n_agents=50, households_per_agent=32.0,
        regulator_taps={"reg1": 1.0, "reg2": 1.0, "reg3": 1.0}, source_pu=1.01,
        household=HouseholdConfig(pv_share=0.5, pv_kwp=(3.0, 6.0))),
    "ieee123-1000": ScenarioConfig(
        name="ieee123-1000", feeder="ieee123", n_agents=1000, households_per_agent=1.4,
        regulator_taps={r: 1.0 for r in ("reg1a", "reg2a", "reg3a", "reg3c", "reg4a", "reg4b",
                                         "reg4c")},
        source_pu=1.02, household=HouseholdConfig(pv_share=0.5, pv_kwp=(3.0, 6.0))),
    "ieee8500-10000": ScenarioConfig(
        name="ieee8500-10000", feeder="ieee8500", n_agents=10000, households_per_agent=0.3,
        household_connection="split-phase",
        regulator_taps={r: 1.0 for r in ("feeder_rega", "feeder_regb", "feeder_regc", "vreg2_a",
                                         "vreg2_b", "vreg2_c", "vreg3_a", "vreg3_b", "vreg3_c",
                                         "vreg4_a", "vreg4_b", "vreg4_c")},
        capacitors_open=tuple(f"capbank{k}{p}" for k in range(3) for p in "abc"),
        source_pu=1.02, household=HouseholdConfig(pv_share=0.5, pv_kwp=(3.0, 6.0))),
}


def with_prices(config: ScenarioConfig, prices: str, name: str) -> ScenarioConfig:
    """``config`` renamed ``name``, with ``data.prices`` set to ``prices`` (nothing else)."""
    return replace(config, name=name, data=replace(config.data, prices=prices))


#: The registered scenarios of the ``-v1`` environments: each scenario of :data:`SCENARIOS`
#: with the day-varying LCL dToU import price (``data.prices = "lcl-dtou-2013"``), named
#: ``<name>-dtou``. They have no YAML files of their own: each is its base scenario plus that
#: one key (``load_scenario("ieee13-50", data={"prices": "lcl-dtou-2013"})`` is the same
#: scenario under the base's name).
DTOU_SCENARIOS = {f"{n}-dtou": with_prices(c, "lcl-dtou-2013", f"{n}-dtou")
                  for n, c in SCENARIOS.items()}


def load_scenario(name_or_path: str | Path, **overrides) -> ScenarioConfig:
    """A registered scenario by name (``"ieee13-50"``, ``"ieee13-50-dtou"``: :data:`SCENARIOS`,
    :data:`DTOU_SCENARIOS`) or a YAML file; ``overrides`` (nested
    dicts of field values) are applied on top and validated the same way."""
    known = SCENARIOS | DTOU_SCENARIOS
    if str(name_or_path) in known:
        if not overrides:
            return known[str(name_or_path)]
        return from_dict(ScenarioConfig, merge(asdict(known[str(name_or_path)]), overrides),
                         str(name_or_path))
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"no scenario {str(name_or_path)!r}: neither registered "
                          f"({sorted(known)}) nor a YAML file")
    return load_yaml(ScenarioConfig, path, overrides)
