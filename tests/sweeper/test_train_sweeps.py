"""Sweeps of the real training job: ``python -m neuropbr.train -m hparams_search=...`` as users
run it, with MLflow tracking, pruning, failures, and ``mlflow server`` reading the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from ports import free_port

from .conftest import load_trials, sqlite_url, states, worker_env

pytestmark = pytest.mark.slow

#: Tiny models at 32 px on 4 samples: two epochs take seconds on CPU.
SMALL = ["experiment=smoke", "trainer.max_epochs=2", "data.resolution=32", "data.num_samples=4"]


def _sweep(cwd: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m neuropbr.train -m ...`` in ``cwd``; fails the test with its output on error."""
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.train", "-m", *overrides],
        cwd=cwd,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        pytest.fail(f"sweep exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@dataclass
class SweepRun:
    directory: Path
    storage: str
    mlflow_uri: str
    trials_after_first_run: list[optuna.trial.FrozenTrial]


@pytest.fixture(scope="module")
def loss_weights_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    """The issue's command, run twice against the same study."""
    directory = tmp_path_factory.mktemp("loss_weights")
    storage, mlflow_uri = sqlite_url(directory / "optuna.db"), sqlite_url(directory / "mlflow.db")
    command = [
        "hparams_search=loss_weights",
        "hydra.sweeper.n_trials=4",
        *SMALL,
        "tracking=mlflow",
        f"tracking.uri={mlflow_uri}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={directory / 'multirun'}",
    ]
    _sweep(directory, *command)
    first = load_trials(storage, "loss_weights")
    _sweep(directory, *command)
    return SweepRun(directory, storage, mlflow_uri, first)


def test_the_sweep_fills_the_study_and_a_rerun_adds_to_it(loss_weights_sweep: SweepRun) -> None:
    first = loss_weights_sweep.trials_after_first_run
    assert [t.number for t in first] == [0, 1, 2, 3] and states(first) == ["COMPLETE"] * 4
    trials = load_trials(loss_weights_sweep.storage, "loss_weights")
    assert [t.number for t in trials] == list(range(8)) and states(trials) == ["COMPLETE"] * 8
    assert set(trials[0].params) == {
        "loss.weights.l1",
        "loss.weights.ssim",
        "loss.weights.normal",
        "loss.weights.gan",
    }
    # The preset's objective: PSNR over the maps, which does not depend on the weights searched.
    study = optuna.load_study(study_name="loss_weights", storage=loss_weights_sweep.storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert all(0.0 < t.value < 100.0 for t in trials)


def test_mlflow_has_a_parent_run_per_sweep_with_a_child_per_trial(loss_weights_sweep: SweepRun) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=loss_weights_sweep.mlflow_uri)
    experiment = client.get_experiment_by_name("neuropbr").experiment_id
    parents = client.search_runs(
        [experiment], "tags.optuna_role = 'sweep'", order_by=["tags.optuna_sweep ASC"]
    )
    assert [p.data.tags["optuna_sweep"] for p in parents] == ["1", "2"]
    trials = {t.number: t for t in load_trials(loss_weights_sweep.storage, "loss_weights")}
    for sweep, parent in enumerate(parents):
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["optuna_study"] == "loss_weights"
        assert parent.data.params["search_space.loss.weights.l1"] == "tag(log, interval(0.1, 10.0))"
        assert (
            parent.data.params["sweeper.sampler"] == "TPESampler"
            and parent.data.params["sweeper.n_trials"] == "4"
        )
        children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        numbers = sorted(int(c.data.tags["optuna_trial"]) for c in children)
        assert numbers == [4 * sweep + i for i in range(4)]
        for child in children:
            trial = trials[int(child.data.tags["optuna_trial"])]
            assert child.data.tags["optuna_state"] == "COMPLETE" and child.info.status == "FINISHED"
            assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
            for name, value in trial.params.items():  # the sampled values are in the resolved config
                assert float(child.data.params[name]) == pytest.approx(value)
            # Named after its trial number and the values tried.
            assert child.info.run_name.startswith(f"trial{trial.number}-")
            assert all(f"-{name}=" in child.info.run_name for name in trial.params), child.info.run_name
            assert child.data.params["optimized_metric"] == "val/overall_psnr"
        best = max((trials[n] for n in numbers), key=lambda t: t.value)
        assert parent.data.metrics["best_value"] == pytest.approx(best.value)
        assert json.loads(parent.data.tags["best_params"]) == pytest.approx(best.params)
        assert parent.data.tags["best_run_id"] == best.user_attrs["mlflow_run_id"]


def _api(base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_mlflow_server_serves_the_sweep_over_its_rest_api(loss_weights_sweep: SweepRun) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            loss_weights_sweep.mlflow_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=loss_weights_sweep.directory,
        env=worker_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the uvicorn worker goes with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server not ready after 120 s"
            time.sleep(0.5)
        experiment = _api(base, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=neuropbr")[
            "experiment"
        ]
        search = {"experiment_ids": [experiment["experiment_id"]], "max_results": 100}
        parents = _api(
            base, "/api/2.0/mlflow/runs/search", {**search, "filter": "tags.optuna_role = 'sweep'"}
        )["runs"]
        assert len(parents) == 2
        for parent in parents:
            run_id = parent["info"]["run_id"]
            children = _api(
                base,
                "/api/2.0/mlflow/runs/search",
                {**search, "filter": f"tags.`mlflow.parentRunId` = '{run_id}'"},
            )
            assert len(children["runs"]) == 4
            run = _api(base, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            assert (
                metrics["n_complete"] == 4
                and "best_value" in metrics
                and tags["optuna_study"] == "loss_weights"
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server by its pid, and its children
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/health", timeout=5)


def test_a_deliberately_bad_trial_is_pruned_and_tagged(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    storage, mlflow_uri = sqlite_url(tmp_path / "optuna.db"), sqlite_url(tmp_path / "mlflow.db")
    common = [
        "hparams_search=learning_rates",
        "hydra.sweeper.n_trials=1",
        *SMALL,
        "trainer.max_epochs=3",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "scheduler.warmup_epochs=0",
        "tracking=mlflow",
        f"tracking.uri={mlflow_uri}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    _sweep(tmp_path, *common, "optimizer.g_lr=2e-4", "optimizer.d_lr=2e-4")  # the reference
    _sweep(tmp_path, *common, "optimizer.g_lr=1000", "optimizer.d_lr=1000")  # deliberately bad
    good, bad = load_trials(storage, "learning_rates")
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 3
    assert bad.state.name == "PRUNED"
    assert list(bad.intermediate_values) == [0]  # stopped after its first validation of 3
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(bad.user_attrs["mlflow_run_id"])
    assert run.data.tags["optuna_state"] == "PRUNED" and run.info.status == "KILLED"
    assert not (Path(bad.user_attrs["run_dir"]) / "checkpoints" / "checkpoint_epoch_0002.pth").exists()


def test_failing_trials_are_recorded_until_max_failure_rate_stops_the_sweep(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    storage, mlflow_uri = sqlite_url(tmp_path / "optuna.db"), sqlite_url(tmp_path / "mlflow.db")
    # An absurd learning rate makes every trial diverge: train() raises after training, so each
    # trial also has an MLflow run, marked FAILED.
    result = _sweep(
        tmp_path,
        "hparams_search=learning_rates",
        "hydra.sweeper.n_trials=3",
        *SMALL,
        "trainer.max_epochs=1",
        "optimizer.g_lr=1e30",
        "trainer.grad_clip_norm=null",
        "discriminator=none",
        "loss=l1_only",
        "hydra.sweeper.max_failure_rate=0.5",
        "tracking=mlflow",
        f"tracking.uri={mlflow_uri}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        check=False,
    )
    assert result.returncode != 0
    assert "2 trial(s) of this worker failed ([0, 1])" in result.stderr
    trials = load_trials(storage, "learning_rates")
    assert states(trials) == ["FAIL", "FAIL"]  # the first failure did not stop it; the second did
    assert all("training diverged" in t.user_attrs["fail_reason"] for t in trials)
    client = MlflowClient(tracking_uri=mlflow_uri)
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna_state"] == "FAIL" and run.info.status == "FAILED"
    experiment = client.get_experiment_by_name("neuropbr").experiment_id
    (parent,) = client.search_runs([experiment], "tags.optuna_role = 'sweep'")
    assert parent.info.status == "FAILED" and parent.data.metrics["n_fail"] == 2
