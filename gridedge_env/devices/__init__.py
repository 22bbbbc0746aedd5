"""Device models: pure, batched, differentiable functions over ``(batch, agents)`` tensors.

One module per device kind, each with a frozen config dataclass (sampling ranges and fixed
values, every field documented with unit and default), a per-agent ``*Params`` NamedTuple of
``(N,)`` tensors, and ``step(params, state, action, exog, dt_h) -> (state', (p_kw, q_kvar),
costs)``. Power is positive when consumed from the grid. See ``docs/devices.md``.

- :mod:`.battery`, :mod:`.heat_pump`, :mod:`.generator`: the controllable devices;
- :mod:`.household`: uncontrollable demand and rooftop PV (:func:`household.power`);
- :mod:`.common`: time grid, action maps, straight-through clamp;
- :mod:`.params`: seeded per-agent sampling and :func:`device_table`.
"""

from . import battery, common, generator, heat_pump, household
from .battery import BatteryConfig, BatteryParams, BatteryState
from .common import (
    DT_H,
    N_STEPS,
    out_of_range,
    scale_action,
    scale_action_signed,
    ste_clamp,
)
from .generator import GeneratorConfig, GeneratorParams
from .heat_pump import HeatPumpConfig, HeatPumpExog, HeatPumpParams, HeatPumpState
from .household import HouseholdConfig, HouseholdExog, HouseholdParams
from .params import (
    device_table,
    sample_battery,
    sample_generator,
    sample_heat_pump,
    sample_household,
)

__all__ = [
    "DT_H",
    "N_STEPS",
    "BatteryConfig",
    "BatteryParams",
    "BatteryState",
    "GeneratorConfig",
    "GeneratorParams",
    "HeatPumpConfig",
    "HeatPumpExog",
    "HeatPumpParams",
    "HeatPumpState",
    "HouseholdConfig",
    "HouseholdExog",
    "HouseholdParams",
    "battery",
    "common",
    "device_table",
    "generator",
    "heat_pump",
    "household",
    "out_of_range",
    "sample_battery",
    "sample_generator",
    "sample_heat_pump",
    "sample_household",
    "scale_action",
    "scale_action_signed",
    "ste_clamp",
]
