"""Per-agent parameter sampling (seeded) and the per-agent parameter table.

Every ``sample_*`` draws each field independently and uniformly from its config range, in a fixed
order, from the given :class:`torch.Generator` (or ``seed``), so the same seed, config and
``n_agents`` always give the same parameters; each returns a NamedTuple of ``(n_agents,)``
tensors. :func:`device_table` lists them, one row per agent, as dicts or CSV text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import NamedTuple

import torch

from .battery import BatteryConfig, BatteryParams
from .common import Range
from .generator import GeneratorConfig, GeneratorParams
from .heat_pump import STAFFELL_ASHP, HeatPumpConfig, HeatPumpParams, cop
from .household import HouseholdConfig, HouseholdParams


class _Draw:
    """Draws ``(n,)`` tensors of one dtype/device from one generator."""

    def __init__(self, n: int, generator, seed, dtype, device):
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        self.n, self.g = n, generator
        self.dtype = torch.get_default_dtype() if dtype is None else dtype
        self.device = device

    def uniform(self, rng: Range) -> torch.Tensor:
        u = torch.rand(self.n, generator=self.g, dtype=torch.float64)
        return self.out(rng[0] + (rng[1] - rng[0]) * u)

    def full(self, value) -> torch.Tensor:
        return self.out(torch.full((self.n,), value, dtype=torch.float64))

    def flag(self, value: bool) -> torch.Tensor:
        return torch.full((self.n,), bool(value), device=self.device)

    def out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(dtype=self.dtype, device=self.device)


def sample_battery(
    cfg: BatteryConfig, n_agents: int, *, generator=None, seed=None, dtype=None, device=None
) -> BatteryParams:
    """Battery parameters for ``n_agents`` agents, each field ``(n_agents,)``."""
    d = _Draw(n_agents, generator, seed, dtype, device)
    return BatteryParams(
        capacity_kwh=d.uniform(cfg.capacity_kwh),
        p_max_kw=d.uniform(cfg.p_max_kw),
        eta_c=d.uniform(cfg.eta_c),
        eta_d=d.uniform(cfg.eta_d),
        soc_min=d.full(cfg.soc_min),
        soc_max=d.full(cfg.soc_max),
        soc_init=d.uniform(cfg.soc_init),
        deg_cost_gbp_per_kwh=d.full(cfg.deg_cost_gbp_per_kwh),
        terminal_gbp_per_kwh=d.full(cfg.terminal_gbp_per_kwh),
        signed_map=d.flag(cfg.action_map == "signed"),
    )


def sample_heat_pump(
    cfg: HeatPumpConfig, n_agents: int, *, generator=None, seed=None, dtype=None, device=None
) -> HeatPumpParams:
    """Heat-pump parameters for ``n_agents`` agents, each field ``(n_agents,)``.

    ``p_max_kw`` is sized per agent: ``oversize * (t_low - t_design) / (R * COP(t_design))``.
    """
    d = _Draw(n_agents, generator, seed, dtype, device)
    r, c = d.uniform(cfg.r_k_per_kw), d.uniform(cfg.c_kwh_per_k)
    if cfg.cop_model == "constant":
        c0, c1, c2 = d.uniform(cfg.cop), d.full(0.0), d.full(0.0)
    else:
        c0, c1, c2 = (d.full(v) for v in STAFFELL_ASHP)
    t_low = d.uniform(cfg.t_low_c)
    t_init = t_low + cfg.band_k * d.uniform(cfg.t_init_frac)
    oversize = d.uniform(cfg.oversize)
    params = HeatPumpParams(
        r_k_per_kw=r,
        c_kwh_per_k=c,
        p_max_kw=torch.zeros_like(r),
        cop_c0=c0,
        cop_c1=c1,
        cop_c2=c2,
        t_sink_c=d.full(cfg.t_sink_c),
        t_low_c=t_low,
        t_high_c=t_low + cfg.band_k,
        t_init_c=t_init,
        discomfort_gbp_per_kh=d.full(cfg.discomfort_gbp_per_kh),
        pf=d.full(cfg.pf),
        exact=d.flag(cfg.discretisation == "exact"),
    )
    cop_design = cop(params, torch.full_like(r, cfg.t_design_c))
    p_max = oversize * torch.relu(t_low - cfg.t_design_c) / (r * cop_design)
    return params._replace(p_max_kw=p_max)


def sample_generator(
    cfg: GeneratorConfig, n_agents: int, *, generator=None, seed=None, dtype=None, device=None
) -> GeneratorParams:
    """Generator parameters for ``n_agents`` agents, each field ``(n_agents,)``."""
    d = _Draw(n_agents, generator, seed, dtype, device)
    p_max = d.uniform(cfg.p_max_kw)
    return GeneratorParams(
        p_max_kw=p_max,
        s_max_kva=p_max * cfg.s_over_p,
        pf_min=d.full(cfg.pf_min),
        a_gbp_per_kw2h=d.uniform(cfg.a_gbp_per_kw2h),
        b_gbp_per_kwh=d.uniform(cfg.b_gbp_per_kwh),
    )


def sample_household(
    cfg: HouseholdConfig, n_agents: int, *, generator=None, seed=None, dtype=None, device=None
) -> HouseholdParams:
    """Household parameters; exactly ``round(pv_share * n_agents)`` households, chosen at random,
    have PV (``pv_kwp`` is 0 for the others)."""
    d = _Draw(n_agents, generator, seed, dtype, device)
    demand_scale, pf = d.uniform(cfg.demand_scale), d.uniform(cfg.pf)
    n_pv = round(cfg.pv_share * n_agents)
    order = torch.randperm(n_agents, generator=d.g)
    has_pv = torch.zeros(n_agents, dtype=torch.bool).index_fill(0, order[:n_pv], True)
    has_pv = has_pv.to(device=device)
    pv_kwp = torch.where(has_pv, d.uniform(cfg.pv_kwp), 0.0)
    return HouseholdParams(demand_scale=demand_scale, pf=pf, has_pv=has_pv, pv_kwp=pv_kwp)


def device_table(
    params: Mapping[str, NamedTuple] | NamedTuple, *, as_csv: bool = False
) -> list[dict] | str:
    """One row per agent: ``{"kind", "agent", <field>: value, ...}``.

    params: one params NamedTuple, or a mapping ``kind -> params`` (e.g. ``{"battery": ...,
    "heat_pump": ...}``), whose rows are concatenated in the mapping's order. Bool fields stay
    ``bool``, the others become ``float``. ``as_csv=True`` returns CSV text with the union of
    the fields as header (empty cells where a kind has no such field).
    """
    if not isinstance(params, Mapping):
        params = {_KINDS.get(type(params), type(params).__name__): params}
    rows = []
    for kind, p in params.items():
        cols = {name: t.detach().cpu().tolist() for name, t in p._asdict().items()}
        n = len(next(iter(cols.values()))) if cols else 0
        for i in range(n):
            row = {"kind": kind, "agent": i}
            row.update({name: _py(vals[i]) for name, vals in cols.items()})
            rows.append(row)
    if not as_csv:
        return rows
    header = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


_KINDS = {
    BatteryParams: "battery",
    HeatPumpParams: "heat_pump",
    GeneratorParams: "generator",
    HouseholdParams: "household",
}


def _py(v):
    return v if isinstance(v, bool) else float(v)
