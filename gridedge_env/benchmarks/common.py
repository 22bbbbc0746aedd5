"""What every benchmark reports beside its numbers: the machine, and a device synchronisation
so that a timing ends when the device's work does."""

from __future__ import annotations

import os
import platform
import resource
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


def peak_memory_gb(device: torch.device | str) -> dict:
    """Peak memory so far, GB: the process's peak resident set (``getrusage``, the whole run
    including set-up: an upper bound of any one step's) and, on CUDA, the peak of tensors
    allocated since the last ``torch.cuda.reset_peak_memory_stats``."""
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}
    device = torch.device(device)
    if device.type == "cuda":
        out["peak_cuda_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return out
