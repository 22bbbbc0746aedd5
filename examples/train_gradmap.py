"""GradMAP from Python: train on ieee13-50, evaluate on the test days, export one ONNX file per
agent (``python examples/train_gradmap.py [ITERATIONS]``; the CLI equivalent is
``gradmap-train --config ieee13-50``).

The trainer reports through a callback (``progress_fn``); here it prints every validation point.
"""

import sys
import tempfile
from pathlib import Path

from gradmap_agents.config import load_config
from gradmap_agents.evaluate import evaluate
from gradmap_agents.export import export_policies
from gradmap_agents.train import train
from gridedge_env.registry import env_params
from gridedge_env.rollout import no_control


def main(iterations: int = 100) -> dict:
    cfg = load_config("ieee13-50", {"iterations": iterations, "eval_every": 25})
    env = env_params(cfg.env)  # the batched, differentiable core (float64, CPU)

    def progress(m):
        if "val/cost" in m:
            print(f"iteration {m['iteration']:4d}  {m['train/wall_seconds']:6.1f} s  validation "
                  f"cost {m['val/cost']:8.0f} GBP/day  violation {m['val/violation_magnitude']:.4f}")

    state = train(env, cfg, progress_fn=progress)
    test = env.scenario.split.test
    ours, _ = evaluate(env, state.policy, test)
    base, _ = evaluate(env, no_control(env), test)
    for k in ("cost", "violation_magnitude", "violation_frequency"):
        print(f"test {k:20}  policies {ours[k]:10.4g}  no control {base[k]:10.4g}")
    out = Path(tempfile.mkdtemp(prefix="gradmap-export-"))
    manifest = export_policies(state.policy, env, out, env_id=cfg.env)
    print(f"exported {len(manifest['agents'])} ONNX policies to {out}")
    return {"test": ours, "no_control": base}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
