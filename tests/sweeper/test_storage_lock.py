"""The sweeper's cross-process SQLite lock, checked fast: a second process finds it taken while
this one holds it, and free once released (the slow suite also blocks a real second holder)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from hydra_plugins.neuropbr_optuna._storage import StorageLock

from .conftest import worker_env

# The child tries the lock file without waiting and says what it found.
_PROBE = textwrap.dedent("""
    import fcntl, sys
    with open(sys.argv[1], "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("taken")
        else:
            print("free")
""")


def _probe(lock_file: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(lock_file)],
        capture_output=True,
        text=True,
        timeout=60,
        env=worker_env(),
        check=True,
    )
    return result.stdout.strip()


def test_another_process_finds_the_sqlite_lock_taken_while_held(tmp_path: Path) -> None:
    database = tmp_path / "sweeps.db"
    lock_file = Path(str(database) + ".lock")
    lock = StorageLock(f"sqlite:///{database}")
    with lock.hold("study"):
        assert lock_file.is_file(), f"StorageLock.hold did not create its lock file {lock_file}"
        assert _probe(lock_file) == "taken", "StorageLock.hold did not exclude another process"
    assert _probe(lock_file) == "free", "StorageLock.hold kept the lock after the block ended"
