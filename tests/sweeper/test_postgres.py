"""Workers on several machines share a study through PostgreSQL: a real local server.

The fixture starts a throw-away PostgreSQL cluster (initdb + pg_ctl) on a free loopback port
and stops it afterwards. PostgreSQL refuses to run as root, so as root (CI) the server runs as
the ``postgres`` user in a directory owned by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

from .conftest import assert_lock_excludes_another_process, load_trials, start_app_worker, states, wait_all

pytestmark = pytest.mark.slow

_BIN_DIRS = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def _pg_bin_dir() -> Path | None:
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    for directory in candidates + _BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return (directory / "initdb").resolve().parent  # /usr/local/bin links into the real bin dir
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg2://postgres@127.0.0.1:<port>/optuna`` on a server of its own."""
    bin_dir = _pg_bin_dir()
    missing = "no PostgreSQL server binaries (initdb, pg_ctl) on PATH, in /usr/local/bin or /usr/lib/postgresql/*/bin"
    if os.environ.get("CI"):
        # CI promises these tests run: a machine without the server or driver is a CI failure.
        assert bin_dir is not None, missing
        import psycopg2
    pytest.importorskip("psycopg2", reason="pip install 'neuropbr[postgres]' (psycopg2-binary)")
    if bin_dir is None:
        pytest.skip(missing)
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]  # the server refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="neuropbr-pg-"))  # not under pytest's 0700 root-only tmp
    data, port = root / "data", free_port()
    if as_user:
        shutil.chown(root, user="postgres")

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off",
            "start",
        )
    except subprocess.CalledProcessError as err:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {err.stderr.decode()}\n{log}")
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE optuna")
        connection.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_study_through_postgres(postgres_url: str, tmp_path: Path) -> None:
    command = [
        f"hydra.sweeper.storage={postgres_url}",
        "hydra.sweeper.study_name=pg",
        "hydra.sweeper.n_trials=6",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2",
        f"barrier_dir={tmp_path / 'barrier'}",
        "sleep_s=0.1",
    ]
    # Each worker in its own directory, as on two machines.
    dirs = [tmp_path / f"machine{i}" for i in range(2)]
    workers = []
    for i, directory in enumerate(dirs):
        directory.mkdir()
        workers.append(start_app_worker(directory, *command, log_name=f"worker{i}.log"))
    wait_all(workers, dirs)

    trials = load_trials(postgres_url, "pg")
    assert sorted(t.number for t in trials) == list(range(6))
    assert set(states(trials)) <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert all(t.intermediate_values for t in trials)  # every trial job reported through PostgreSQL
    # Run directories are named by trial number, so each machine holds its own trials' directories.
    ran = sorted(int(p.name) for d in dirs for p in (d / "multirun").iterdir() if p.is_dir())
    assert ran == list(range(6))


def test_the_advisory_lock_excludes_another_process(postgres_url: str) -> None:
    assert_lock_excludes_another_process(postgres_url)
