"""What every benchmark reports beside its numbers: the machine, and a device synchronisation
so that a timing ends when the device's work does."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def sync(device: torch.device | str) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> str:
    """The processor, its cores and the torch version and threads, as one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
