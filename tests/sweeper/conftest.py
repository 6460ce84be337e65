"""Fixtures of the sweeper tests: the sphere app run in-process or as worker processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra

from hydra_plugins.neuropbr_optuna import register_plugin
from hydra_plugins.neuropbr_optuna._storage import StorageLock

APP_FILE = Path(__file__).resolve().parent / "app" / "sphere.py"
REPO = Path(__file__).resolve().parents[2]


def load_app() -> ModuleType:
    """The sphere app as a module (its ``objective`` is the task function)."""
    spec = importlib.util.spec_from_file_location("neuropbr_sweeper_test_app", APP_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def load_trials(storage: str, study_name: str = "sphere") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)


def states(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    return [t.state.name for t in trials]


@pytest.fixture
def app_sweep(tmp_path: Path, hydra_restore_singletons: None) -> Iterator[Callable[..., Any]]:
    """Run an in-process multirun of the sphere app; returns what the sweeper returns.

    Trials run in this process (Hydra's BasicLauncher), against a SQLite storage in tmp_path
    unless ``hydra.sweeper.storage`` is overridden.
    """
    app = load_app()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def _sweep(*overrides: str, sweep_dir: Path | None = None) -> Any:
        register_plugin()
        hydra_app = Hydra.create_main_hydra_file_or_module(
            calling_file=str(APP_FILE), calling_module=None, config_path="conf", job_name="sphere"
        )
        base = [
            f"hydra.sweep.dir={sweep_dir or tmp_path / 'multirun'}",
            f"hydra.sweeper.storage={sqlite_url(tmp_path / 'optuna.db')}",
        ]
        try:
            return hydra_app.multirun(
                config_name="config",
                task_function=app.objective,
                overrides=[*base, *overrides],
                with_log_configuration=False,
            )
        finally:
            GlobalHydra.instance().clear()

    yield _sweep
    optuna.logging.set_verbosity(verbosity)


def worker_env(**extra: str) -> dict[str, str]:
    """Environment of a worker process: offline, unbuffered, no stray MLflow URI."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start_app_worker(cwd: Path, *overrides: str, log_name: str) -> subprocess.Popen[bytes]:
    """``python sphere.py -m overrides`` in ``cwd`` as a separate process (output to a log file)."""
    log_file = (cwd / log_name).open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            str(APP_FILE),
            "-m",
            "hydra/hydra_logging=default",
            "hydra/job_logging=stdout",
            *overrides,
        ],
        cwd=cwd,
        env=worker_env(),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def wait_all(processes: list[subprocess.Popen[bytes]], cwd: Path | list[Path], timeout: float = 240) -> None:
    """Wait for every worker; on failure show the worker logs found in ``cwd`` (one or several)."""
    try:
        for process in processes:
            process.wait(timeout=timeout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    if any(p.returncode != 0 for p in processes):
        directories = cwd if isinstance(cwd, list) else [cwd]
        files = sorted(f for d in directories for f in d.glob("worker*.log"))
        logs = "\n".join(f"--- {f}\n{f.read_text()[-4000:]}" for f in files)
        pytest.fail(f"worker exit codes {[p.returncode for p in processes]}\n{logs}")


def assert_lock_excludes_another_process(url: str) -> None:
    """While this process holds the storage lock, a second process blocks on it until released."""
    script = textwrap.dedent(f"""
        import time
        from hydra_plugins.neuropbr_optuna._storage import StorageLock
        lock = StorageLock({url!r})
        print("waiting", flush=True)
        with lock.hold("s"):
            print(time.time(), flush=True)
    """)
    with StorageLock(url).hold("s"):
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=worker_env()
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "waiting"
        time.sleep(1.0)  # the child tries to take the lock meanwhile
        released = time.time()
    acquired = float(child.stdout.readline())
    assert child.wait(timeout=60) == 0
    assert acquired >= released
