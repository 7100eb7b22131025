"""Peak-memory probes: RSS high-water mark of this process (resettable on Linux) and CUDA max allocated."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import torch

GIB = 1024**3
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc; elsewhere the high-water mark as an upper bound)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss_bytes()


def peak_rss_bytes() -> int:
    """RSS high-water mark since the process started or since :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Resets the RSS high-water mark to the current RSS (Linux >= 4.0); False where not supported."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def reset_peak(device: torch.device) -> bool:
    """Resets the peak counter of ``device`` (CUDA allocator stats, or this process's RSS high-water mark)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    return reset_peak_rss()


def peak_bytes(device: torch.device) -> int:
    """Peak since the last reset: CUDA ``max_memory_allocated`` or the RSS high-water mark."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()
