"""Which code a run used: the git commit of a source checkout, and whether it had local edits."""

from __future__ import annotations

import subprocess
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding neuropbr/ (if any)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=_SOURCE_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the NeuroPBR source checkout this package runs from.

    ``("unknown", None)`` for an installed package: a site-packages folder inside some other
    repository must not report that repository's commit.
    """
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != _SOURCE_ROOT or not (_SOURCE_ROOT / "neuropbr").is_dir():
        return "unknown", None
    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)
