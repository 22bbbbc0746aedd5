"""Benchmarks of the environment package, each against its real peer in the same run:
:mod:`.powerflow` (``gridedge-bench powerflow``: our solver vs OpenDSS), :mod:`.env`
(``gridedge-bench env``: agent-steps/s of the core vs OpenDSS-stepped power flows) and
:mod:`.dayflow` (``gridedge-bench dayflow``: whole training days' power flows, ours in one
batched call, forward and forward+backward, vs OpenDSS day-step by day-step). Beside them,
one analysis: :mod:`.conditioning` (``gridedge-bench conditioning``: the power flow's contraction
rate, iterations and Jacobian condition number against DER output). The environment-gradient
benchmark needs a policy and lives with the trainer (``gradmap-bench --envgrad``)."""
