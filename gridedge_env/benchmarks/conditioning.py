"""``gridedge-bench conditioning``: how well conditioned the power flow stays against the
feeder's DER output, on a registered environment under no control (optionally with more PV).

The numbers come from :func:`gridedge_env.analysis.conditioning` (``docs/powerflow.md``,
conditioning): per day-step the fixed point's contraction rate and iterations against the total
PV and generator output and the net load, and on a sample of day-steps spread over the DER range
the condition number of the power-flow Jacobian and the spectral radius of the fixed-point map's
derivative. It is an analysis, not a timing: ``seconds`` is reported only to size runs.
"""

from __future__ import annotations

import time

from ..analysis import conditioning
from ..registry import env_params
from .common import machine


def bench_conditioning(env_id: str = "ieee13-50-v0", days: int | None = None,
                       split: str = "test", n_jacobian: int = 12, pv_share: float | None = None,
                       pv_kwp: tuple[float, float] | None = None, device: str = "cpu") -> dict:
    """The conditioning report of the first ``days`` days (default: all) of ``split``
    (``train``, ``validation`` or ``test``) of ``env_id`` under no control, as a JSON-ready
    dict. ``pv_share`` (share of households with PV, 1) and ``pv_kwp`` (range of their installed
    PV, kWp) override the scenario's household PV (``HouseholdConfig``) for high-DER cases."""
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be train, validation or test, got {split!r}")
    pv = {k: v for k, v in (("pv_share", pv_share), ("pv_kwp", pv_kwp)) if v is not None}
    env = env_params(env_id, device=device, **({"household": pv} if pv else {}))
    pool = getattr(env.scenario.split, split)
    if days is not None and not 0 < days <= len(pool):
        raise ValueError(f"days must be in [1, {len(pool)}] for the {split} split of {env_id}, "
                         f"got {days}")
    t0 = time.perf_counter()
    report = conditioning(env, pool[:days], n_jacobian=n_jacobian)
    hh = env.scenario.config.household
    return {"env": env_id, "split": split, "days": len(pool[:days]), "n_agents": env.n_agents,
            "n_ports": env.powerflow.n_ports, "pv_share": hh.pv_share, "pv_kwp": list(hh.pv_kwp),
            "households_per_agent": env.scenario.config.households_per_agent,
            "pf_tol_pu": env.powerflow.settings.tol, **report.summary(),
            "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
