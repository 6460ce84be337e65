"""A remote tracking server that is down at start-up, or goes away during a run.

Start-up: a free localhost port nobody listens on stands for the dead server; the run fails before
touching its data, naming the URI and the ways to run without it. Mid-run: a real ``mlflow
server`` is stopped while a real training process logs to it and started again; training goes on,
says so once, and the run's history in the store has every step exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from ports import free_port

from neuropbr.train import train
from neuropbr.training.tracking import MlflowTracker
from neuropbr.training.tracking_server import TrackingServerUnavailable

from .helpers import env, train_cmd, wait_for

TINY = ("encoder=tiny", "fusion=tiny", "decoder=tiny", "discriminator=tiny")


def test_dead_server_fails_at_start_naming_the_uri(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    cfg = compose_cfg("data=folder", f"data.root={tmp_path / 'absent'}", *TINY, f"tracking.uri={uri}")
    with pytest.raises(TrackingServerUnavailable) as info:
        train(cfg)  # the data root does not exist either: the tracking check came first
    message = str(info.value)
    assert message.startswith(f"tracking.uri={uri}: no MLflow tracking server answered")
    assert "tracking=none" in message and "tracking.uri=sqlite:///mlflow.db" in message


def test_dead_server_from_the_environment_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingServerUnavailable, match=r"^\$MLFLOW_TRACKING_URI=http://127\.0\.0\.1"):
        MlflowTracker()


def _start_server(store: Path, port: int, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{store}",
            "--default-artifact-root",
            (workdir / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=workdir,
        env=env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: its worker goes with it
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _logged_steps(base: str) -> bool:
    try:
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": ["1"], "max_results": 5}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            runs = json.loads(response.read()).get("runs", [])
    except (urllib.error.URLError, OSError):
        return False
    return any(m["key"] == "train/g_loss" for run in runs for m in run["data"].get("metrics", []))


@pytest.mark.slow
def test_server_going_away_mid_run_does_not_stop_training(tmp_path: Path) -> None:
    store, port = tmp_path / "mlflow.db", free_port()
    base = f"http://127.0.0.1:{port}"
    run_dir = tmp_path / "run"
    log_file = run_dir / "train.log"
    server = _start_server(store, port, tmp_path)
    training = None
    try:
        wait_for(lambda: _healthy(base), server, "the MLflow server's start")
        training = subprocess.Popen(
            train_cmd(
                run_dir,
                "experiment=smoke",
                f"tracking.uri={base}",
                "tracking.retry_every_s=0.5",
                "tracking.log_model=false",
                "trainer.max_epochs=100000",
                "trainer.log_images_every_n_epochs=0",
                smoke=False,
            ),
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        wait_for(lambda: _logged_steps(base), training, "the first metrics on the server")
        _stop(server)
        wait_for(lambda: "stopped answering" in log_file.read_text(), training, "the warning")
        server = _start_server(store, port, tmp_path)
        wait_for(
            lambda: "answers again: sent" in log_file.read_text(), training, "re-sending the kept metrics"
        )
        os.killpg(training.pid, signal.SIGTERM)
        output, _ = training.communicate(timeout=300)
        assert training.returncode == 128 + signal.SIGTERM, output[-3000:]
        wait_for(lambda: _healthy(base), server, "the server")
    finally:
        if training is not None and training.poll() is None:
            os.killpg(training.pid, signal.SIGKILL)
        _stop(server)
    text = log_file.read_text()
    assert text.count("stopped answering") == 1 and text.count("answers again: sent") >= 1
    client = MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("neuropbr").experiment_id])
    assert run.info.status == "KILLED" and "tracking_gap" in run.data.tags
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/g_loss")]
    assert sorted(steps) == list(range(1, max(steps) + 1)), "a step is missing or logged twice"
