"""One power-delivery element as a primitive admittance: what a :class:`~.feeder.Feeder` is
made of (and what :mod:`.grounding` inspects)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Element:
    """A power-delivery element (or the source) as a primitive admittance.

    ``conductor_nodes[k]`` is the node index of conductor ``k`` (``-1`` = ground) and
    ``y_prim`` the ``(k, k)`` complex admittance in siemens. ``params`` keeps what the OpenDSS
    exporter needs to write the element back (class-specific, see :mod:`gridedge_env.opendss.exporter`).
    """

    name: str  # "line.650632" (OpenDSS class.name, lower case)
    conductor_nodes: np.ndarray  # (k,) int
    y_prim: np.ndarray  # (k, k) complex128, siemens
    params: dict = field(default_factory=dict)

    @property
    def cls(self) -> str:
        return self.name.split(".", 1)[0]
