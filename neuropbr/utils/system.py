"""What the machine lends this process."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_loader_workers(cores: int) -> int:
    """Training loader workers for ``data.num_workers=auto`` on ``cores`` cores.

    None on 2 cores or fewer: the training process's own threads use both, and worker processes
    would compete with them for the same cores. Above that one core stays with the training
    process: ``min(4, cores - 1)``.
    """
    return 0 if cores <= 2 else min(4, cores - 1)
