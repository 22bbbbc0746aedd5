"""gridedge_env: a batched, differentiable three-phase grid-edge multi-agent environment.

Public surface: :func:`make` (PettingZoo ``ParallelEnv``), :func:`make_vec` (the batched core),
:data:`registry`; :func:`load_feeder` and :class:`Feeder` (the network); :class:`PowerFlow` (the
batched, differentiable power flow). Importing the package registers the centralised Gymnasium
views (``gymnasium.make("gridedge/IEEE13-50-v0")``). See ``docs/index.md``.
"""

from importlib.metadata import version as _version

from .envs import make, make_vec
from .feeders import load_feeder
from .network import BUNDLED, Feeder
from .powerflow import PowerFlow, PowerFlowError, PowerFlowResult
from .registry import register, registry
from .wrappers import gymnasium as _gymnasium  # noqa: F401  registers gridedge/IEEE13-50-v0, ...

__all__ = [
    "BUNDLED",
    "Feeder",
    "PowerFlow",
    "PowerFlowError",
    "PowerFlowResult",
    "load_feeder",
    "make",
    "make_vec",
    "register",
    "registry",
]
__version__ = _version("gridedge")  # the installed distribution's, from pyproject.toml
