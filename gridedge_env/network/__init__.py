"""Feeders: the network model, OpenDSS import/export and the bundled IEEE test feeders."""

from .bundled import BUNDLED, load_feeder
from .feeder import Element, Feeder

__all__ = ["BUNDLED", "Element", "Feeder", "load_feeder"]
