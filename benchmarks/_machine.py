"""What machine a benchmark ran on and what its child processes spent (``from _machine import cpu_model``)."""

from __future__ import annotations

import platform
import resource
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (the platform's processor string where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's finished child processes (worker processes, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
