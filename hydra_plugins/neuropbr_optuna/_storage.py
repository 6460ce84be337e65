"""Optuna RDB storage: URLs, connections, and the lock that serialises workers' bookkeeping.

Any SQLAlchemy URL works (``sqlite:///optuna.db``, ``postgresql+psycopg2://user:pw@host/db``,
``mysql+pymysql://...``). Several workers on one machine can share a SQLite file; workers on
several machines need a server (PostgreSQL).

The storage lock (:class:`StorageLock`) makes "read the trial count, then ask a trial" atomic
across workers, so that a shared sweep never creates more trials than its budget; it also
serialises the creation of a new database's tables by workers that start together:

- sqlite: an exclusive ``flock`` on ``<database>.lock`` beside the database file (SQLite is
  single-machine by nature, and the lock dies with the process);
- postgresql: a session-level advisory lock (``pg_advisory_lock``) keyed by the study name,
  held on a connection of its own, so it never blocks optuna's own row locks and is released
  by the server if the worker dies;
- other dialects: no lock. Concurrent workers can then ask one trial too many at the end of a
  sweep; the sweeper detects it from the trial number and records it as FAIL (see ``_rounds``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

#: SQLite waits this long (s) for another writer instead of failing with "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 60


def absolute_storage_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (trial jobs may run in another directory).

    Raises:
        ValueError: ``url`` is empty, in-memory SQLite, or not a SQLAlchemy URL.
    """
    if not url:
        raise ValueError(
            "hydra.sweeper.storage is empty: expected an RDB URL such as sqlite:///optuna.db "
            "or postgresql+psycopg2://user:password@host:5432/optuna"
        )
    try:
        parsed = make_url(url)
    except Exception as err:  # sqlalchemy raises ArgumentError; report the key we read it from
        raise ValueError(f"hydra.sweeper.storage={url!r} is not a SQLAlchemy URL: {err}") from err
    if parsed.get_backend_name() != "sqlite":
        return url
    if parsed.database in (None, "", ":memory:"):
        raise ValueError(
            f"hydra.sweeper.storage={url!r}: an in-memory SQLite database cannot be shared with trial jobs; "
            "use a file, e.g. sqlite:///optuna.db"
        )
    assert parsed.database is not None
    return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(
        hide_password=False
    )


def redact(url: str) -> str:
    """``url`` with its password hidden, for logs and MLflow params."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: show nothing of it rather than a secret
        return "<unparsable storage URL>"


def open_storage(url: str, existing: bool = False) -> optuna.storages.RDBStorage:
    """An optuna RDB storage for ``url``.

    Args:
        url: SQLAlchemy URL.
        existing: the sweeper already created and version-checked this database (a trial job
            opening it): skip both, which takes the open from ~0.2 s to ~0.02 s.
    """
    engine_kwargs: dict[str, object] = {}
    if make_url(url).get_backend_name() == "sqlite":
        # Several processes write to one file: wait for the file lock rather than fail at once.
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
    else:
        # A long sweep outlives idle server connections; check each one before use.
        engine_kwargs["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(
        url, engine_kwargs=engine_kwargs, skip_compatibility_check=existing, skip_table_creation=existing
    )


class StorageLock:
    """The cross-process lock of one storage URL (see the module docstring).

    Args:
        url: the storage's SQLAlchemy URL; the lock never goes through optuna's connections.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = {"sqlite": "file", "postgresql": "advisory"}.get(make_url(url).get_backend_name(), "none")
        self._engine: Any = None
        if self.kind == "advisory":
            # One short-lived connection per hold: no pool to keep alive between trials.
            self._engine = create_engine(url, poolclass=NullPool)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock for ``key`` (a study name; SQLite has one lock per database file)."""
        if self.kind == "file":
            with _file_lock(Path(str(make_url(self.url).database) + ".lock")):
                yield
        elif self.kind == "advisory":
            with _advisory_lock(self._engine, key):
                yield
        else:
            yield


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(engine: Any, key: str) -> Iterator[None]:
    # A stable signed 64-bit key (Python's hash() differs between processes).
    number = int.from_bytes(
        hashlib.sha256(f"neuropbr-optuna:{key}".encode()).digest()[:8], "big", signed=True
    )
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": number})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": number})
            connection.commit()
