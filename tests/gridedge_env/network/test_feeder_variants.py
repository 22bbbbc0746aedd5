"""Feeder.with_taps and with_source_pu against OpenDSS re-imports and the power flow."""

import numpy as np
import pytest
import torch

from gridedge_env.feeders import load_feeder
from gridedge_env.network.bundled import BUNDLED_SOURCES
from gridedge_env.opendss.importer import import_opendss
from gridedge_env.powerflow import PowerFlow


@pytest.mark.parametrize("name", ["ieee13", "ieee34", "ieee123"])
def test_with_taps_matches_opendss_reimport(name, feeder_models):
    folder, master, taps = BUNDLED_SOURCES[name]
    new = {k: 1.0 + 0.00625 * ((3 * i) % 11 - 5) for i, k in enumerate(taps)}
    ours = load_feeder(name).with_taps(new)
    ref = import_opendss(feeder_models / folder / master, name=name, taps=new)
    for a, b in zip(ours.elements, ref.elements, strict=True):
        assert a.name == b.name
        np.testing.assert_allclose(a.y_prim, b.y_prim, rtol=0, atol=1e-8 * np.abs(b.y_prim).max())
    assert ours.taps == ref.taps


def test_with_taps_bad_input():
    f = load_feeder("ieee13")
    with pytest.raises(KeyError, match="nope"):
        f.with_taps({"nope": 1.0})
    with pytest.raises(ValueError, match="tap 2.0"):
        f.with_taps({"reg1": 2.0})


def test_source_pu_scales_no_load_voltage():
    f = load_feeder("ieee13")
    v1 = PowerFlow(f).solve(None, 0.0).v_pu
    v2 = PowerFlow(f.with_source_pu(1.03 * f.source.params["pu"])).solve(None, 0.0).v_pu
    torch.testing.assert_close(v2, v1 * 1.03, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="source pu"):
        f.with_source_pu(3.0)
