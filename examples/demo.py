"""The main job on the small embedded case (``make demo``).

Until the GradMAP trainer lands this runs the best end-to-end path that exists: load the bundled
IEEE 13 node feeder (no OpenDSS or network needed), solve it at nominal load, print a voltage
table, then solve a batch of 256 load scenarios at once and take the gradient of the lowest
voltage with respect to every scenario's load level through the implicit power-flow gradient.
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


if __name__ == "__main__":
    main()
