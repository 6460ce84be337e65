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
import inspect
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from neuropbr.utils.files import exclusive_lock

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


def open_storage(
    url: str,
    existing: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> optuna.storages.RDBStorage:
    """An optuna RDB storage for ``url``.

    Args:
        url: SQLAlchemy URL.
        existing: the sweeper already created and version-checked this database (a trial job
            opening it): skip both, which takes the open from ~0.2 s to ~0.02 s.
        heartbeat_interval, grace_period: optuna's heartbeat settings (see :class:`TrialHeartbeat`);
            None: no stale-trial detection through this storage.
        on_stale_trial: called with each trial that ``optuna.storages.fail_stale_trials`` fails.
    """
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval is not None:
        heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
        if on_stale_trial is not None:
            # optuna 4.9 renamed failed_trial_callback (kept, deprecated, until 6.0).
            renamed = (
                "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
            )
            heartbeat["heartbeat_stale_trial_callback" if renamed else "failed_trial_callback"] = (
                on_stale_trial
            )
    engine_kwargs: dict[str, object] = {}
    if make_url(url).get_backend_name() == "sqlite":
        # Several processes write to one file: wait for the file lock rather than fail at once.
        engine_kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
    else:
        # A long sweep outlives idle server connections; check each one before use.
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            skip_compatibility_check=existing,
            skip_table_creation=existing,
            **heartbeat,
        )


class TrialHeartbeat:
    """Records a heartbeat for this worker's running trials every ``interval`` seconds.

    optuna's own heartbeat thread lives inside ``study.optimize``; the sweeper asks and tells
    trials itself, around launcher jobs that may run in other processes or on other machines,
    so it beats for them from here. A beat is recorded as soon as a trial is watched: a trial
    without any beat is never considered stale by optuna.

    Args:
        storage: the sweep's storage.
        interval: seconds between beats; None: a no-op.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, interval: int | None) -> None:
        self.storage, self.interval = storage, interval
        self._trial_ids: set[int] = set()
        self._guard = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, trials: Iterable[optuna.Trial]) -> None:
        if self.interval is None:
            return
        ids = [trial._trial_id for trial in trials]
        with self._guard:
            self._trial_ids.update(ids)
        for trial_id in ids:
            self.storage.record_heartbeat(trial_id)
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
            self._thread.start()

    def unwatch(self, trials: Iterable[optuna.Trial]) -> None:
        with self._guard:
            self._trial_ids.difference_update(trial._trial_id for trial in trials)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        assert self.interval is not None
        while not self._stopped.wait(self.interval):
            with self._guard:
                ids = sorted(self._trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a database hiccup: the next beat retries, the trial runs on
                    log.exception("could not record the heartbeat of trial id %d", trial_id)


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
            with exclusive_lock(Path(str(make_url(self.url).database) + ".lock")):
                yield
        elif self.kind == "advisory":
            with _advisory_lock(self._engine, key):
                yield
        else:
            yield


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
