"""Bundled feeders (loaded by name through :func:`gridedge_env.feeders.load_feeder`).

The bundled feeders are the IEEE 13, 34 (two models) and 123 node test feeders, converted by this
project's importer from EPRI's OpenDSS models (BSD-3-Clause; see ``docs/feeders.md``) with the
regulator taps of the published IEEE solutions. They ship as ``bundled/<name>.json.gz`` and load
without OpenDSS or network access. ``scripts/build_bundled_feeders.py`` regenerates them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_TAP_STEP = 0.00625  # 5/8 % per step: the 32-step regulators of the IEEE feeders


def _steps(d: dict[str, int]) -> dict[str, float]:
    return {k: 1.0 + _TAP_STEP * v for k, v in d.items()}


#: name -> (folder, master file, published regulator taps in pu on winding 2). The taps are the
#: positions the IEEE published solutions use (quoted by EPRI's run scripts).
BUNDLED_SOURCES = {
    "ieee13": ("ieee13", "IEEE13Nodeckt.dss", {"reg1": 1.0625, "reg2": 1.0500, "reg3": 1.06875}),
    "ieee34": ("ieee34", "ieee34Mod1.dss",
               _steps({"reg1a": 12, "reg1b": 5, "reg1c": 5, "reg2a": 13, "reg2b": 11, "reg2c": 12})),
    "ieee34mod2": ("ieee34", "ieee34Mod2.dss",
                   _steps({"reg1a": 12, "reg1b": 5, "reg1c": 5, "reg2a": 13, "reg2b": 11, "reg2c": 12})),
    "ieee123": ("ieee123", "IEEE123Master.dss",
                _steps({"reg1a": 7, "reg2a": -1, "reg3a": 0, "reg3c": -1, "reg4a": 8, "reg4b": 1,
                        "reg4c": 5})),
}

BUNDLED = tuple(BUNDLED_SOURCES)


def bundled_path(name: str) -> Path:
    """Path of a bundled feeder file."""
    return Path(str(resources.files("gridedge_env.network") / "bundled" / f"{name}.json.gz"))
