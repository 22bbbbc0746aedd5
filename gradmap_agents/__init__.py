"""GradMAP: gradient-based multi-agent proximal learning (Zhou, Zeng & Morstyn, arXiv 2604.24549).

One independent policy per agent (:mod:`.policy`, stacked parameters), the GradMAP and GradMA
updates (:mod:`.gradmap`), the primal-dual trainer (:mod:`.train`), the run API that trains,
evaluates and rebuilds a run directory (:mod:`.runs`), ONNX export (:mod:`.export`) and the
``gradmap-*`` commands (:mod:`.cli`). See ``docs/gradmap.md`` and ``docs/architecture.md``.
"""
