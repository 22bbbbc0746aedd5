"""Bundled feeders (loaded by name through :func:`gridedge_env.feeders.load_feeder`).

The bundled feeders are the IEEE 13, 34 (two models), 123 and 8500 node test feeders (the 8500
in its balanced and unbalanced load cases), converted by this project's importer from EPRI's
OpenDSS models (BSD-3-Clause: the notice ships as ``bundled/LICENSE-EPRI-BSD3.txt``; see
``docs/feeders.md``). The 13-, 34- and 123-node feeders carry the regulator taps of the published
IEEE solutions; the 8500-node cases, which have no published taps, the taps OpenDSS's RegControls
settle at on each load case. They ship as ``bundled/<name>.json.gz`` and load without OpenDSS or
network access. ``scripts/build_bundled_feeders.py`` regenerates them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_TAP_STEP = 0.00625  # 5/8 % per step: the 32-step regulators of the IEEE feeders


def _steps(d: dict[str, int]) -> dict[str, float]:
    return {k: 1.0 + _TAP_STEP * v for k, v in d.items()}


#: name -> (folder, master file, regulator taps in pu on winding 2). For IEEE 13, 34 and 123 the
#: taps are the positions the IEEE published solutions use (quoted by EPRI's run scripts). For
#: IEEE 8500 they are the positions OpenDSS's RegControls settle at on that load case
#: (``import_opendss(master, taps="solved").meta["controls"]``, with the importer's raised
#: control limits); the unbalanced case settles one step apart on the three ``vreg2`` phases.
#: Both 8500 cases settle with all nine switched capacitor phases closed, the files' own states.
BUNDLED_SOURCES = {
    "ieee13": ("ieee13", "IEEE13Nodeckt.dss", {"reg1": 1.0625, "reg2": 1.0500, "reg3": 1.06875}),
    "ieee34": ("ieee34", "ieee34Mod1.dss",
               _steps({"reg1a": 12, "reg1b": 5, "reg1c": 5, "reg2a": 13, "reg2b": 11, "reg2c": 12})),
    "ieee34mod2": ("ieee34", "ieee34Mod2.dss",
                   _steps({"reg1a": 12, "reg1b": 5, "reg1c": 5, "reg2a": 13, "reg2b": 11, "reg2c": 12})),
    "ieee123": ("ieee123", "IEEE123Master.dss",
                _steps({"reg1a": 7, "reg2a": -1, "reg3a": 0, "reg3c": -1, "reg4a": 8, "reg4b": 1,
                        "reg4c": 5})),
    "ieee8500": ("ieee8500", "Master.dss",
                 _steps({"feeder_rega": 2, "feeder_regb": 2, "feeder_regc": 1,
                         "vreg2_a": 10, "vreg2_b": 6, "vreg2_c": 2,
                         "vreg3_a": 16, "vreg3_b": 10, "vreg3_c": 1,
                         "vreg4_a": 12, "vreg4_b": 12, "vreg4_c": 5})),
    "ieee8500unbal": ("ieee8500", "Master-unbal.dss",
                      _steps({"feeder_rega": 2, "feeder_regb": 2, "feeder_regc": 1,
                              "vreg2_a": 11, "vreg2_b": 7, "vreg2_c": 1,
                              "vreg3_a": 16, "vreg3_b": 10, "vreg3_c": 1,
                              "vreg4_a": 12, "vreg4_b": 12, "vreg4_c": 5})),
}

BUNDLED = tuple(BUNDLED_SOURCES)

#: The licence notice of the source models (EPRI / DSS-Extensions, BSD-3-Clause style), shipped
#: beside the bundled files as their licence requires; copied from the 8500-node model folder.
LICENSE_FILE = "LICENSE-EPRI-BSD3.txt"


def bundled_folder() -> Path:
    """The folder of the bundled feeder files and their licence notice (:data:`LICENSE_FILE`)."""
    return Path(str(resources.files("gridedge_env.network") / "bundled"))


def bundled_path(name: str) -> Path:
    """Path of a bundled feeder file (``name`` in :data:`BUNDLED`)."""
    return bundled_folder() / f"{name}.json.gz"
