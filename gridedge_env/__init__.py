"""gridedge_env: a batched, differentiable three-phase grid-edge environment.

Public surface: :func:`load_feeder` and :class:`Feeder` (the network), :class:`PowerFlow` (the
batched, differentiable power flow).
"""

from .network import BUNDLED, Feeder, load_feeder
from .powerflow import PowerFlow, PowerFlowError, PowerFlowResult

__all__ = ["BUNDLED", "Feeder", "PowerFlow", "PowerFlowError", "PowerFlowResult", "load_feeder"]
__version__ = "0.1.0.dev0"
