"""Runs that start together on a new ``mlflow.db`` all get their run: the store is created once.

Creating a SQLite store migrates its tables; without a lock, two processes doing it at once make
one fail with ``duplicate column name``. Three real processes open the same new store at the same
moment (after a barrier, so the race is not left to chance) and each logs a whole run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow.tracking import MlflowClient

from .helpers import env, wait_for

RUN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from neuropbr.training.tracking import MlflowTracker

    uri, go = sys.argv[1], Path(sys.argv[2])
    Path(f"{go}.ready{os.getpid()}").touch()
    while not go.exists():  # every process is imported and waiting: open the store together
        time.sleep(0.001)
    tracker = MlflowTracker(uri=uri, experiment_name="together")
    tracker.start(params={"worker": os.getpid()}, tags={})
    tracker.log_metrics({"train/g_loss": 1.0}, step=1)
    tracker.close("FINISHED")
    """
)


def test_three_processes_create_one_new_store(tmp_path: Path) -> None:
    script, go = tmp_path / "run.py", tmp_path / "go"
    script.write_text(RUN)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), uri, str(go)],
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        wait_for(lambda: len(list(tmp_path.glob("go.ready*"))) == 3, None, "three processes ready")
        go.touch()
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("together").experiment_id])
    assert sorted(run.info.status for run in runs) == ["FINISHED"] * 3
    assert len({run.data.params["worker"] for run in runs}) == 3
