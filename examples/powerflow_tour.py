"""A tour of the power flow and the differentiable environment (``python examples/powerflow_tour.py``).

Load the bundled IEEE 13 node feeder (no OpenDSS or network needed), solve it at nominal load, print a voltage
table, solve a batch of 256 load scenarios at once and take the gradient of the lowest voltage
with respect to every scenario's load level through the implicit power-flow gradient; then run
eight test days of the ``ieee13-50-v0`` environment (50 agents) with all actions 0 and
backpropagate the days' cost plus voltage penalties to all 50 x 48 x 8 actions.
"""

import time

import torch

import gridedge_env as ge


def voltage_table(feeder, v_pu) -> str:
    buses: dict[str, dict[str, float]] = {}
    for name, v in zip(feeder.nodes, v_pu.tolist(), strict=True):
        bus, phase = name.rsplit(".", 1)
        buses.setdefault(bus, {})[phase] = v
    lines = [f"{'bus':>10} {'a (pu)':>8} {'b (pu)':>8} {'c (pu)':>8}"]
    for bus, ph in buses.items():
        cells = [f"{ph[p]:8.4f}" if p in ph else f"{'':8}" for p in ("1", "2", "3")]
        lines.append(f"{bus:>10} " + " ".join(cells))
    return "\n".join(lines)


def main() -> None:
    feeder = ge.load_feeder("ieee13")
    pf = ge.PowerFlow(feeder)
    r = pf.solve()
    print(f"IEEE 13 node feeder, nominal loads (constant power), published regulator taps: "
          f"{int(r.iterations)} iterations, residual {float(r.residual):.1e} p.u.")
    print(voltage_table(feeder, r.v_pu))
    print(f"substation {r.s_sub_kva.real:.1f} kW {r.s_sub_kva.imag:.1f} kvar, "
          f"losses {r.losses_kva.real:.1f} kW")

    scale = torch.linspace(0.5, 1.6, 256, dtype=torch.float64)[:, None].requires_grad_(True)
    t0 = time.perf_counter()
    batch = pf.solve(None, scale)
    load_nodes = torch.as_tensor(sorted(set(feeder.term_a.tolist())))
    worst = batch.v_pu[:, load_nodes].amin(-1)  # lowest load-node voltage, per scenario
    worst.sum().backward()
    dt = time.perf_counter() - t0
    print(f"\n256 scenarios (load x0.5 .. x1.6) solved and differentiated in {dt * 1e3:.1f} ms")
    for k in (0, 128, 255):
        print(f"  load x{scale[k, 0].item():.2f}: lowest load voltage {worst[k].item():.4f} pu, "
              f"d(lowest)/d(load scale) = {scale.grad[k, 0].item():+.4f} pu")


def env_days() -> None:
    from gridedge_env.core import reset, step
    from gridedge_env.registry import env_params

    params = env_params("ieee13-50-v0")

    days = params.scenario.split.test[:8]
    actions = torch.zeros(8, params.n_steps, params.n_agents, dtype=torch.float64,
                          requires_grad=True)
    state, _ = reset(params, 8, days=days)
    t0 = time.perf_counter()
    total, over, under = 0.0, 0.0, 0.0
    for t in range(params.n_steps):
        state, out = step(params, state, actions[:, t])
        total = total + sum(c.sum() for c in out.costs.values())
        over = over + out.constraints.v_over_pu.sum()
        under = under + out.constraints.v_under_pu.sum()
    (total + 100 * (over + under)).backward()
    dt = time.perf_counter() - t0
    print(f"\nieee13-50-v0, 8 test days x 48 steps x 50 agents, all actions 0 (batteries idle, "
          f"heat pumps and generators at half power): cost "
          f"{total.item() / 8:.1f} GBP/day, voltage exceedance {over.item():.3f} (over) / "
          f"{under.item():.3f} (under) p.u.-node-steps; rolled out and backpropagated in "
          f"{dt:.2f} s (|grad| max {actions.grad.abs().max().item():.3g})")


if __name__ == "__main__":
    main()
    env_days()
