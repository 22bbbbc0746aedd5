"""Build a :class:`Scenario` from its config: feeder, placement, per-agent devices and profiles.

Agents are households. Each agent's grid connection carries ``households_per_agent`` identical
homes acting alike (its demand, PV, device power and costs all scale by that factor), so a small
feeder with few agents (IEEE 13 with 50) still carries its spot load. The feeder's own spot loads
are replaced by the households (``load_scale = 0`` in the power flow).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..data import (
    TARIFFS,
    AgentAssignment,
    DaySplit,
    Profiles,
    assign_agents,
    load_bundled,
    split_days,
)
from ..devices import (
    BatteryParams,
    GeneratorParams,
    HeatPumpParams,
    HouseholdParams,
    sample_battery,
    sample_generator,
    sample_heat_pump,
    sample_household,
)
from ..feeders import load_feeder
from ..network import Feeder
from .config import ScenarioConfig
from .placement import KINDS, Placement, place_agents


@dataclass(frozen=True, eq=False)
class Scenario:
    """Everything a scenario fixes. Agents are numbered kind by kind (all batteries, then heat
    pumps, then generators, each in ``kind_index`` order), so each kind is a contiguous block
    (:meth:`kind_slice`). Per-kind device parameters are ``(N_kind,)`` tensors in
    ``kind_index`` order; ``household`` and ``assignment`` are ``(N,)`` over all agents."""

    config: ScenarioConfig
    feeder: Feeder
    placement: Placement
    household: HouseholdParams
    battery: BatteryParams
    heat_pump: HeatPumpParams
    generator: GeneratorParams
    profiles: Profiles
    assignment: AgentAssignment
    split: DaySplit

    @property
    def n_agents(self) -> int:
        return self.placement.n_agents

    def kind_slice(self, kind: str) -> slice:
        """The agents running device ``kind``: a contiguous block, in ``kind_index`` order."""
        k = KINDS.index(kind)
        start = int(np.searchsorted(self.placement.kind, k))
        return slice(start, start + int((self.placement.kind == k).sum()))

    def agents_of(self, kind: str) -> torch.Tensor:
        """Agent indices ``(N_kind,)`` running device ``kind``, in ``kind_index`` order."""
        sl = self.kind_slice(kind)
        return torch.arange(sl.start, sl.stop)


def build_scenario(config: ScenarioConfig, profiles: Profiles | None = None,
                   dtype: torch.dtype = torch.float64) -> Scenario:
    """Deterministic in ``config.seed`` (placement, kinds, parameters, profile assignment) and
    ``config.data.split_seed`` (day split). ``profiles`` default to the bundled ones at
    ``config.data.dt_h`` with the prices ``config.data.prices``; given ones are used as they
    are (their prices included)."""
    feeder = load_feeder(config.feeder)
    generation = [n for n, p in zip(feeder.load_names, feeder.load_params, strict=True)
                  if p.get("kind", "load") != "load"]
    if generation:  # the households replace every load term (load_scale=0): it would vanish
        raise ValueError(f"feeder {config.feeder!r} has generation ({', '.join(generation[:5])}"
                         f"{', ...' if len(generation) > 5 else ''}) that a scenario would drop "
                         "with the feeder's loads; remove it from the model to build a scenario")
    if config.regulator_taps:
        feeder = feeder.with_taps(config.regulator_taps)
    if config.capacitors_open:
        feeder = feeder.with_capacitors_open(config.capacitors_open)
    if config.source_pu is not None:
        feeder = feeder.with_source_pu(config.source_pu)
    placement = place_agents(feeder, config.n_agents, config.device_mix, config.seed,
                             config.household_connection)
    if profiles is None:
        profiles = load_bundled(int(round(config.data.dt_h * 60)),
                                tariff=TARIFFS[config.data.prices], dtype=dtype)
    g = torch.Generator().manual_seed(config.seed)
    counts = [int((placement.kind == k).sum()) for k in range(len(KINDS))]
    household = sample_household(config.household, config.n_agents, generator=g, dtype=dtype)
    # demand diversity comes from household.demand_scale, so the assignment does not scale
    assignment = assign_agents(config.n_agents, profiles.n_households, profiles.n_pv, config.seed,
                               scale_range=(1.0, 1.0))
    # Number the agents kind by kind (stable: placement order within a kind, which is the
    # kind_index order), carrying each household's draws along, so every kind is a contiguous
    # block the step slices instead of gathering and scattering.
    order = np.argsort(placement.kind, kind="stable")
    perm = torch.as_tensor(order)
    placement = Placement(node=placement.node[order], kind=placement.kind[order],
                          kind_index=placement.kind_index[order], legs=placement.legs[order])
    return Scenario(
        config=config, feeder=feeder, placement=placement,
        household=type(household)(*(x[perm] for x in household)),
        battery=sample_battery(config.battery, counts[0], generator=g, dtype=dtype),
        heat_pump=sample_heat_pump(config.heat_pump, counts[1], generator=g, dtype=dtype),
        generator=sample_generator(config.generator, counts[2], generator=g, dtype=dtype),
        profiles=profiles,
        assignment=dataclasses.replace(assignment, **{
            f.name: getattr(assignment, f.name)[perm] for f in dataclasses.fields(assignment)}),
        split=split_days(profiles.n_days, config.data.split_seed, config.data.split),
    )
