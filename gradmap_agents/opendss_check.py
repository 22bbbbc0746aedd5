"""The OpenDSS cross-check of trained policies (``gradmap-eval --opendss``, ``gradmap-compare
--opendss``): part of evaluation, never of training."""

from __future__ import annotations

import torch

from gridedge_env.opendss.powerflow import opendss_stepped
from gridedge_env.rollout import rollout

from .evaluate import metrics


def opendss_check(env, policy, days) -> dict:
    """``opendss/`` metrics: ``days`` stepped with OpenDSS solving every power flow (the
    policies act on OpenDSS's voltages where they observe any), and the largest voltage and
    action differences to our solver on the same days."""
    peer = opendss_stepped(env)
    with torch.no_grad():
        ours = rollout(env, days, policy, path="stepwise")
        theirs = rollout(peer, days, policy, path="stepwise")
    m = metrics(env, theirs)
    out = {f"opendss/{k}": v for k, v in m.items()}
    out["opendss/max_v_diff_pu"] = float((ours.v_pu - theirs.v_pu).abs().max())
    out["opendss/max_action_diff"] = float((ours.actions - theirs.actions).abs().max())
    return out
