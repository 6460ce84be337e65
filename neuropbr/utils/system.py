"""What the machine lends this process."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
