"""MLflow tracker against a real sqlite store, read back through MlflowClient."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from neuropbr.training.tracking import MlflowTracker, NullTracker, flatten


def test_flatten_config() -> None:
    flat = flatten({"encoder": {"name": "resnet18", "channels": [1, 2]}, "seed": 3, "empty": {}})
    assert flat == {"encoder.name": "resnet18", "encoder.channels": "[1, 2]", "seed": "3", "empty": "{}"}
    assert len(flatten({"long": "x" * 10_000})["long"]) == 6000


def test_null_tracker_accepts_everything() -> None:
    tracker = NullTracker()
    tracker.start(params={"a": 1}, tags={})
    tracker.log_metrics({"x": 1.0}, step=0)
    tracker.close()
    assert tracker.run_id is None


def test_mlflow_run_params_metrics_artifacts_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {"encoder": {"name": "tiny"}, **{f"k{i}": i for i in range(150)}}  # > one LogBatch of params
    tracker = MlflowTracker(uri=uri, experiment_name="unit", run_name="r1")
    tracker.start(params=params, tags={"git_commit": "abc"})
    tracker.log_metrics({"train/g_loss": 1.5, "val/loss": float("nan")}, step=3)
    image = tmp_path / "grid.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    tracker.log_artifact(image, "images")
    tracker.close("KILLED")
    run_id = tracker.run_id

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.info.run_name == "r1"
    assert run.data.params["encoder.name"] == "tiny" and run.data.params["k149"] == "149"
    assert run.data.tags["git_commit"] == "abc"
    assert run.data.metrics == {"train/g_loss": 1.5}  # NaN is not logged
    assert [a.path for a in client.list_artifacts(run_id, "images")] == ["images/grid.png"]

    resumed = MlflowTracker(uri=uri, experiment_name="unit")
    resumed.start(params={**params, "k0": 99}, tags={}, resume_run_id=run_id)
    resumed.log_metrics({"train/g_loss": 0.5}, step=4)
    resumed.close()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["k0"] == "0"  # params are immutable
    assert run.data.tags["resumed_config_changes"] == "k0=99"
    history = client.get_metric_history(run_id, "train/g_loss")
    assert [(m.step, m.value) for m in history] == [(3, 1.5), (4, 0.5)]


def test_resumed_run_logs_each_step_of_a_key_once(tmp_path: Path) -> None:
    """A run killed after step 6 whose checkpoint is from step 3 trains steps 4-6 again on
    resume: they are not logged a second time, a key first seen at a later step is logged."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def values(step: int) -> dict[str, float]:  # what an exact resume computes again
        logged = {"train/g_loss": 1.0 / step}
        if step % 2 == 0:
            logged["val/loss"] = 2.0 / step
        return logged

    tracker = MlflowTracker(uri=uri, experiment_name="unit")
    tracker.start(params={}, tags={})
    for step in range(1, 7):
        tracker.log_metrics(values(step), step=step)
    tracker.close("KILLED")

    resumed = MlflowTracker(uri=uri, experiment_name="unit")
    resumed.start(params={}, tags={}, resume_run_id=tracker.run_id)
    assert resumed.run_id == tracker.run_id
    for step in range(4, 10):
        resumed.log_metrics(values(step), step=step)
    resumed.log_metrics({"data/skipped_at_startup": 0.0}, step=9)
    resumed.close()

    client = MlflowClient(tracking_uri=uri)
    for key, steps in (("train/g_loss", range(1, 10)), ("val/loss", range(2, 10, 2))):
        history = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, key))
        assert history == [(step, values(step)[key]) for step in steps], key
    assert [m.step for m in client.get_metric_history(tracker.run_id, "data/skipped_at_startup")] == [9]


def test_nested_run_under_parent(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = MlflowTracker(uri=uri, experiment_name="sweep")
    parent.start(params={}, tags={})
    child = MlflowTracker(uri=uri, experiment_name="sweep")
    child.start(params={"lr": 1}, tags={}, parent_run_id=parent.run_id)
    child.close()
    parent.close()
    run = MlflowClient(tracking_uri=uri).get_run(child.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert math.isclose(float(run.data.params["lr"]), 1)


def test_default_uri_is_sqlite_in_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MlflowTracker().uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Inside tmp_path: the tracker opens (and creates) the store it is given.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    assert MlflowTracker().uri == elsewhere


def test_tensorboard_sink_writes_scalars_and_images(tmp_path: Path) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = MlflowTracker(
        uri=f"sqlite:///{tmp_path / 'mlflow.db'}", tensorboard=True, tensorboard_dir=str(tmp_path / "tb")
    )
    tracker.start(params={}, tags={})
    tracker.log_metrics({"train/g_loss": 0.25}, step=7)
    Image.new("RGB", (8, 4), (255, 0, 0)).save(tmp_path / "grid.png")
    tracker.log_image(tmp_path / "grid.png", "val/comparison", step=3)
    tracker.log_image(tmp_path / "grid.png", "val/comparison", step=5)
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    (scalar,) = events.Scalars("train/g_loss")
    assert (scalar.step, scalar.value) == (7, 0.25)
    assert events.Tags()["images"] == ["val/comparison"]  # one tag, one image per step
    assert [image.step for image in events.Images("val/comparison")] == [3, 5]


def test_sqlite_store_keeps_artifacts_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    tracker = MlflowTracker(uri=uri, experiment_name="artifacts")
    tracker.start(params={}, tags={})
    (tmp_path / "a.txt").write_text("x")
    tracker.log_artifact(tmp_path / "a.txt")
    tracker.close()
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name("artifacts")
    assert experiment.artifact_location == (tmp_path / "store" / "mlartifacts").as_uri()
    assert list((tmp_path / "store" / "mlartifacts").rglob("a.txt")) and not list(elsewhere.iterdir())
