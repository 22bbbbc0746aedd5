"""The test-day figure of ``gradmap-eval --day K``: device power over rating, derived from the
rollout, checked against the devices' own action maps; one panel per device kind."""

import pytest
import torch

from gradmap_agents.plots import device_power_day, device_power_pu, device_rating_kw
from gridedge_env.devices import battery
from gridedge_env.registry import env_params
from gridedge_env.rollout import rollout


@pytest.fixture(scope="module")
def env():
    return env_params("ieee13-50-v0")


def test_device_power_over_rating_matches_the_devices_action_maps(env):
    """Fixed random actions, some outside [-1, 1]: the heat pump and generator follow their
    affine maps of the clamped action, the battery its SoC-bounded map replayed step by step."""
    days = env.scenario.split.test[:2]
    g = torch.Generator().manual_seed(0)
    a = 2.4 * torch.rand(len(days), env.n_steps, env.n_agents, generator=g,
                         dtype=torch.float64) - 1.2
    with torch.no_grad():
        roll = rollout(env, days, lambda obs, t, state: a[:, t])
    p = device_power_pu(env, roll, days)
    assert p.shape == (len(days), env.n_steps, env.n_agents)
    sl, a_c = env.kind_slices, a.clamp(-1, 1)
    torch.testing.assert_close(p[..., sl["heatpump"]], (a_c[..., sl["heatpump"]] + 1) / 2,
                               rtol=0, atol=1e-9)
    torch.testing.assert_close(p[..., sl["generator"]], -(a_c[..., sl["generator"]] + 1) / 2,
                               rtol=0, atol=1e-9)
    bat, soc, p_bat = env.scenario.battery, None, []
    soc = battery.init_state(bat, len(days))
    for t in range(env.n_steps):  # the reference: the battery model stepped over the day
        soc, (pb, _), _ = battery.step(bat, soc, a[:, t, sl["battery"]], None, env.dt_h)
        p_bat.append(pb / bat.p_max_kw)
    torch.testing.assert_close(p[..., sl["battery"]], torch.stack(p_bat, 1), rtol=0, atol=1e-9)
    assert float(p.abs().max()) <= 1 + 1e-9 and float(p[..., sl["battery"]].min()) < -0.5
    assert device_rating_kw(env).shape == (env.n_agents,)
    with pytest.raises(ValueError, match="days has 1 entries, the rollout 2 days"):
        device_power_pu(env, roll, days[:1])


def test_one_panel_per_kind_with_every_agent_and_the_mean(tmp_path):
    t, kinds = 48, {"battery": slice(0, 3), "heatpump": slice(3, 3), "generator": slice(3, 5)}
    power = torch.linspace(-1, 1, t * 5, dtype=torch.float64).reshape(t, 5)
    fig = device_power_day(power, kinds, 0.5, tmp_path / "day.png", "synthetic")
    assert (tmp_path / "day.png").stat().st_size > 10_000
    assert [ax.get_title() for ax in fig.axes] == ["battery (3 agents)", "generator (2 agents)"]
    for ax, sl in zip(fig.axes, (kinds["battery"], kinds["generator"]), strict=True):
        agents = [ln for ln in ax.lines if ln.get_label().startswith("_child")
                  and len(ln.get_ydata()) == t]  # not the zero line
        mean = [ln for ln in ax.lines if ln.get_label() == "mean of the kind"]
        assert len(agents) == sl.stop - sl.start and len(mean) == 1
        assert mean[0].get_ydata() == pytest.approx(power[:, sl].mean(1).numpy())
        assert ax.get_ylim() == (-1.05, 1.05) and ax.get_xlim() == (0, 24)
