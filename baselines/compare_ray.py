"""``gradmap-compare --ray ADDRESS``: every (method, seed) of a comparison as one task on an
existing Ray cluster (the optional extra ``pip install gridedge[ray]``).

Each task builds the comparison's environment in its worker (once per worker process), runs
the comparison's ``run_one`` with ``ray_cpus`` CPUs and as many torch threads, and returns the
run's ``result.json``; the driver writes the results, the table and the plots as the
sequential comparison does, so both give the same table (tested on a local two-CPU instance).
Run directories (checkpoints, weights, per-run CSV) are written by the workers under the
comparison directory: on a cluster of several machines that directory (and the config file)
must be at the same absolute path on every node, a shared filesystem, for the OpenDSS
re-simulation of earlier runs and for resuming a killed run from its checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

_ENVS: dict = {}  # per worker process: (config, sets) -> the comparison's environment


def _task(plan, method: str, seed: int, run_one) -> dict:
    torch.set_num_threads(plan.ray_cpus)
    key = (plan.config, plan.sets)
    if key not in _ENVS:
        _ENVS[key] = plan.env()
    return run_one(plan, method, seed, _ENVS[key], progress=lambda msg: None)


def run_on_ray(plan, todo: list[tuple[str, int]], run_one, progress):
    """Submit every (method, seed) of ``todo`` to the Ray cluster at ``plan.ray`` (``"auto"``:
    the one ``RAY_ADDRESS`` or a local ``ray start`` names) as ``run_one(plan, method, seed,
    env)`` tasks (:func:`.compare.run_one`); yields ``((method, seed), result)`` as tasks
    finish."""
    try:
        import ray  # an optional extra (gridedge[ray])
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'gridedge[ray]'") from None
    # workers may start anywhere: paths they read or write must be absolute (a registered
    # config name stays a name)
    plan = dataclasses.replace(plan, out=plan.out.resolve(),
                               config=str(Path(plan.config).resolve())
                               if plan.config and Path(plan.config).is_file() else plan.config)
    ray.init(address=plan.ray, ignore_reinit_error=True, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=plan.ray_cpus, max_retries=0)(_task)
        pending = {remote.remote(plan, m, s, run_one): (m, s) for m, s in todo}
        progress(f"{len(pending)} runs submitted to the Ray cluster at {plan.ray} "
                 f"({plan.ray_cpus} CPU each, {ray.cluster_resources().get('CPU', 0):.0f} CPUs)")
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            method, seed = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # a crashed task fails its run, not the rest
                result = {"method": method, "seed": seed, "failed": f"Ray task: {exc}"[:2000]}
            progress(f"{method} seed {seed}: finished on Ray"
                     + (f" (failed: {result['failed'][:200]})" if "failed" in result else ""))
            yield (method, seed), result
    finally:
        ray.shutdown()
