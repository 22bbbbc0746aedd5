"""Bundled feeders and :func:`load_feeder`.

The bundled feeders are the IEEE 13, 34 (two models) and 123 node test feeders, converted by this
project's importer from EPRI's OpenDSS models (BSD-3-Clause; see ``docs/feeders.md``) with the
regulator taps of the published IEEE solutions. They ship as ``bundled/<name>.json.gz`` and load
without OpenDSS or network access. ``scripts/build_bundled_feeders.py`` regenerates them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .feeder import Feeder

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


def load_feeder(name_or_path: str | Path, **import_kwargs) -> Feeder:
    """A bundled feeder by name (``"ieee13"``, ``"ieee34"``, ``"ieee34mod2"``, ``"ieee123"``), a
    saved feeder file (``.json.gz``), or any OpenDSS master file (``.dss``) imported through
    opendssdirect.py (``import_kwargs`` go to :func:`~.opendss_import.import_opendss`)."""
    key = str(name_or_path).lower()
    if key in BUNDLED_SOURCES:
        return Feeder.load(bundled_path(key))
    path = Path(name_or_path)
    if path.name.endswith(".json.gz"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: feeder file not found")
        return Feeder.load(path)
    if path.suffix.lower() == ".dss" or path.exists():
        from .opendss_import import import_opendss

        return import_opendss(path, **import_kwargs)
    raise ValueError(f"{name_or_path!r} is neither a bundled feeder ({', '.join(BUNDLED)}) "
                     "nor an existing .dss / .json.gz file")
