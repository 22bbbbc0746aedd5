"""Any feeder by one call: :func:`load_feeder` (a bundled name, a saved feeder file or an
OpenDSS master file). It sits above the network model and the OpenDSS importer, which know
nothing of each other's callers."""

from __future__ import annotations

from pathlib import Path

from .network.bundled import BUNDLED, BUNDLED_SOURCES, bundled_path
from .network.feeder import Feeder
from .opendss.importer import import_opendss


def load_feeder(name_or_path: str | Path, **import_kwargs) -> Feeder:
    """A bundled feeder by name (``"ieee13"``, ``"ieee34"``, ``"ieee34mod2"``, ``"ieee123"``, and
    the IEEE 8500-node feeder's balanced and unbalanced load cases ``"ieee8500"``,
    ``"ieee8500unbal"``), a saved feeder file (``.json.gz``), or any OpenDSS master file
    (``.dss``) imported through opendssdirect.py (``import_kwargs`` go to
    :func:`~gridedge_env.opendss.importer.import_opendss`)."""
    key = str(name_or_path).lower()
    if key in BUNDLED_SOURCES:
        return Feeder.load(bundled_path(key))
    path = Path(name_or_path)
    if path.name.endswith(".json.gz"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: feeder file not found")
        return Feeder.load(path)
    if path.suffix.lower() == ".dss" or path.exists():
        return import_opendss(path, **import_kwargs)
    raise ValueError(f"{name_or_path!r} is neither a bundled feeder ({', '.join(BUNDLED)}) "
                     "nor an existing .dss / .json.gz file")
