"""Fast no-grad rollouts of the batched core: eager against ``compile=True``, float64 against float32.

Rolls ``--days`` days of ``--env`` (default: the small ``ieee13-50-v0``) with random actions in
each configuration and prints agent-steps/s of the second of two identical days. It also
prints the largest difference in the final step's voltages against the float64 eager run.
``compile=True`` fuses the whole no-grad step through ``torch.compile``: the first day compiles
(seconds, again whenever a step needs more unrolled iterations), the second is timed. For the
comparison with OpenDSS use ``gridedge-bench env`` (``docs/env.md``).

    python examples/fast_rollout.py --env ieee123-1000-v0 --days 64
"""

import argparse
import time

import torch

import gridedge_env as ge


def rollout(env_id: str, days: int, dtype, compile: bool):
    vec = ge.make_vec(env_id, num_envs=days, dtype=dtype, compile=compile)
    g = torch.Generator().manual_seed(0)
    actions = (torch.rand(vec.env.n_steps, days, vec.n_agents, generator=g) * 2 - 1).to(dtype)
    for seed in (0, 0):  # the first day warms up: compile=True compiles and settles its
        vec.reset(seed=seed)  # unrolled iteration count (recompiling when a step needs more)
        t0 = time.perf_counter()
        for t in range(vec.env.n_steps):
            out = vec.step(actions[t])
    rate = days * vec.n_agents * vec.env.n_steps / (time.perf_counter() - t0)
    return rate, out.info["v_pu"].double()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="ieee13-50-v0")
    ap.add_argument("--days", type=int, default=16)
    args = ap.parse_args()
    ref = None
    for dtype in (torch.float64, torch.float32):
        for compile in (False, True):
            rate, v = rollout(args.env, args.days, dtype, compile)
            ref = v if ref is None else ref
            print(f"{str(dtype):14} compile={compile!s:5}  {rate:12,.0f} agent-steps/s  "
                  f"max |dV| vs float64 eager {float((v - ref).abs().max()):.1e} p.u.")


if __name__ == "__main__":
    main()
