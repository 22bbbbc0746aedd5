"""``torch.compile`` as the environment and the power flow use it: :func:`compile_own`.

Two settings, both for speed of small, frequently called graphs:

- **Its own code object.** Dynamo keeps compiled versions of a function per code object, at most
  ``torch._dynamo.config.recompile_limit`` (8), one per batch size, dtype, grad mode or unroll
  count, and runs the function eagerly beyond that. Each caller (an environment, a power flow)
  compiles a copy of the function's code, so that a float64 and a float32 environment, or two
  feeders, in one process do not use up each other's budget.
- **No size asserts.** Inductor's generated code re-checks every input's sizes and strides on
  each call, which dynamo's guards have already checked (~50 checks, 4 % of the environment's
  fused float32 step at 64 days).
"""

from __future__ import annotations

import types

import torch

OPTIONS = {"size_asserts": False}
"""Inductor options of every compiled stage."""


def compile_own(fn):
    """``torch.compile`` of a copy of ``fn`` with its own code object (module docstring)."""
    own = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                             fn.__defaults__, fn.__closure__)
    return torch.compile(own, options=OPTIONS)
