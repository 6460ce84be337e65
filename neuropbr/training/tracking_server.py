"""Opening the tracking store: a new SQLite store under a lock, and a remote MLflow tracking
server that is down at start-up or goes away during a run.

:func:`open_client` opens a ``sqlite:///`` store under a file lock, so that runs starting together
never migrate the same new database at once.

At start-up (:func:`check_tracking_server`, before any data is read) an ``http(s)://`` tracking
URI must answer within seconds, else the run stops saying which URI did not answer and how to run
without it; MLflow's own client would retry for minutes and then fail with no hint.

During a run, :class:`BufferedClient` stands between the tracker and ``MlflowClient``: a write
that fails because the server cannot be reached (refused, timed out, 5xx after retries) is kept
in memory with everything after it, training goes on, one warning says so, and the kept calls are
re-sent in their order once the server answers its health check again (tried every
``retry_every_s``); the gap is then recorded as the run's ``tracking_gap`` tag. Requests fail
fast (a short timeout, one retry) so a dead server costs seconds once, not minutes per step.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuropbr.utils.files import exclusive_lock

log = logging.getLogger(__name__)

#: ``MlflowClient`` methods that write; the others (reads, run creation) are called through.
WRITE_METHODS = frozenset(
    {
        "log_batch",
        "log_metric",
        "log_param",
        "set_tag",
        "delete_tag",
        "log_artifact",
        "log_artifacts",
        "log_text",
        "log_dict",
        "log_image",
        "log_figure",
        "log_inputs",
        "set_terminated",
        "update_run",
    }
)
#: How requests fail while a run is under way (unless the user set these MLflow variables).
_FAST_REQUESTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
#: Calls kept at most while the server is away (oldest dropped first, with one warning).
MAX_PENDING = 200_000


def open_client(uri: str) -> Any:
    """An ``MlflowClient`` of ``uri``; a SQLite store is opened under a file lock
    (``<database>.lock``).

    Opening a SQLite store creates and migrates its tables when the file is new; two runs that
    start together on a new ``mlflow.db`` would both migrate it, and one fails (``duplicate
    column name``). The lock makes the second wait until the first has finished.
    """
    from mlflow.tracking import MlflowClient

    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    database = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    with exclusive_lock(database.with_name(database.name + ".lock")):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # the store is set up by now, whatever MLflow defers
    return client


class TrackingServerUnavailable(ConnectionError):
    """The tracking server did not answer at start-up."""


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def server_answers(uri: str, timeout_s: float) -> str | None:
    """None when ``uri``'s server answers HTTP at all (``/health``; any status counts: a proxy
    asking for credentials is up), else why not."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


def check_tracking_server(uri: str | None, timeout_s: float = 5.0) -> None:
    """Fail now, naming the URI, when a remote tracking server does not answer.

    Args:
        uri: ``tracking.uri`` (None: ``$MLFLOW_TRACKING_URI``; local stores are not checked).
        timeout_s: how long to wait for an answer.

    Raises:
        TrackingServerUnavailable: with the URI, where it came from, the reason and the ways out.
    """
    source = "tracking.uri"
    if uri is None:
        uri, source = os.environ.get("MLFLOW_TRACKING_URI"), "$MLFLOW_TRACKING_URI"
    if not uri or not is_remote(uri):
        return
    reason = server_answers(uri, timeout_s)
    if reason is not None:
        raise TrackingServerUnavailable(
            f"{source}={uri}: no MLflow tracking server answered within {timeout_s:g} s ({reason}). "
            "Start it (mlflow server --host 0.0.0.0 --port PORT ...) or point tracking.uri at a running "
            "one; or log to a local store instead: tracking.uri=sqlite:///mlflow.db; or run without "
            "tracking: tracking=none"
        )


def is_unavailable(err: BaseException) -> bool:
    """Whether ``err`` says the server could not be reached (as opposed to a rejected request)."""
    import requests

    if isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)):
        return True
    text = str(err)
    return text.startswith("API request to ") and (
        "failed with exception" in text or "failed with timeout exception" in text
    )


@contextlib.contextmanager
def _fast_failing_requests() -> Iterator[None]:
    """MLflow's retry settings for one call: short, unless the user chose their own."""
    added = {key: value for key, value in _FAST_REQUESTS.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class BufferedClient:
    """An ``MlflowClient`` whose writes survive the server going away (see the module docstring).

    Args:
        client: the ``MlflowClient`` of ``uri``.
        uri: the remote tracking URI (for messages and health checks).
        retry_every_s: seconds between attempts to re-send while the server is away.
        probe_timeout_s: how long a health check waits.
    """

    def __init__(
        self, client: Any, uri: str, retry_every_s: float = 60.0, probe_timeout_s: float = 2.0
    ) -> None:
        self._client = client
        self.uri = uri
        self.retry_every_s = retry_every_s
        self.probe_timeout_s = probe_timeout_s
        self.pending: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._away_since: float | None = None
        self._away_wall = 0.0
        self._last_try = 0.0
        self._dropped = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in WRITE_METHODS and callable(attr):
            return functools.partial(self._write, name)
        return attr

    @property
    def away(self) -> bool:
        """The server is not answering (calls are being kept)."""
        return self._away_since is not None

    def _write(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if not self.away:
            try:
                with _fast_failing_requests():
                    return getattr(self._client, name)(*args, **kwargs)
            except Exception as err:
                if not is_unavailable(err):
                    raise
                self._away_since = self._last_try = time.monotonic()
                self._away_wall = time.time()
                log.warning(
                    "MLflow tracking server %s stopped answering (%s): training goes on; metrics and "
                    "artifacts are kept in memory and re-sent when it answers again (tried every %g s)",
                    self.uri,
                    str(err).splitlines()[0][:300],
                    self.retry_every_s,
                )
        self._keep(name, args, kwargs)
        final = name == "set_terminated"  # the run's end: one last try now
        if not self.retry(force=final) and final:
            steps = sorted(
                {m.step for n, _, k in self.pending if n == "log_batch" for m in k.get("metrics", ())}
            )
            log.error(
                "MLflow tracking server %s is still away at the end of the run: %d call(s) not sent%s; "
                "the run stays RUNNING there (train.log holds the logged values)",
                self.uri,
                len(self.pending),
                f" (metrics of steps {steps[0]}-{steps[-1]})" if steps else "",
            )
        return None

    def _keep(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.pending.append((name, args, kwargs))
        if len(self.pending) > MAX_PENDING:
            del self.pending[0]
            self._dropped += 1
            if self._dropped == 1:
                log.warning(
                    "MLflow tracking server %s: more than %d calls kept; dropping the oldest",
                    self.uri,
                    MAX_PENDING,
                )

    def retry(self, force: bool = False) -> bool:
        """Re-send the kept calls if the server answers again; True when nothing is left."""
        if not self.away:
            return True
        now = time.monotonic()
        if not force and now - self._last_try < self.retry_every_s:
            return False
        self._last_try = now
        if server_answers(self.uri, self.probe_timeout_s) is not None:
            return False
        run_ids = [args[0] for _, args, _ in self.pending[:1] if args and isinstance(args[0], str)]
        sent = 0
        try:
            with _fast_failing_requests():
                while self.pending:
                    name, args, kwargs = self.pending[0]
                    getattr(self._client, name)(*args, **kwargs)
                    self.pending.pop(0)
                    sent += 1
        except Exception as err:
            if not is_unavailable(err):
                raise
            return False
        gap = now - (self._away_since or now)
        self._away_since = None
        log.warning(
            "MLflow tracking server %s answers again: sent %d kept call(s) after %.0f s", self.uri, sent, gap
        )
        if run_ids:
            start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._away_wall))
            self._write("set_tag", run_ids[0], "tracking_gap", f"{start} +{gap:.0f} s ({sent} calls re-sent)")
        return True
