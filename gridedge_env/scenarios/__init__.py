"""Scenarios: feeder + agent placement + device mix + data + limits (``docs/scenarios.md``)."""

from .analysis import ViolationStats, no_control_actions, no_control_voltages, violation_stats
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
    "ViolationStats",
    "build_scenario",
    "load_scenario",
    "no_control_actions",
    "no_control_voltages",
    "place_agents",
    "violation_stats",
]
