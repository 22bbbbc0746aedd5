"""The network model (:class:`Feeder`, :class:`Element`) and the bundled IEEE test feeders.
Loading by name or from an OpenDSS file: :func:`gridedge_env.feeders.load_feeder`."""

from .bundled import BUNDLED
from .feeder import Element, Feeder

__all__ = ["BUNDLED", "Element", "Feeder"]
