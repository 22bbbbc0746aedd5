"""Rule-based control: what each device would do by itself with no learning and no communication.

Every rule uses only the agent's own local observation and its own device parameters:

- **battery, self-consumption with price thresholds**: store the home's own PV surplus; charge
  at full power when the import price is at or below its ``low_quantile`` over the training
  days; when it is at or above its ``high_quantile``, discharge to cover the home's own net
  demand (not more: exporting pays only the export price), but never below the day's initial
  SoC (the terminal penalty, ``docs/devices.md``, makes ending lower a loss); otherwise idle;
- **heat pump, thermostat**: the electric power that brings the home to its lower comfort limit
  + 0.5 K within the step (as no control; ``gridedge_env.analysis``);
- **generator, marginal price**: the output that maximises ``price p - (a p^2 + b p)``,
  ``p = clip((price - b) / (2 a), 0, p_max)``;
- **volt-watt droop** (with ``observe_voltage``, on top of the above): from 1.03 p.u. of the
  agent's own last voltage up to 1.05, a battery is pushed to charge and a generator to back off,
  linearly; from 0.97 down to 0.95, a battery to discharge and a generator to raise its output.

``rule_based(env)`` returns a rollout policy (``policy(obs, t, state) -> actions``), so it runs on
the same environment API as every learned method (:func:`gridedge_env.rollout.rollout`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gridedge_env.devices import battery
from gridedge_env.devices.heat_pump import thermostat_kw

#: Observation columns (``gridedge_env.core``): price / 0.5, demand / 3, PV / 5, device state
#: (``2 soc - 1`` for batteries), (v - 1) / 0.05.
PRICE, DEMAND, PV, DEVICE, VOLTAGE = 2, 3, 4, 6, 7


@dataclass(frozen=True)
class RuleConfig:
    low_quantile: float = 0.3
    """Batteries charge at or below this quantile of the training days' import prices."""
    high_quantile: float = 0.7
    """Batteries discharge at or above this quantile."""
    droop_start_pu: float = 0.03
    """Volt-watt droop starts this far from 1 p.u. and is full at the limit (0.05 away)."""

    def __post_init__(self):
        if not 0 <= self.low_quantile < self.high_quantile <= 1:
            raise ValueError("rule: need 0 <= low_quantile < high_quantile <= 1")
        if not 0 <= self.droop_start_pu < 0.05:
            raise ValueError("rule: droop_start_pu must be in [0, 0.05)")


def rule_based(env, cfg: RuleConfig | None = None):
    """The rule-based controller of ``env``'s agents as a rollout policy."""
    cfg = cfg or RuleConfig()
    scn, sl = env.scenario, env.kind_slices
    prices = scn.profiles.price_gbp_per_kwh[scn.split.train].flatten()
    low = float(torch.quantile(prices, cfg.low_quantile))
    high = float(torch.quantile(prices, cfg.high_quantile))
    gen, hp, bat = scn.generator, scn.heat_pump, scn.battery
    dt_h = env.dt_h
    span = 0.05 - cfg.droop_start_pu

    def act(obs, t, state):
        price = obs[..., 0, PRICE] * 0.5  # (B,): every agent sees the same tariff
        a = torch.zeros(obs.shape[:2], dtype=obs.dtype, device=obs.device)
        b = sl["battery"]
        a[:, b] = _battery(bat, obs[:, b], state.soc_init, price[:, None], low, high, dt_h)
        t_out = obs[:, sl["heatpump"], 5] * 10 + 10
        p_hp = thermostat_kw(hp, state.t_in_c, t_out, dt_h)
        a[:, sl["heatpump"]] = 2 * p_hp / hp.p_max_kw - 1
        p_gen = torch.clamp((price[:, None] - gen.b_gbp_per_kwh) / (2 * gen.a_gbp_per_kw2h), min=0)
        p_gen = torch.minimum(p_gen, gen.p_max_kw)
        a[:, sl["generator"]] = 2 * p_gen / gen.p_max_kw.clamp_min(1e-9) - 1
        if env.config.observe_voltage:
            dv = obs[..., VOLTAGE] * 0.05  # own last voltage - 1
            over = torch.clamp((dv - cfg.droop_start_pu) / span, 0, 1)
            under = torch.clamp((-dv - cfg.droop_start_pu) / span, 0, 1)
            a[:, b] = torch.clamp(a[:, b] + over[:, b] - under[:, b], -1, 1)
            g = sl["generator"]
            a[:, g] = torch.clamp(a[:, g] - 2 * over[:, g] + 2 * under[:, g], -1, 1)
        return a

    return act


def _battery(params, obs, soc_init, price, low, high, dt_h):
    """Battery actions ``(B, N_bat)`` of the rule (module docstring), from each battery's own
    observation ``(B, N_bat, F)``, its day's initial SoC and the price ``(B, 1)``."""
    soc = (obs[..., DEVICE] + 1) / 2
    net_kw = obs[..., DEMAND] * 3 - obs[..., PV] * 5  # the home's own demand less its PV
    p_lo, p_hi = battery.power_bounds(params, soc, dt_h)
    reserve = -torch.clamp(soc - soc_init, min=0) * params.capacity_kwh * params.eta_d / dt_h
    p = torch.where(net_kw < 0, torch.minimum(-net_kw, p_hi), 0.0)
    p = torch.where((net_kw >= 0) & (price <= low), p_hi, p)
    discharge = torch.maximum(-net_kw, torch.maximum(p_lo, reserve))
    p = torch.where((net_kw >= 0) & (price >= high), discharge, p)
    # the action that gives p: the inverse of the battery's action map
    signed = torch.where(p >= 0, p / p_hi.clamp_min(1e-9), p / (-p_lo).clamp_min(1e-9))
    affine = 2 * (p - p_lo) / (p_hi - p_lo).clamp_min(1e-9) - 1
    return torch.clamp(torch.where(params.signed_map, signed, affine), -1, 1)
