"""The shared shim of every console script: exit status from ``main``, and Ctrl-C as one line.

Every long command (training, comparisons, sweeps, benchmarks) writes its state to its run
folder as it goes, so an interrupt loses at most the step in flight. A traceback on Ctrl-C would
say the opposite; the shim prints where things stand instead and exits with 130 (the shell's
code for SIGINT).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_INTERRUPTED = 130


def run_console(main: Callable[[], int], prog: str) -> None:
    """Run ``main()`` and exit with its status; on Ctrl-C print one line on stderr and exit 130."""
    try:
        status = main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; what was written so far is kept, and commands that take "
              "--out or --resume carry on from it when run again", file=sys.stderr)
        status = EXIT_INTERRUPTED
    sys.exit(status)
