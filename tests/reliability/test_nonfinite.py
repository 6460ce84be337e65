"""Non-finite data and losses: the data check reports them, training never applies them.

A float TIFF of NaN named ``roughness.png`` (and one of values outside [0, 1]) is reported by the
data check; a batch whose loss is NaN is skipped (weights, optimizer state and BatchNorm running
statistics as before it) and, with ``trainer.on_nonfinite=raise`` (default), training stops after
``trainer.nonfinite_patience`` such steps naming the step, the samples and the terms, without
touching a good ``latest.pth``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset

from neuropbr.build import build_datamodule
from neuropbr.data.check import check_dataset, format_report
from neuropbr.data.io import ImageReadError, read_image
from neuropbr.synth import synthesize
from neuropbr.train import build_trainer
from neuropbr.training.checkpoint import load_checkpoint
from neuropbr.training.distributed import DistInfo
from neuropbr.training.nonfinite import NonFiniteLossError
from neuropbr.training.tracking import MlflowTracker, NullTracker
from neuropbr.training.trainer import Trainer

from .helpers import env, train_cmd


def _float_tiff(path: Path, value: float, size: int = 32) -> None:
    """A 32-bit float TIFF under ``path`` (the name may say .png: Pillow reads by content)."""
    Image.fromarray(np.full((size, size), value, dtype=np.float32), mode="F").save(path, format="TIFF")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(out=root, num_materials=3, resolution=32, num_views=3, num_workers=1, progress=False)
    return root


def test_check_reports_nonfinite_and_out_of_range_pixels(dataset: Path) -> None:
    materials = sorted(p for p in (dataset / "output").iterdir() if p.is_dir())
    nan_map, bright_map = materials[0] / "roughness.png", materials[1] / "metallic.png"
    _float_tiff(nan_map, math.nan)
    _float_tiff(bright_map, 2.5)
    scan = check_dataset(dataset, num_views=3, renders="clean", workers=1)
    problems = {problem.path: problem.problem for problem in scan.problems}
    assert "non-finite pixels: 1024 of 1024 are NaN or inf" in problems[nan_map]
    assert "out-of-range pixels: 1024 of 1024 outside [0.0, 1.0]" in problems[bright_map]
    assert "max 2.5" in problems[bright_map]
    assert "FAILED: 2 problem(s)" in format_report(scan)
    # Loading refuses the NaN file (it would reach the loss); the bright one is clipped.
    with pytest.raises(ImageReadError, match="non-finite pixels"):
        read_image(nan_map, 32)
    assert float(read_image(bright_map, 32).max()) == 1.0


class _Poisoned(Dataset):
    """The data module's own train set, with NaN views for the named samples."""

    def __init__(self, inner: Any, names: Iterable[str]) -> None:
        self.inner, self.names = inner, set(names)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        sample = self.inner[key]
        if sample["sample"] in self.names or "*" in self.names:
            sample["views"] = torch.full_like(sample["views"], math.nan)
        return sample

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _trainer(cfg: DictConfig, poisoned: Iterable[str] = (), tracker: Any = None) -> Trainer:
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    datamodule.train_set = _Poisoned(datamodule.train_set, poisoned)
    return build_trainer(cfg, datamodule, torch.device("cpu"), DistInfo(), tracker or NullTracker())


def _all_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point())


def test_raise_stops_naming_step_samples_and_terms_and_keeps_latest(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    base = ("experiment=smoke", "tracking=none", "data.batch_size=1", "trainer.save_every_n_epochs=0")
    first = _trainer(compose_cfg(*base, "trainer.max_epochs=1"))
    first.fit()
    latest = first.checkpointer.latest_path
    good = hashlib.sha256(latest.read_bytes()).hexdigest()

    resumed = _trainer(compose_cfg(*base, "trainer.max_epochs=3", "trainer.nonfinite_patience=2"), ["*"])
    resumed.load_state_dict(load_checkpoint(latest), source=latest)
    start = resumed.step
    with pytest.raises(NonFiniteLossError) as info:
        resumed.fit()
    message = str(info.value)
    assert f"last at step {start + 2} (epoch 2), samples ['sample_" in message
    assert "'g_loss': nan" in message and "2 consecutive" in message
    assert f"{latest} is still the last good state" in message
    assert hashlib.sha256(latest.read_bytes()).hexdigest() == good
    # The two skipped steps changed nothing: weights and running statistics are the checkpoint's.
    saved = load_checkpoint(latest)["generator"]
    assert all(torch.equal(value, saved[key]) for key, value in resumed.generator.state_dict().items())


def test_skip_step_goes_on_and_reports_the_count(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        "experiment=smoke", "data.batch_size=1", "trainer.max_epochs=2", "trainer.on_nonfinite=skip_step"
    )
    tracker = MlflowTracker(uri=uri, experiment_name="nonfinite")
    trainer = _trainer(cfg, ["sample_0001"], tracker)
    tracker.start(params={}, tags={})
    with caplog.at_level(logging.WARNING, logger="neuropbr.training.nonfinite"):
        result = trainer.fit()
    tracker.close()
    assert result.epochs_done == 2
    warnings = [r.getMessage() for r in caplog.records if "non-finite loss at step" in r.getMessage()]
    assert len(warnings) == 2 and all("samples ['sample_0001']" in w for w in warnings)
    assert _all_finite(trainer.generator) and _all_finite(trainer.discriminator)
    history = tracker.client.get_metric_history(tracker.run_id, "train/nonfinite_steps")
    assert [m.value for m in history] == [2.0]


@pytest.mark.slow
def test_diverging_training_process_exits_non_zero_without_a_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        train_cmd(run_dir, "optimizer.g_lr=1e38", "optimizer.d_lr=1e38"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode != 0, tail
    assert "NonFiniteLossError" in tail and "non-finite terms: {" in tail, tail
    assert "samples ['sample_" in tail and "no checkpoint was written" in tail, tail
    assert not (run_dir / "checkpoints" / "latest.pth").exists()
