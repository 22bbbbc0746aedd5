"""Scenarios: feeder + agent placement + device mix + data + limits (``docs/scenarios.md``).
Their no-control violation statistics: :mod:`gridedge_env.analysis`."""

from .build import Scenario, build_scenario
from .config import SCENARIOS, DataConfig, Limits, ScenarioConfig, load_scenario
from .placement import KINDS, Placement, place_agents

__all__ = [
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
]
