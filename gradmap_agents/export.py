"""What a device runs: one ONNX file per agent, its own weights and normalisation inside.

``export_policies(policy, env, out_dir, run=...)`` writes ``<agent>.onnx`` for every agent (input
``obs`` float32 ``(batch, obs_dim)``: the raw local observation as the environment gives it;
output ``action`` float32 ``(batch, 1)`` in ``[-1, 1]``) and ``manifest.json`` (per agent: kind,
node, obs_dim, feature names, file; the scenario and the training run).

The graph is built directly with ``onnx.helper`` (Sub, Div, then MatMul, Add, Tanh per layer):
the same arithmetic as :class:`~.policy.StackedMLP` for one agent. **Decision** (``docs/gradmap.md``):
``torch.onnx.export`` of a one-agent module takes 0.1 s (TorchScript exporter) to 2.8 s (dynamo
exporter) per agent on the 2-core CI machine, 2-47 minutes for 1,000 agents; building the five-op
graph takes about a millisecond. A test runs every exported file in onnxruntime against the
trainer's actions.

``export_policies`` (and ``gradmap-export``) writes only into a new or empty folder, or with
``replace=True`` (``--replace``) replaces a folder's contents whole: the export is written into a
temporary sibling folder, then swapped in (:func:`replace_folder`), so no file of an earlier
export (another run's agents) stays beside the new manifest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .checkpoint import remove_stale_temps

FEATURES = ("sin_time", "cos_time", "price_over_0.5", "demand_kw_over_3", "pv_kw_over_5",
            "t_out_minus_10_over_10", "device_state")
"""Observation features in order (``gridedge_env.core``; ``docs/env.md``, observations)."""
OPSET = 17


class ExportError(RuntimeError):
    """The export folder cannot be used as asked (message names it)."""


def feature_names(obs_dim: int) -> list[str]:
    names = list(FEATURES)
    if obs_dim == len(FEATURES) + 1:
        names.append("v_prev_minus_1_over_0.05")
    if len(names) != obs_dim:
        raise ValueError(f"no feature names for obs_dim {obs_dim}")
    return names


def agent_graph(weights: dict, name: str):
    """The ONNX model of one agent from :meth:`StackedPolicy.agent`'s tensors."""
    import onnx  # why: optional dependency (gridedge[export]), needed by exports only
    from onnx import TensorProto, helper, numpy_helper  # why: optional (gridedge[export])

    def const(key, arr):
        return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), key)

    n_layers = sum(1 for k in weights if k.startswith("w"))
    obs_dim = int(weights["w0"].shape[0])
    inits = [const("obs_mean", weights["obs_mean"].cpu().numpy()),
             const("obs_std", weights["obs_std"].cpu().numpy())]
    nodes = [helper.make_node("Sub", ["obs", "obs_mean"], ["centred"]),
             helper.make_node("Div", ["centred", "obs_std"], ["h0"])]
    for l in range(n_layers):
        inits += [const(f"w{l}", weights[f"w{l}"].cpu().numpy()),
                  const(f"b{l}", weights[f"b{l}"].cpu().numpy().reshape(-1))]
        out = "action" if l == n_layers - 1 else f"h{l + 1}"
        nodes += [helper.make_node("MatMul", [f"h{l}", f"w{l}"], [f"z{l}"]),
                  helper.make_node("Add", [f"z{l}", f"b{l}"], [f"a{l}"]),
                  helper.make_node("Tanh", [f"a{l}"], [out])]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, producer_name="gridedge", opset_imports=[
        helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime releases of 2023 on
    onnx.checker.check_model(model)
    return model


def export_policies(policy, env, out_dir: Path, *, run: str = "", env_id: str = "",
                    replace: bool = False) -> dict:
    """Write every agent's ONNX file and the manifest into ``out_dir``, a new or empty folder;
    returns the manifest. A folder with files in it is an :class:`ExportError` unless
    ``replace``, which replaces its contents whole (:func:`replace_folder`)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, replace)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        manifest: dict = {}
        replace_folder(out_dir, lambda tmp: manifest.update(
            _write_export(policy, env, tmp, run=run, env_id=env_id)))
        return manifest
    return _write_export(policy, env, out_dir, run=run, env_id=env_id)


def _write_export(policy, env, out_dir: Path, *, run: str, env_id: str) -> dict:
    import onnx  # why: optional dependency (gridedge[export]), needed by exports only

    out_dir.mkdir(parents=True, exist_ok=True)
    scn = env.scenario
    names = scn.placement.names()
    kinds = {i: k for k, sl in env.kind_slices.items() for i in range(sl.start, sl.stop)}
    feats = feature_names(env.obs_dim)
    agents = {}
    for i, name in enumerate(names):  # export only: one small file per agent
        onnx.save(agent_graph(policy.agent(i), name), str(out_dir / f"{name}.onnx"))
        legs = [scn.feeder.nodes[int(k)] for k in dict.fromkeys(scn.placement.legs[i].tolist())]
        agents[name] = {"index": i, "kind": kinds[i], "node": legs[0], "legs": legs,
                        "obs_dim": env.obs_dim, "features": feats, "file": f"{name}.onnx"}
    manifest = {"format": "gridedge-policy-export-1", "scenario": scn.config.name, "env": env_id,
                "run": run, "observe_voltage": bool(env.config.observe_voltage),
                "action": "float32 (batch, 1) in [-1, 1]; see docs/devices.md for the mapping",
                "agents": agents}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def check_out_dir(out_dir: Path, replace: bool = False) -> None:
    """Refuse an ``out_dir`` that is a file, or a folder with anything in it unless
    ``replace`` (:class:`ExportError` naming it)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder")
    if not replace and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} is not empty; use --replace to replace its contents whole")


def replace_folder(out_dir: Path, write) -> None:
    """``write(tmp_dir)`` into a new sibling folder ``.<name>.tmp-<PID>``, then swap it in for
    ``out_dir`` (renames; the old folder is deleted afterwards). A failing ``write`` leaves
    ``out_dir`` as it was; temporary folders of killed exports are deleted first."""
    out_dir = Path(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, out_dir.name)
    tmp = parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = parent / f".{out_dir.name}.old-{os.getpid()}"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if out_dir.exists():
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if old.exists() and not out_dir.exists():
                os.replace(old, out_dir)  # put the previous export back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


class OnnxPolicy:
    """The exported agents as a rollout policy: each agent's ONNX model on its own row of the
    observations (onnxruntime, CPU). For checking an export against the trainer."""

    def __init__(self, export_dir: Path):
        import onnxruntime as ort  # why: optional dependency (gridedge[export]), checks exports only

        export_dir = Path(export_dir)
        manifest = json.loads((export_dir / "manifest.json").read_text())
        order = sorted(manifest["agents"].values(), key=lambda a: a["index"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.sessions = [ort.InferenceSession(str(export_dir / a["file"]), opts,
                                              providers=["CPUExecutionProvider"]) for a in order]

    def __call__(self, obs, t=None, state=None):
        x = obs.detach().cpu().numpy().astype(np.float32)  # (B, N, F)
        a = np.stack([s.run(None, {"obs": x[:, i]})[0][:, 0]
                      for i, s in enumerate(self.sessions)], axis=1)  # one device per agent
        return torch.as_tensor(a, dtype=obs.dtype, device=obs.device)
