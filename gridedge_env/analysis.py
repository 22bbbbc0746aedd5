"""Analyses of a scenario under no control (or a policy), over whole days, all days at once:

- :func:`violation_stats`: how often, and how far, the feeder leaves its limits when nobody
  controls anything (:func:`gridedge_env.rollout.no_control`);
- :func:`conditioning`: how well conditioned the power flow stays (its contraction rate,
  iterations and Jacobian condition number) against the feeder's DER output
  (``gridedge-bench conditioning``; ``docs/powerflow.md``, conditioning).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from scipy.stats import spearmanr

from .core import EnvConfig, EnvParams, leg_power, make_env
from .data import gather_agents
from .devices import HouseholdExog, generator, household
from .rollout import concat, no_control, rollout
from .scenarios import Scenario


@dataclass(frozen=True)
class ViolationStats:
    """No-control constraint statistics over a set of days (voltages at non-source nodes)."""

    n_days: int
    share_days_violating: float  # days with any voltage or line violation
    share_days_overvoltage: float
    share_days_undervoltage: float
    node_step_frequency: float  # share of (node, step) pairs outside [v_min, v_max]
    magnitude_pu_per_day: float  # mean over days of summed exceedance (p.u. x node-steps)
    v_min_pu: float
    v_max_pu: float
    max_line_loading: float
    share_days_line_overload: float
    nonconverged: int

    def as_dict(self) -> dict:
        return asdict(self)


def no_control_rollout(scn: Scenario, days: torch.Tensor, chunk: int = 8):
    """:class:`~.rollout.DayRollout` of ``days`` under no control: whole days, ``chunk`` at a
    time (one power-flow call per chunk for its ``chunk x T`` day-steps; no-control actions
    never depend on voltages), concatenated."""
    env = make_env(EnvConfig(scn.config), scenario=scn)
    with torch.no_grad():
        rolls = [rollout(env, c, no_control(env), path="whole_day")
                 for c in torch.as_tensor(days).split(chunk)]
    return concat(rolls) if len(rolls) > 1 else rolls[0]


def no_control_voltages(scn: Scenario, days: torch.Tensor, chunk: int = 8):
    """``(v_pu (D, T, n), line_loading (D, T, r), converged (D, T))`` of ``days`` under no
    control (:func:`no_control_rollout`)."""
    roll = no_control_rollout(scn, days, chunk)
    return roll.v_pu, roll.line_loading, roll.converged


def no_control_convergence(scn: Scenario, days: torch.Tensor, chunk: int = 8) -> dict:
    """The power flow over every day-step of ``days`` under no control: ``n_day_steps``,
    ``nonconverged`` (day-steps flagged), ``iterations_mean`` / ``iterations_max`` (fixed
    point plus Newton where the fixed point gave up) and ``share_over_30_iterations``. Keeps
    only these per chunk (a year of a large feeder's voltages would not fit in memory)."""
    env = make_env(EnvConfig(scn.config), scenario=scn)
    conv, iters = [], []
    with torch.no_grad():
        for c in torch.as_tensor(days).split(chunk):
            roll = rollout(env, c, no_control(env), path="whole_day")
            conv.append(roll.converged.reshape(-1))
            iters.append(roll.pf_iterations.reshape(-1).double())
    conv, it = torch.cat(conv), torch.cat(iters)
    return {"n_day_steps": conv.numel(), "nonconverged": int((~conv).sum()),
            "iterations_mean": float(it.mean()), "iterations_max": int(it.max()),
            "share_over_30_iterations": float((it > 30).double().mean())}


def violation_stats(scn: Scenario, days: torch.Tensor) -> ViolationStats:
    v, loading, conv = no_control_voltages(scn, days)
    lim = scn.config.limits
    keep = torch.ones(scn.feeder.n_nodes, dtype=torch.bool)
    keep[torch.as_tensor(scn.feeder.source_nodes)] = False
    v = v[..., keep]
    over, under = torch.relu(v - lim.v_max_pu), torch.relu(lim.v_min_pu - v)
    day_over = (over > 0).flatten(1).any(1)
    day_under = (under > 0).flatten(1).any(1)
    day_line = (loading > lim.line_loading_max).flatten(1).any(1)
    return ViolationStats(
        n_days=len(days),
        share_days_violating=float((day_over | day_under | day_line).double().mean()),
        share_days_overvoltage=float(day_over.double().mean()),
        share_days_undervoltage=float(day_under.double().mean()),
        node_step_frequency=float(((over > 0) | (under > 0)).double().mean()),
        magnitude_pu_per_day=float((over + under).flatten(1).sum(1).mean()),
        v_min_pu=float(v.min()), v_max_pu=float(v.max()),
        max_line_loading=float(loading.max()),
        share_days_line_overload=float(day_line.double().mean()),
        nonconverged=int((~conv).sum()),
    )


# ---------------------------------------------------------------- power-flow conditioning

@dataclass(frozen=True)
class Conditioning:
    """How well conditioned the power flow is over a set of day-steps, against the feeder's DER
    output (:func:`conditioning`; ``docs/powerflow.md``, conditioning). ``D`` days, ``T``
    steps, ``K`` sampled day-steps; CPU tensors.

    Per day-step ``(D, T)``: ``pv_kw`` (all PV, kW), ``generation_kw`` (all generators' output,
    kW), ``der_kw`` (their sum), ``net_load_kw`` (the agents' summed net active power, kW,
    consumption > 0; negative under reverse flow), ``v_max_pu`` (the highest non-source node
    voltage, p.u.: how far the limits are left before conditioning matters), the power flow's
    ``iterations`` (fixed point, plus Newton's where the fixed point gave up) and
    ``contraction`` (its observed rate, :attr:`gridedge_env.PowerFlowResult.contraction`) and
    ``converged``.

    On ``K`` converged day-steps spread evenly over the range of ``der_kw`` (``sample``,
    ``(K, 2)`` day and step indices; fewer where several targets share a closest day-step):
    ``jacobian_cond``, the 2-norm condition number ``σ_max / σ_min`` of the power-flow
    Jacobian ``J = I - M D`` in p.u. (:meth:`gridedge_env.PowerFlow.jacobian`), and
    ``spectral_radius``, that of the fixed-point map's derivative ``I - J = M D`` (the fixed
    point's asymptotic contraction rate), ``(K,)``.
    """

    pv_kw: torch.Tensor
    generation_kw: torch.Tensor
    der_kw: torch.Tensor
    net_load_kw: torch.Tensor
    v_max_pu: torch.Tensor
    iterations: torch.Tensor
    contraction: torch.Tensor
    converged: torch.Tensor
    sample: torch.Tensor
    jacobian_cond: torch.Tensor
    spectral_radius: torch.Tensor

    def summary(self, bins: int = 5) -> dict:
        """JSON-ready report over the converged day-steps: totals, rank correlations
        (Spearman) of contraction and iterations with DER output and net load, the day-steps
        binned by DER output (those without any, then ``bins`` equal-count bins of the rest),
        and the Jacobian sample row by row."""
        ok = self.converged
        der, net = self.der_kw[ok], self.net_load_kw[ok]
        rate, iters = self.contraction[ok], self.iterations[ok].double()
        fin = torch.isfinite(rate)
        some = torch.nonzero(der > 0).squeeze(-1)
        groups = [torch.nonzero(der == 0).squeeze(-1),
                  *torch.tensor_split(some[torch.argsort(der[some])], bins)]
        return {
            "day_steps": int(ok.numel()), "nonconverged": int((~ok).sum()),
            "der_kw_range": [_r(der.min()), _r(der.max())],
            "net_load_kw_range": [_r(net.min()), _r(net.max())],
            "v_max_pu": _r(self.v_max_pu[ok].max()),
            "contraction_mean": _r(rate[fin].mean()), "contraction_max": _r(rate[fin].max()),
            "iterations_mean": _r(iters.mean()), "iterations_max": int(iters.max()),
            "spearman": {
                "contraction_vs_der_kw": _spearman(rate[fin], der[fin]),
                "contraction_vs_net_load_kw": _spearman(rate[fin], net[fin]),
                "iterations_vs_der_kw": _spearman(iters, der),
                "jacobian_cond_vs_der_kw": _spearman(
                    self.jacobian_cond, self.der_kw[self.sample[:, 0], self.sample[:, 1]]),
            },
            "der_bins": [_bin(der[i], net[i], self.v_max_pu[ok][i], rate[i], iters[i])
                         for i in groups if len(i)],
            "jacobian_sample": [self._sample_row(k) for k in range(len(self.sample))],
        }

    def _sample_row(self, k: int) -> dict:
        d, t = (int(i) for i in self.sample[k])
        return {"day": d, "step": t, "der_kw": _r(self.der_kw[d, t]),
                "net_load_kw": _r(self.net_load_kw[d, t]), "v_max_pu": _r(self.v_max_pu[d, t]),
                "iterations": int(self.iterations[d, t]),
                "contraction": _r(self.contraction[d, t]),
                "spectral_radius": _r(self.spectral_radius[k]),
                "jacobian_cond": _r(self.jacobian_cond[k])}


def conditioning(env: EnvParams, days: torch.Tensor, policy=None, n_jacobian: int = 12,
                 chunk: int = 64) -> Conditioning:
    """Power-flow contraction rate, iterations and Jacobian condition numbers of ``days``
    ``(D,)`` under ``policy`` (a rollout policy; default :func:`no_control`), against DER output
    and net load (:class:`Conditioning`). Whole-day rollouts, ``chunk`` days at a time, no
    gradient; then ``n_jacobian`` dense Jacobians (SVD and eigenvalues of ``(2m, 2m)``
    matrices: for feeders of up to a few thousand ports)."""
    days = torch.as_tensor(days, dtype=torch.long).reshape(-1)
    if len(days) == 0 or n_jacobian < 2:
        raise ValueError(f"conditioning needs at least one day and n_jacobian >= 2, got "
                         f"{len(days)} days, n_jacobian={n_jacobian}")
    policy = no_control(env) if policy is None else policy
    with torch.no_grad():
        rolls = [rollout(env, c, policy) for c in days.split(chunk)]
    roll = concat(rolls) if len(rolls) > 1 else rolls[0]
    pv, gen = _der_kw(env, days.to(env.agent_node.device), roll.actions)
    ok = roll.converged.cpu()
    der = (pv + gen).cpu()
    sample = _spread(der, ok, n_jacobian)
    s = torch.complex(roll.p_agent_kw.detach(), roll.q_agent_kvar)[sample[:, 0], sample[:, 1]]
    jac = env.powerflow.jacobian(leg_power(env, s), load_scale=0.0, at=env.leg_node)
    sv = torch.linalg.svdvals(jac)
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    radius = torch.linalg.eigvals(eye - jac).abs().amax(-1)
    return Conditioning(
        pv_kw=pv.cpu(), generation_kw=gen.cpu(), der_kw=der,
        net_load_kw=roll.p_agent_kw.detach().sum(-1).cpu(),
        v_max_pu=roll.v_pu[..., env.node_mask.bool()].amax(-1).cpu(),
        iterations=roll.pf_iterations.cpu(),
        contraction=roll.pf_contraction.cpu(), converged=ok, sample=sample,
        jacobian_cond=(sv[:, 0] / sv[:, -1]).cpu(), spectral_radius=radius.cpu())


def _der_kw(env: EnvParams, days: torch.Tensor, actions: torch.Tensor):
    """Total PV output and generator output, kW, ``(D, T)`` each, of ``days`` whose agents
    took ``actions`` ``(D, T, N)`` (all households behind each agent)."""
    scn = env.scenario
    demand, pv_per_kwp = gather_agents(scn.profiles, scn.assignment, days)
    k = scn.config.households_per_agent
    pv = household.pv_kw(scn.household, HouseholdExog(demand, pv_per_kwp)).sum(-1) * k
    gen = actions[..., env.kind_slices["generator"]]  # (D, T, N_gen)
    _, (p_kw, _), _ = generator.step(scn.generator, None, gen.reshape(-1, gen.shape[-1]))
    return pv, -p_kw.sum(-1).reshape(gen.shape[:2]) * k


def _spread(der: torch.Tensor, ok: torch.Tensor, k: int) -> torch.Tensor:
    """``(<= k, 2)`` (day, step) indices of the converged day-steps closest to ``k`` values
    evenly spaced over the range of ``der`` ``(D, T)`` (lowest and highest included), in
    increasing ``der``, each once."""
    flat = torch.nonzero(ok.reshape(-1)).squeeze(-1)
    if len(flat) == 0:
        raise ValueError("conditioning: no power flow converged, nothing to sample")
    values = der.reshape(-1)[flat]
    targets = torch.linspace(float(values.min()), float(values.max()), k, dtype=values.dtype)
    closest = (values[None, :] - targets[:, None]).abs().argmin(1)  # (k,) first of any ties
    pick = flat[torch.unique(closest)]
    pick = pick[torch.argsort(der.reshape(-1)[pick], stable=True)]
    return torch.stack([pick // der.shape[1], pick % der.shape[1]], dim=1)


def _bin(der, net, v_max, rate, iters) -> dict:
    fin = rate[torch.isfinite(rate)]
    return {"der_kw": [_r(der.min()), _r(der.max())], "net_load_kw_mean": _r(net.mean()),
            "v_max_pu": _r(v_max.max()),
            "contraction_mean": _r(fin.mean()), "contraction_max": _r(fin.max()),
            "iterations_mean": _r(iters.mean()), "iterations_max": int(iters.max())}


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float | None:
    """Spearman's rank correlation (SciPy), None where it is undefined (fewer than 3 points
    or a constant input)."""
    if len(x) < 3 or bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return None
    return _r(spearmanr(x.double().numpy(), y.double().numpy()).statistic)


def _r(x, digits: int = 4) -> float:
    """A float rounded to ``digits`` significant digits (JSON-ready)."""
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x
