"""Split-phase households (``household_connection="split-phase"``): placement on both 120 V legs
of a service, half the power on each, the agent's voltage the mean of its legs', and agreement
with OpenDSS solving the same service load the way EPRI's IEEE 8500 model writes it (a two-phase
wye load on the legs, its kW split equally)."""

import numpy as np
import pytest
import torch

from gridedge_env.config import from_dict
from gridedge_env.core import EnvConfig, agent_voltage, leg_power, make_env, reset, step
from gridedge_env.feeders import load_feeder
from gridedge_env.opendss.importer import opendss_engine
from gridedge_env.scenarios import ScenarioConfig, build_scenario, place_agents
from gridedge_env.scenarios.placement import connections

#: A primary with a single-phase load and a centre-tapped service transformer feeding a
#: 120/240 V secondary through a triplex drop; the house load is EPRI's two-phase wye form.
SPLIT_PHASE = """\
Clear
New Circuit.sp basekv=12.47 pu=1.02 phases=3 bus1=src MVAsc3=200 MVAsc1=210
New Line.l1 bus1=src.1.2.3 bus2=p.1.2.3 phases=3 r1=0.3 x1=0.6 r0=0.6 x0=1.2 length=2 units=km
New Transformer.t1 phases=1 windings=3 buses=[p.1 x.1.0 x.0.2] conns=[wye wye wye]
~ kvs=[7.2 0.12 0.12] kvas=[50 50 50] %loadloss=0.6 xhl=2.04 xht=2.04 xlt=1.36
New Linecode.tpx nphases=2 units=km rmatrix=[0.5 | 0.1 0.5] xmatrix=[0.3 | 0.15 0.3]
New Line.drop bus1=x.1.2 bus2=sx.1.2 phases=2 linecode=tpx length=0.05 units=km
New Load.house phases=2 bus1=sx.1.2 kv=0.208 conn=wye model=1 kw=12 pf=0.97
New Load.prim phases=1 bus1=p.2 kv=7.2 kw=12 pf=0.95 model=1
Set VoltageBases=[12.47 0.208]
CalcVoltageBases
"""


@pytest.fixture
def circuit(tmp_path):
    path = tmp_path / "split_phase.dss"
    path.write_text(SPLIT_PHASE)
    return path


def _config(path, connection="split-phase", n_agents=6):
    return from_dict(ScenarioConfig, {"name": "sp", "feeder": str(path), "n_agents": n_agents,
                                      "household_connection": connection}, "test")


def test_split_phase_households_take_both_legs_of_the_service(circuit):
    f = load_feeder(circuit)
    legs, weight = connections(f, "split-phase")
    names = [[f.nodes[k] for k in row] for row in legs]
    assert names == [["p.2", "p.2"], ["sx.1", "sx.2"]]  # service pair; the primary load alone
    np.testing.assert_allclose(weight, [12.0, 12.0])
    p = place_agents(f, 6, {"battery": 1.0}, seed=0, connection="split-phase")
    assert p.legs.shape == (6, 2) and np.array_equal(p.legs[:, 0], p.node)
    assert sorted(map(tuple, p.legs.tolist())).count(tuple(legs[1])) == 3
    # "phase" keeps the one-node placement: the service's two nodes are separate places
    q = place_agents(f, 6, {"battery": 1.0}, seed=0, connection="phase")
    assert q.legs.shape == (6, 1) and {f.nodes[k] for k in q.node} == {"p.2", "sx.1", "sx.2"}


def test_split_phase_needs_a_service(dss_circuit):
    f = load_feeder(dss_circuit("three_bus"))
    with pytest.raises(ValueError, match="no split-phase service"):
        connections(f, "split-phase")
    with pytest.raises(ValueError, match="household_connection must be one of"):
        _config(dss_circuit("three_bus"), connection="240v")


def test_legs_carry_half_the_power_and_the_voltage_is_their_mean(circuit):
    cfg = _config(circuit)
    env = make_env(EnvConfig(cfg), scenario=build_scenario(cfg))
    n = env.n_agents
    x = torch.arange(1.0, n + 1, dtype=torch.float64)[None]
    legs = leg_power(env, x)
    assert legs.shape == (1, 2 * n)
    torch.testing.assert_close(legs[:, :n] + legs[:, n:], x, rtol=0, atol=0)
    v = torch.rand(3, env.scenario.feeder.n_nodes, dtype=torch.float64)
    want = (v[:, env.agent_legs[:, 0]] + v[:, env.agent_legs[:, 1]]) / 2
    torch.testing.assert_close(agent_voltage(env, v), want, rtol=0, atol=0)
    # a step conserves each agent's power over its legs: the nodal injections add up
    state, _ = reset(env, 2, seed=0)
    _, out = step(env, state, torch.zeros(2, n, dtype=torch.float64))
    assert bool(out.info["converged"].all())


def test_split_phase_households_agree_with_opendss(circuit):
    """Every household draws the same power; OpenDSS solves the file with its loads set to the
    households' totals (the house load's kW split equally on its legs, as EPRI's model does),
    controls off, tolerance 1e-12: node voltages agree to 1e-8 p.u."""
    scn = build_scenario(_config(circuit))
    env = make_env(EnvConfig(scn.config), scenario=scn)
    f = scn.feeder
    s_home = complex(2.0, 2.0 * np.tan(np.arccos(0.97)))  # kVA per household
    s = torch.full((1, env.n_agents), s_home, dtype=torch.complex128)
    r = env.powerflow.solve(leg_power(env, s), load_scale=0.0, at=env.leg_node)
    service = np.isin(scn.placement.node, [f.node_index("sx.1")])
    with opendss_engine() as dss:
        dss.Text.Command(f'compile "{circuit}"')
        dss.Text.Command(f"edit load.house kw={2.0 * service.sum()} pf=0.97")
        dss.Text.Command(f"edit load.prim kw={2.0 * (~service).sum()} pf=0.97")
        dss.Text.Command("set tolerance=1e-12 maxiterations=200")
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        flat = np.asarray(dss.Circuit.YNodeVArray())
        order = [f.node_index(name) for name in dss.Circuit.YNodeOrder()]
    v_dss = np.zeros(f.n_nodes, dtype=np.complex128)
    v_dss[order] = flat[0::2] + 1j * flat[1::2]
    err = np.abs(np.abs(r.v[0].numpy()) - np.abs(v_dss)) / (f.base_kv_ln * 1e3)
    assert err.max() < 1e-8, err.max()
