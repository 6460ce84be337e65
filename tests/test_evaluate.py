"""``neuropbr.evaluate``: the training run's split reproduced, other data, JSON, the MLflow link."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from neuropbr.evaluate import default_report_path, evaluate, explicit_keys
from neuropbr.metrics import BASELINE_KEYS, METRIC_KEYS
from neuropbr.training.checkpoint import load_checkpoint, save_checkpoint

#: Every metric the report holds, without the ``<split>/`` prefix.
REPORT_KEYS = {*METRIC_KEYS, *BASELINE_KEYS, "loss"}


@pytest.fixture(scope="module")
def checkpoint(train_tiny: Callable[..., Path]) -> Path:
    """A tiny model trained for one epoch on 8 synthetic samples (7 train / 1 val material)."""
    return train_tiny()


@pytest.fixture
def run_evaluate(compose_cfg: Callable[..., DictConfig], checkpoint: Path) -> Callable[..., dict]:
    """``evaluate`` as the CLI runs it: the same overrides compose the config and say which keys
    the user set."""

    def run(*overrides: str, ckpt: Path | None = None) -> dict:
        args = [f"checkpoint={ckpt or checkpoint}", "device=cpu", *overrides]
        return evaluate(compose_cfg(*args, config_name="evaluate"), args)

    return run


def _write_folder_dataset(root: Path, num_materials: int = 4, size: int = 48) -> None:
    """One sample per material in the folder layout: random views and maps, flat-ish normals."""
    rng = np.random.default_rng(0)
    metadata = {}
    for m in range(num_materials):
        material, sample = f"mat_{m}", f"sample_{m:04d}"
        metadata[sample] = material
        maps = root / "output" / material
        maps.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(maps / "albedo.png")
        for name in ("roughness", "metallic"):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(maps / f"{name}.png")
        normal = np.stack(
            [rng.normal(0, 0.1, (size, size)), rng.normal(0, 0.1, (size, size)), np.ones((size, size))], -1
        )
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        Image.fromarray(np.round((normal + 1) * 127.5).astype(np.uint8)).save(maps / "normal.png")
        views = root / "input" / "clean" / sample
        views.mkdir(parents=True)
        for v in range(3):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(views / f"{v}.png")
    (root / "input" / "render_metadata.json").write_text(json.dumps(metadata))


def test_val_split_reproduces_the_training_runs_validation(
    run_evaluate: Callable[..., dict], checkpoint: Path
) -> None:
    # The smoke preset trains in fp32; precision=auto may pick bf16 on a CPU with AMX.
    report = run_evaluate("tracking=none", "precision=fp32")
    state = load_checkpoint(checkpoint)
    # One epoch: the best val/loss is that epoch's, computed by the trainer on the same split.
    assert report["metrics"]["val/loss"] == pytest.approx(state["best_metric"], rel=1e-5)
    assert set(report["metrics"]) == {f"val/{key}" for key in REPORT_KEYS}
    assert report["num_samples"] == 1 and report["split"] == "val"
    assert report["data"]["resolution"] == 64 and report["data"]["augment"]["enabled"] is False
    (written,) = checkpoint.parent.glob(f"{checkpoint.stem}.val.synthetic-clean-*.metrics.json")
    assert report["json"] == str(written.resolve())
    assert json.loads(written.read_text())["metrics"] == report["metrics"]


def test_split_all_and_train_count_every_sample(run_evaluate: Callable[..., dict], tmp_path: Path) -> None:
    everything = run_evaluate(
        "tracking=none", "split=all", "compute_loss=false", f"out={tmp_path / 'all.json'}"
    )
    assert everything["num_samples"] == 8 and "all/loss" not in everything["metrics"]
    assert set(everything["metrics"]) == {f"all/{key}" for key in REPORT_KEYS - {"loss"}}
    assert (tmp_path / "all.json").is_file()
    train_only = run_evaluate(
        "tracking=none", "split=train", "compute_loss=false", f"out={tmp_path / 'train.json'}"
    )
    assert train_only["num_samples"] == 7


def test_folder_data_keeps_the_checkpoints_model_keys_unless_overridden(
    run_evaluate: Callable[..., dict], tmp_path: Path
) -> None:
    _write_folder_dataset(tmp_path / "data")
    args = [
        "tracking=none",
        "data=folder",
        f"data.root={tmp_path / 'data'}",
        "split=all",
        f"out={tmp_path / 'm.json'}",
    ]
    report = run_evaluate(*args)
    # data=folder's preset says 512 px; the checkpoint's 64 px and 3 views win.
    assert report["data"]["_target_"].endswith("FolderDataModule")
    assert (report["data"]["resolution"], report["data"]["num_views"]) == (64, 3)
    assert report["num_samples"] == 4
    assert all(np.isfinite(v) for v in report["metrics"].values())
    smaller = run_evaluate(*args, "data.resolution=32")
    assert smaller["data"]["resolution"] == 32 and smaller["num_samples"] == 4


def test_empty_split_is_an_error(run_evaluate: Callable[..., dict]) -> None:
    with pytest.raises(ValueError, match=r"split=val: no samples \(data.val_ratio=0.0\)"):
        run_evaluate("tracking=none", "data=synthetic", "data.val_ratio=0")


def test_explicit_keys_are_the_command_lines_keys() -> None:
    assert explicit_keys(["data=folder", "data.root=/x", "+data.cache=true", "split=all"]) == {
        "data",
        "data.root",
        "data.cache",
        "split",
    }


def test_mlflow_run_is_nested_under_the_training_run(
    run_evaluate: Callable[..., dict], checkpoint: Path, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("materials")
    training_run = client.create_run(experiment_id, run_name="train").info.run_id
    linked = tmp_path / "linked.pth"
    save_checkpoint(linked, {**load_checkpoint(checkpoint), "mlflow_run_id": training_run})

    report = run_evaluate(f"tracking.uri={uri}", "split=all", ckpt=linked)
    run = client.get_run(report["mlflow_run_id"])
    assert run.info.experiment_id == experiment_id  # the training run's experiment, not "neuropbr"
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == training_run
    assert run.data.tags["training_run_id"] == training_run and run.data.tags["task"] == "evaluate"
    assert run.data.params["checkpoint"] == str(linked.resolve()) and run.data.params["split"] == "all"
    assert run.data.metrics["all/overall_psnr"] == pytest.approx(report["metrics"]["all/overall_psnr"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")]
    assert artifacts == [f"evaluation/{Path(report['json']).name}"]
    assert Path(report["json"]).name.startswith("linked.all.synthetic-clean-")


def test_cli_prints_the_table_and_writes_only_the_json(checkpoint: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuropbr.evaluate",
            f"checkpoint={checkpoint}",
            "tracking=none",
            "split=all",
            "out=metrics.json",
            "device=cpu",
        ],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in (
        "albedo",
        "roughness",
        "metallic",
        "normal",
        "overall PSNR (dB)",
        "normal angle mean (deg)",
        "loss",
    ):
        assert row in proc.stdout
    assert sorted(p.name for p in cwd.iterdir()) == ["metrics.json"]  # no outputs/, .hydra/, log, mlflow.db
    assert json.loads((cwd / "metrics.json").read_text())["num_samples"] == 8


def test_default_json_names_the_dataset_so_a_second_dataset_does_not_overwrite_the_first(
    run_evaluate: Callable[..., dict], checkpoint: Path, tmp_path: Path
) -> None:
    for name in ("studio", "outdoor"):
        _write_folder_dataset(tmp_path / name / "pbr", num_materials=2 if name == "studio" else 3)
    reports = {
        name: run_evaluate(
            "tracking=none", "data=folder", f"data.root={tmp_path / name / 'pbr'}", "split=all"
        )
        for name in ("studio", "outdoor")
    }
    # The same folder name under two roots: two files, each holding its own dataset's scores.
    paths = {name: Path(report["json"]) for name, report in reports.items()}
    assert paths["studio"] != paths["outdoor"]
    for name, path in paths.items():
        assert path.parent == checkpoint.parent and path.name.startswith(f"{checkpoint.stem}.all.pbr-clean-")
        written = json.loads(path.read_text())
        assert written["data"]["root"] == str(tmp_path / name / "pbr")
        assert written["num_samples"] == reports[name]["num_samples"] == (2 if name == "studio" else 3)
    # Scoring one dataset again (other loading settings) replaces its own file.
    again = run_evaluate(
        "tracking=none", "data=folder", f"data.root={tmp_path / 'studio' / 'pbr'}", "split=all",
        "data.batch_size=1", "data.num_workers=0",
    )  # fmt: skip
    assert Path(again["json"]) == paths["studio"]


def test_default_report_path_separates_renders_and_resolutions(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best_model.pth"
    data = {"_target_": "neuropbr.data.folder.FolderDataModule", "root": "pbr", "renders": "clean",
            "resolution": 64, "batch_size": 4}  # fmt: skip
    clean = default_report_path(checkpoint, "all", data)
    dirty = default_report_path(checkpoint, "all", {**data, "renders": "dirty"})
    smaller = default_report_path(checkpoint, "all", {**data, "resolution": 32})
    assert clean.name.startswith("best_model.all.pbr-clean-")
    assert dirty.name.startswith("best_model.all.pbr-dirty-")
    assert len({clean, dirty, smaller}) == 3 and clean.parent == tmp_path
    assert default_report_path(checkpoint, "all", {**data, "batch_size": 1}) == clean
    # A relative root names the folder it resolves to from here.
    assert default_report_path(checkpoint, "all", {**data, "root": str(Path.cwd() / "pbr")}) == clean
    synthetic = default_report_path(
        checkpoint, "val", {"_target_": "neuropbr.data.synthetic.SyntheticDataModule"}
    )
    assert synthetic.name.startswith("best_model.val.synthetic-clean-")
