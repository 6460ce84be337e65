"""Two worker processes running the same sweep command share one study on the default storage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from .conftest import load_trials, sqlite_url, start_app_worker, states, wait_all

pytestmark = pytest.mark.slow


def test_two_workers_share_the_budget_and_one_mlflow_parent(tmp_path: Path) -> None:
    """Two workers, one sweep; the last trial (the best) still runs when the other worker has
    used up the budget: that worker waits for it, and both write the same, true best."""
    from mlflow.tracking import MlflowClient

    mlflow_uri = sqlite_url(tmp_path / "mlflow.db")
    release = tmp_path / "release"
    command = [
        # No hydra.sweeper.storage: the default sqlite:///optuna.db in the working directory.
        "hydra.sweeper.n_trials=4",
        f"barrier_dir={tmp_path / 'barrier'}",  # each worker's first trial waits for the other's
        "sleep_s=0.2",
        "hold_trial=3",  # runs until released, then is the best
        f"release_file={release}",
        "tracking._target_=neuropbr.training.tracking.MlflowTracker",
        "+tracking.uri=null",  # the default, sqlite:///mlflow.db in the working directory...
        "+tracking.experiment_name=sweeps",
        "hydra.job.chdir=true",  # ...which the sweeper passes on to jobs that run elsewhere
    ]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [
        start_app_worker(tmp_path, *command, f"hydra.sweep.dir=multirun{i}", log_name=log.name)
        for i, log in enumerate(logs)
    ]
    try:
        deadline = time.monotonic() + 180
        while not any("waiting up to" in log.read_text() for log in logs):  # one worker is done
            exited = [w.returncode for w in workers if w.poll() is not None]
            assert not exited, f"a worker exited ({exited}) without waiting:\n" + logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "no worker waited for the held trial"
            time.sleep(0.1)
        waiting = next(i for i, log in enumerate(logs) if "waiting up to" in log.read_text())
        assert [
            t.number for t in load_trials(sqlite_url(tmp_path / "optuna.db")) if t.state.name == "RUNNING"
        ] == [3]
        assert not (tmp_path / f"multirun{waiting}" / "optimization_results.yaml").exists()
    finally:
        release.touch()
    wait_all(workers, tmp_path)

    trials = load_trials(sqlite_url(tmp_path / "optuna.db"))
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # the budget is shared, no duplicates
    assert states(trials) == ["COMPLETE"] * 4
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # workers sample differently
    best = min(trials, key=lambda t: t.value)
    assert best.number == 3
    for i in range(2):
        results = OmegaConf.load(tmp_path / f"multirun{i}" / "optimization_results.yaml")
        assert results.final is True and "running_trials" not in results
        assert results.best_trial == best.number and results.best_value == pytest.approx(best.value), i
        assert results.trials == {"COMPLETE": 4}

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name("sweeps").experiment_id
    (parent,) = client.search_runs([experiment], "tags.optuna_role = 'sweep'")
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == [0, 1, 2, 3]
    assert {r.data.tags["optuna_state"] for r in children} == {"COMPLETE"}
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in children}
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.tags["best_run_id"] == best.user_attrs["mlflow_run_id"]
    assert parent.data.tags["results_final"] == "true"


def test_a_killed_workers_trial_is_failed_by_the_next_worker(tmp_path: Path) -> None:
    """SIGKILL a worker in the middle of a trial: its heartbeats stop, and the worker started
    next records that trial as FAIL (and its MLflow run as FAILED), runs only the missing trial,
    and closes the sweep's parent run."""
    import signal
    import time

    from mlflow.tracking import MlflowClient

    storage = sqlite_url(tmp_path / "optuna.db")
    command = [
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=1",
        "hydra.sweep.dir=multirun",
        "tracking._target_=neuropbr.training.tracking.MlflowTracker",
        f"+tracking.uri={sqlite_url(tmp_path / 'mlflow.db')}",
        "+tracking.experiment_name=sweeps",
    ]
    doomed = start_app_worker(tmp_path, *command, "sleep_s=60", log_name="worker0.log")
    try:
        deadline = time.monotonic() + 120
        while True:  # until trial 0 runs and has beaten at least once
            assert doomed.poll() is None, (tmp_path / "worker0.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "trial 0 never started"
            try:
                running = [t for t in load_trials(storage) if t.state.name == "RUNNING"]
            except Exception:  # the worker has not created the study (or its tables) yet
                running = []
            if running and (tmp_path / "mlflow.db").exists():
                break
            time.sleep(0.5)
        time.sleep(2.0)  # the trial's MLflow run is open, a heartbeat or two recorded
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    time.sleep(3.0)  # past grace_period

    survivor = start_app_worker(tmp_path, *command, "sleep_s=0", log_name="worker1.log")
    wait_all([survivor], tmp_path)

    trials = load_trials(storage)
    assert [(t.number, t.state.name) for t in trials] == [(0, "FAIL"), (1, "COMPLETE")]
    assert "stopped sending heartbeats" in (tmp_path / "worker1.log").read_text()
    client = MlflowClient(tracking_uri=sqlite_url(tmp_path / "mlflow.db"))
    experiment = client.get_experiment_by_name("sweeps").experiment_id
    (parent,) = client.search_runs([experiment], "tags.optuna_role = 'sweep'")
    children = {
        r.data.tags["optuna_trial"]: r
        for r in client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    }
    assert children["0"].info.status == "FAILED" and children["0"].data.tags["optuna_state"] == "FAIL"
    assert children["1"].info.status == "FINISHED"
    assert parent.info.status == "FINISHED"
