"""Feeder map for ``render()``: buses coloured by voltage, agents sized by their power.

``rgb_array`` returns an ``(H, W, 3)`` uint8 image; ``human`` draws into a matplotlib window.
Lines are drawn between the buses each line connects; buses without coordinates are skipped.
"""

from __future__ import annotations

import numpy as np


def draw(env, out, mode: str):
    import matplotlib  # matplotlib only when plotting (import time)

    if mode == "rgb_array":
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # after the backend is chosen

    f = env.scenario.feeder
    coords = f.bus_coords
    if mode == "human":  # one window, redrawn every call (no pile of figures over a day)
        fig = plt.figure("gridedge feeder", figsize=(6, 5), dpi=80, clear=True)
        ax = fig.add_subplot()
    else:
        fig, ax = plt.subplots(figsize=(6, 5), dpi=80)
    for li in f.lines:
        buses = [b.split(".")[0].lower() for b in f.elements[li].params["buses"]]
        if len(buses) == 2 and buses[0] in coords and buses[1] in coords:
            (x0, y0), (x1, y1) = coords[buses[0]], coords[buses[1]]
            ax.plot([x0, x1], [y0, y1], color="0.6", lw=1, zorder=1)
    bus_of = [n.rsplit(".", 1)[0] for n in f.nodes]
    lim = env.scenario.config.limits
    if out is not None:
        v = out.info["v_pu"][0].detach().cpu().numpy()
        p = out.info["p_agent_kw"][0].detach().cpu().numpy()
    else:
        v, p = np.ones(f.n_nodes), np.zeros(env.n_agents)
    worst = {}
    for i, b in enumerate(bus_of):
        dev = v[i] - 1.0
        if b in coords and abs(dev) >= abs(worst.get(b, 0.0)):
            worst[b] = dev
    xy = np.array([coords[b] for b in worst]) if worst else np.zeros((0, 2))
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=[1 + d for d in worst.values()], cmap="coolwarm",
                    vmin=lim.v_min_pu - 0.02, vmax=lim.v_max_pu + 0.02, s=30, zorder=2)
    fig.colorbar(sc, ax=ax, label="most extreme phase voltage (p.u.)")
    agent_bus = [bus_of[k] for k in env.agent_node.cpu().numpy()]
    pts = [(coords[b], p[i]) for i, b in enumerate(agent_bus) if b in coords]
    if pts:
        rng = np.random.default_rng(0)  # jitter so agents on one bus stay visible
        axy = np.array([c for c, _ in pts]) + rng.normal(0, 0.01, (len(pts), 2)) * np.ptp(xy, 0)
        pw = np.array([q for _, q in pts])
        ax.scatter(axy[:, 0], axy[:, 1], s=4 + 40 * np.abs(pw) / (np.abs(pw).max() + 1e-9),
                   c=np.where(pw >= 0, "tab:red", "tab:green"), alpha=0.5, zorder=3)
    ax.set_title(f"{f.name}: bus voltages; agents (red: consuming, green: producing)", fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    if mode == "human":
        plt.show(block=False)
        plt.pause(0.001)
        return None
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img
