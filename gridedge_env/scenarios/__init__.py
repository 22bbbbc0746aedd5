"""Scenarios: feeder + agent placement + device mix + data + limits (``docs/scenarios.md``).
Their no-control violation statistics: :mod:`gridedge_env.analysis`."""

from .build import Scenario, build_scenario
from .config import (
    DTOU_SCENARIOS,
    SCENARIOS,
    DataConfig,
    Limits,
    ScenarioConfig,
    load_scenario,
    with_prices,
)
from .placement import KINDS, Placement, place_agents

__all__ = [
    "DTOU_SCENARIOS",
    "KINDS",
    "SCENARIOS",
    "DataConfig",
    "Limits",
    "Placement",
    "Scenario",
    "ScenarioConfig",
    "build_scenario",
    "load_scenario",
    "place_agents",
    "with_prices",
]
