"""Which code a run used: the git commit of a source checkout (or of a pip install from git), and
whether it had local edits."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class SourceInfo:
    """The code a run used: the package version and, when known, its git commit and origin."""

    version: str
    commit: str | None
    dirty: bool | None
    repo_url: str | None
    branch: str | None


def source_info() -> SourceInfo:
    """:class:`SourceInfo` of the running NeuroPBR.

    A source checkout gives its commit, local edits, branch and ``origin`` URL. An installed
    package gives the commit pip recorded when it was installed from git (``pip install
    git+https://...@<ref>``: PEP 610 ``direct_url.json``), else no commit.
    """
    version = _package_version()
    commit, dirty = git_state()
    if commit != "unknown":
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        return SourceInfo(
            version=version,
            commit=commit,
            dirty=dirty,
            repo_url=_git("remote", "get-url", "origin") or None,
            branch=branch if branch and branch != "HEAD" else None,
        )
    vcs = _direct_url().get("vcs_info") or {}
    if vcs.get("vcs") == "git" and vcs.get("commit_id"):
        return SourceInfo(version, str(vcs["commit_id"]), None, _direct_url().get("url"), None)
    return SourceInfo(version, None, None, None, None)


def _package_version() -> str:
    try:
        return metadata.version("neuropbr")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _direct_url() -> dict[str, Any]:
    """PEP 610 ``direct_url.json`` of the installed distribution ({} when absent)."""
    try:
        text = metadata.distribution("neuropbr").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return {}
    try:
        content = json.loads(text) if text else {}
    except ValueError:
        return {}
    return content if isinstance(content, dict) else {}
