"""Batched, differentiable three-phase power flow (see ``docs/powerflow.md``)."""

from .solve import PowerFlow, PowerFlowError, PowerFlowResult

__all__ = ["PowerFlow", "PowerFlowError", "PowerFlowResult"]
