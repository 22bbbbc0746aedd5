"""Cross-check :class:`~gridedge_env.PowerFlow` against OpenDSS on the same scenarios.

Both engines solve the feeder at its nominal loads and at ``K`` random scenarios sized to the
circuit (:func:`random_scenarios`: every load scaled by its own factor, generation held at its
snapshot output, plus wye injections at a few random grounded nodes, of a size relative to the
feeder's loads). OpenDSS runs with controls off (taps and capacitor states frozen at the
feeder's), tolerance 1e-12 (1e-10 for a scenario it cannot bring to 1e-12), and loads and
generation that stay in their model outside the default voltage band
(``vminpu=0 vmaxpu=10 vlowpu=0``). A scenario either engine does not solve is reported
(:attr:`Comparison.unsolved`) and left out of the worst-case figures.

Floating sections (``Feeder.floating_sections``: no path to ground) are compared by what is
physically defined there: line-to-line voltage magnitudes and the currents. Their node-to-ground
voltages are set by anti-float admittances alone and are not compared (``docs/powerflow.md``,
error budget).

The OpenDSS circuit is the user's own master file when given, else the feeder exported by
:func:`~gridedge_env.opendss.exporter.export_opendss` (so bundled feeders need no files).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..network.feeder import Feeder
from ..powerflow import PowerFlow
from .exporter import export_opendss, load_parts
from .importer import GENERATION_MODELS, opendss_engine
from .staging import stage_master

#: Gates of the test suite's comparisons of the bundled feeders with OpenDSS, each set from the
#: measured error budget (docs/powerflow.md: worst figure over seeds, load models and both of our
#: factorisations, x86-64, scripts/error_budget.py) with the stated margin.
BUDGET_GATES = {
    "max_v_err_pu": 1e-8,  # worst 4.5e-9 (sparse LU), 1.9e-9 (dense): margin 2.2x / 5x
    "max_v_ll_err_pu_floating": 1e-8,  # worst 1.4e-10: 70x
    "max_angle_err_deg": 2e-6,  # worst 3.9e-7 (sparse), 1.1e-7 (dense): 5x / 18x
    "max_i_rel_err": 3e-5,  # worst 6.0e-6 (sparse), 1.8e-6 (dense): 5x / 16x
    "max_loss_err_of_throughput": 1e-7,  # worst 1.7e-8 (sparse), 4.2e-9 (dense): 6x / 24x
}

#: OpenDSS tolerances tried per scenario, tightest first.
OPENDSS_TOLERANCES = (1e-12, 1e-10)
#: Our power flow's tolerance in comparisons, p.u.
OURS_TOL = 1e-11


@dataclass
class Comparison:
    """Worst disagreement over the scenarios both engines solved (``docs/powerflow.md``).

    Voltage and angle figures are over grounded nodes; floating sections enter through
    ``max_v_ll_err_pu_floating`` and the currents. Figures are ``None`` when no scenario was
    solved by both engines."""

    feeder: str
    load_model: str
    n_scenarios: int  # requested, the nominal one included
    n_compared: int  # solved by both engines
    max_v_err_pu: float | None  # max | |V_ours| - |V_dss| | / V_base at grounded nodes
    max_angle_err_deg: float | None  # max angle difference at grounded nodes
    max_v_ll_err_pu_floating: float | None  # line-to-line magnitudes in floating sections,
    #                                         p.u. of the line-to-line base (0 without any)
    max_i_rel_err: float | None  # max |I_ours - I_dss| / max(|I_dss|, 1 A), terminal-1 phases
    max_loss_rel_err: float | None  # max |dP_loss| / P_loss
    max_loss_err_of_throughput: float | None  # max |dP_loss| / |S_sub|
    unsolved: dict = field(default_factory=dict)  # engine -> scenario indices it did not solve
    opendss_tolerance: float = OPENDSS_TOLERANCES[0]  # loosest tolerance OpenDSS needed
    floating_nodes: list = field(default_factory=list)  # names of the nodes compared line-to-line

    def as_dict(self) -> dict:
        return asdict(self)

    def exceeded(self, gates: dict) -> dict:
        """The figures above their gate, ``{name: (value, gate)}`` (empty when all hold; every
        figure when nothing was compared)."""
        return {k: (getattr(self, k), g) for k, g in gates.items()
                if getattr(self, k) is None or getattr(self, k) > g}


def injection_size_kw(feeder: Feeder) -> float:
    """The largest random injection, kW: a fifth of the mean load term's kW, or without loads a tenth
    of the median line rating at its node's base voltage (``docs/powerflow.md``)."""
    kw = np.abs(feeder.term_zip_kva.sum(1).real)
    if len(kw) and kw.sum() > 0:
        return 0.2 * float(kw.mean())
    rated = feeder.line_normamps > 0
    if not rated.any():
        return 1.0
    first = np.array([feeder.elements[e].conductor_nodes[0] for e in feeder.lines])[rated]
    return 0.1 * float(np.median(feeder.line_normamps[rated] * feeder.base_kv_ln[first]))


def random_scenarios(feeder: Feeder, k: int, seed: int, n_inj: int = 8, load_high: float = 1.5):
    """``(load_scale (k+1, n_loads), inj_nodes (j,), s_kva (k+1, j))``; row 0 is nominal.

    Each load is scaled by its own factor in ``[0.5, load_high]``; ``j <= n_inj`` random
    grounded, non-source nodes carry up to ``±injection_size_kw`` kW and 0.4 times that in kvar.
    Generators, PV systems and storage (``load_params[i]["kind"]``) stay at their snapshot
    output (factor 1).
    """
    rng = np.random.default_rng(seed)
    scale = np.ones((k + 1, feeder.n_loads))
    scale[1:] = rng.uniform(0.5, max(load_high, 0.5), size=(k, feeder.n_loads))
    scale[:, [p.get("kind", "load") != "load" for p in feeder.load_params]] = 1.0
    excluded = np.concatenate([feeder.source_nodes, feeder.floating_nodes()])
    candidates = np.setdiff1d(np.arange(feeder.n_nodes), excluded)
    nodes = np.sort(rng.choice(candidates, size=min(n_inj, len(candidates)), replace=False))
    kw = injection_size_kw(feeder)
    s = np.zeros((k + 1, len(nodes)), dtype=np.complex128)
    s[1:] = kw * (rng.uniform(-1, 1, (k, len(nodes))) + 0.4j * rng.uniform(-1, 1, (k, len(nodes))))
    return scale, nodes, s


def load_headroom(feeder: Feeder, load_model: str) -> float:
    """How far the loads can grow before the most loaded rated line reaches its rating, from our
    nominal solution, clipped to ``[1, 1.5]``: the upper load factor of the random scenarios
    (a circuit already at or over its ratings is varied below nominal only)."""
    r = PowerFlow(feeder, load_model=load_model, tol=1e-8, on_nonconvergence="flag").solve()
    peak = float(r.line_loading.max()) if r.line_loading.numel() else 0.0
    if not bool(r.converged) or peak <= 0:
        return 1.0
    return float(np.clip(1.0 / peak, 1.0, 1.5))


def _compile(dss, feeder: Feeder, master: Path | None, tmp: Path, load_model: str):
    """Compile the OpenDSS circuit; returns its feeder loads as (name, kva, index) triples."""
    if master is None:
        script = tmp / "feeder.dss"
        export_opendss(feeder, script, load_model=load_model)
        dss.Text.Command("clear")
        dss.Text.Command(f'compile "{script}"')
        return [(name, s, li) for name, s, _, li in load_parts(feeder, load_model)]
    dss.Text.Command("clear")
    dss.Text.Command(f'compile "{stage_master(master.resolve(), tmp)}"')
    dss.Text.Command("set mode=snapshot")  # a script may leave a time-series mode
    dss.Text.Command("set controlmode=off")
    for name, taps in feeder.taps.items():
        dss.Text.Command(f"transformer.{name}.taps=[{' '.join(repr(float(t)) for t in taps)}]")
    for el in feeder.elements:  # capacitor states as the import settled them
        if el.cls == "capacitor" and "states" in el.params:
            dss.Text.Command(f"{el.name}.states={el.params['states']}")
    model = " model=1" if load_model == "pq" else ""
    dss.Text.Command(f"batchedit load..* vminpu=0 vmaxpu=10 vlowpu=0{model}")
    kinds = {p.get("kind", "load") for p in feeder.load_params}
    for cls in kinds & set(GENERATION_MODELS):  # stay in model; held at their snapshot output
        dss.Text.Command(f"batchedit {cls}..* vminpu=0 vmaxpu=10{model}")
    return [(n.split(".", 1)[1], complex(p["kw"], p["kvar"]), li)
            for li, (n, p) in enumerate(zip(feeder.load_names, feeder.load_params, strict=True))
            if p.get("kind", "load") == "load"]


def opendss_solutions(feeder: Feeder, load_scale, inj_nodes, s_kva, load_model: str,
                       master: Path | None = None):
    """Solve every scenario with OpenDSS. Returns node voltages ``(S, n)`` in feeder order,
    terminal-1 line-phase currents ``(S, r)`` (complex), losses ``(S,)`` kW, which scenarios
    converged ``(S,)`` bool and the tolerance each needed ``(S,)`` (NaN where none sufficed).
    After a failed scenario the nominal case is solved again, so the next one starts from a
    sane point rather than from the failed iterate."""
    with opendss_engine() as dss, tempfile.TemporaryDirectory() as tmp:
        parts = _compile(dss, feeder, master, Path(tmp), load_model)
        for j, node in enumerate(inj_nodes):
            bus, ph = feeder.nodes[node].rsplit(".", 1)
            dss.Text.Command(f"new load.gridedge_inj{j} bus1={bus}.{ph} phases=1 conn=wye model=1 "
                             f"kV={float(feeder.base_kv_ln[node])!r} kW=0 kvar=0 vminpu=0 vmaxpu=10 vlowpu=0")
        line_of_row, row = feeder.line_phase_rows()
        n_s, n_r = len(load_scale), len(line_of_row)
        v_out = np.zeros((n_s, feeder.n_nodes), dtype=np.complex128)
        i_out = np.zeros((n_s, n_r), dtype=np.complex128)
        loss, tol_used = np.zeros(n_s), np.full(n_s, np.nan)

        def set_loads(scale, s_inj):
            for name, s0, li in parts:
                dss.Loads.Name(name)
                dss.Loads.kW(s0.real * scale[li])
                dss.Loads.kvar(s0.imag * scale[li])
            for j in range(len(inj_nodes)):
                dss.Loads.Name(f"gridedge_inj{j}")
                dss.Loads.kW(float(s_inj[j].real))
                dss.Loads.kvar(float(s_inj[j].imag))

        for s_idx in range(n_s):
            set_loads(load_scale[s_idx], s_kva[s_idx])
            for tol in OPENDSS_TOLERANCES:
                dss.Text.Command(f"set tolerance={tol!r} maxiterations=500")
                dss.Solution.Solve()
                if dss.Solution.Converged():
                    tol_used[s_idx] = tol
                    break
            if np.isnan(tol_used[s_idx]):
                set_loads(np.ones(feeder.n_loads), np.zeros(len(inj_nodes)))
                dss.Solution.Solve()
                continue
            v_out[s_idx], i_out[s_idx] = _read_solution(dss, feeder, line_of_row, row)
            loss[s_idx] = dss.Circuit.Losses()[0] / 1e3
    return v_out, i_out, loss, ~np.isnan(tol_used), tol_used


def _read_solution(dss, feeder: Feeder, line_of_row, row):
    """Node voltages (feeder order; the order re-read after every change) and line currents."""
    order = [feeder.node_index(n) for n in dss.Circuit.YNodeOrder()]
    flat = np.asarray(dss.Circuit.YNodeVArray())
    v = np.zeros(feeder.n_nodes, dtype=np.complex128)
    v[order] = flat[0::2] + 1j * flat[1::2]
    cur = []
    for li in np.unique(line_of_row):
        dss.Circuit.SetActiveElement(feeder.elements[feeder.lines[li]].name)
        c = np.asarray(dss.CktElement.Currents())
        cur.append((c[0::2] + 1j * c[1::2])[row[line_of_row == li]])
    return v, (np.concatenate(cur) if cur else np.zeros(0))


def floating_pairs(feeder: Feeder) -> np.ndarray:
    """``(p, 2)`` node pairs of the same bus within one floating section: the line-to-line
    voltages that are defined there."""
    pairs = []
    for sec in feeder.floating_sections():
        by_bus: dict[str, list[int]] = {}
        for i in sec:
            by_bus.setdefault(feeder.nodes[i].rsplit(".", 1)[0], []).append(int(i))
        for nodes in by_bus.values():
            pairs += [(a, b) for k, a in enumerate(nodes) for b in nodes[k + 1:]]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def compare(feeder: Feeder, scenarios: int = 10, seed: int = 0, load_model: str = "zip",
            master: Path | None = None, backend: str = "auto") -> Comparison:
    """Solve the same scenarios with both engines and report the worst disagreement over the
    scenarios both solved (``backend``: our power flow's, to measure its own round-off)."""
    scale, nodes, s = random_scenarios(feeder, scenarios, seed,
                                       load_high=load_headroom(feeder, load_model))
    v_d, i_d, loss_d, ok_d, tol_d = opendss_solutions(feeder, scale, nodes, s, load_model, master)
    pf = PowerFlow(feeder, injection_nodes=nodes, load_model=load_model, tol=OURS_TOL,
                   on_nonconvergence="flag", backend=backend)
    s_full = torch.zeros(len(scale), feeder.n_nodes, dtype=torch.complex128)
    s_full[:, nodes] = torch.as_tensor(s)
    r = pf.solve(s_full, torch.as_tensor(scale))
    ok_o = r.converged.numpy()
    ok = ok_d & ok_o
    floating = feeder.floating_nodes()
    out = Comparison(
        feeder=feeder.name, load_model=load_model, n_scenarios=len(scale), n_compared=int(ok.sum()),
        max_v_err_pu=None, max_angle_err_deg=None, max_v_ll_err_pu_floating=None,
        max_i_rel_err=None, max_loss_rel_err=None, max_loss_err_of_throughput=None,
        unsolved={"opendss": np.flatnonzero(~ok_d).tolist(), "ours": np.flatnonzero(~ok_o).tolist()},
        opendss_tolerance=float(np.nanmax(tol_d)) if ok_d.any() else float("nan"),
        floating_nodes=[feeder.nodes[i] for i in floating])
    if not ok.any():
        return out
    v, v_d = r.v.numpy()[ok], v_d[ok]
    grounded = np.setdiff1d(np.arange(feeder.n_nodes), floating)
    base = feeder.base_kv_ln * 1e3
    v_err = (np.abs(np.abs(v) - np.abs(v_d)) / base)[:, grounded]
    ang = np.angle(v * np.conj(v_d), deg=True)[:, grounded]
    pairs = floating_pairs(feeder)
    ll_base = np.sqrt(3) * base[pairs[:, 0]]
    ll = np.abs(np.abs(v[:, pairs[:, 0]] - v[:, pairs[:, 1]])
                - np.abs(v_d[:, pairs[:, 0]] - v_d[:, pairs[:, 1]])) / ll_base
    i, i_d = r.i_line_a.numpy()[ok], i_d[ok]
    d_loss = np.abs(r.losses_kva.real.numpy()[ok] - loss_d[ok])
    out.max_v_err_pu = float(v_err.max())
    out.max_angle_err_deg = float(np.abs(ang).max())
    out.max_v_ll_err_pu_floating = float(ll.max()) if ll.size else 0.0
    out.max_i_rel_err = float(np.max(np.abs(i - i_d) / np.maximum(np.abs(i_d), 1.0))) if i.size else 0.0
    out.max_loss_rel_err = float(np.max(d_loss / np.abs(loss_d[ok])))
    out.max_loss_err_of_throughput = float(np.max(d_loss / np.abs(r.s_sub_kva.numpy()[ok])))
    return out


def extended_precision_solution(feeder: Feeder, load_scale, s_kva, load_model: str = "pq",
                                max_iter: int = 400) -> np.ndarray:
    """Node voltages ``(n,)`` V of one scenario, with the residual ``I_src + I_loads(V) - Y V``
    evaluated in ``np.longdouble`` (80-bit on x86-64) and corrected in float64 (iterative
    refinement of the Z-bus fixed point), so the answer is limited by extended, not double,
    round-off: the reference the error budget measures both engines against
    (``docs/powerflow.md``). ``load_scale`` ``(n_loads,)``, ``s_kva`` ``(n,)`` wye injections.
    Slow (no BLAS in long double): for budgets and tests, not for use."""
    ld = np.clongdouble
    n = feeder.n_nodes
    y = np.zeros((n, n), dtype=ld)
    for el in feeder.elements + (feeder.source,):  # setup: one small matrix per element
        keep = np.flatnonzero(el.conductor_nodes >= 0)
        idx = el.conductor_nodes[keep]
        np.add.at(y, (idx[:, None], idx[None, :]), el.y_prim[np.ix_(keep, keep)].astype(ld))
    k = len(feeder.source_emf_v)
    i_src = np.zeros(n, dtype=ld)
    np.add.at(i_src, feeder.source.conductor_nodes[:k],
              feeder.source.y_prim[:k, :k].astype(ld) @ feeder.source_emf_v.astype(ld))
    zip_va = feeder.term_zip_kva.astype(ld) * 1e3 * np.asarray(load_scale)[feeder.term_load, None]
    if load_model == "pq":
        zip_va = np.stack([zip_va.sum(1), 0 * zip_va[:, 0], 0 * zip_va[:, 0]], axis=1)
    vn = feeder.term_vnom_v.astype(np.longdouble)
    s_inj = np.asarray(s_kva).astype(ld) * 1e3
    z = np.linalg.inv(feeder.y_bus())
    v = (z @ feeder.source_current_a()).astype(ld)
    tb, grounded_b = np.maximum(feeder.term_b, 0), feeder.term_b >= 0
    base = feeder.base_kv_ln * 1e3
    for _ in range(max_iter):
        v_ab = v[feeder.term_a] - np.where(grounded_b, v[tb], 0)
        i = (np.conj(zip_va[:, 0] / v_ab) + np.conj(zip_va[:, 1] / vn) * v_ab / np.abs(v_ab)
             + np.conj(zip_va[:, 2] / vn**2) * v_ab)  # consumed, a -> b
        inj = -np.conj(np.divide(s_inj, v, out=np.zeros_like(v), where=s_inj != 0))
        np.add.at(inj, feeder.term_a, -i)
        np.add.at(inj, feeder.term_b[grounded_b], i[grounded_b])
        dv = z @ (i_src + inj - y @ v).astype(np.complex128)
        v = v + dv
        if np.max(np.abs(dv) / base) < 1e-16:
            break
    return v.astype(np.complex128)
