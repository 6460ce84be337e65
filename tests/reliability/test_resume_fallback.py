"""``trainer.resume=auto`` never resumes an older run behind an unreadable newer one unasked.

The newest ``latest.pth`` under ``outputs/`` is truncated (a copy cut short, a full disk) and an
older run of the same config is intact: by default the run stops naming both files and the ways
on; ``trainer.resume_fallback=older`` resumes the older one with a warning naming both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, open_dict
from torch import nn

from neuropbr.train import train
from neuropbr.training.checkpoint import (
    CheckpointError,
    find_resume_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

CONFIG = {"seed": 1, "encoder": {"name": "tiny"}, "trainer": {"max_epochs": 2}}


def _write_runs(runs: Path) -> tuple[Path, Path]:
    """An intact older run and a truncated newer one of the same config; returns (older, newest)."""
    older, newest = (runs / name / "checkpoints" / "latest.pth" for name in ("older", "newest"))
    for age, path in enumerate((older, newest)):
        state = {"generator": nn.Linear(1, 1).state_dict(), "epoch": 1, "step": 4, "config": CONFIG}
        save_checkpoint(path, state)
        os.utime(path, (1_000_000 + age * 100, 1_000_000 + age * 100))  # explicit order, no mtime race
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    os.utime(newest, (1_000_100, 1_000_100))
    return older, newest


def test_corrupt_newest_with_a_usable_older_fails_naming_both(tmp_path: Path) -> None:
    older, newest = _write_runs(tmp_path / "outputs")
    with pytest.raises(CheckpointError) as info:
        find_resume_checkpoint("auto", tmp_path / "new" / "checkpoints", tmp_path / "outputs", CONFIG)
    message = str(info.value)
    assert f"the newest checkpoint {newest} is unreadable" in message
    assert f"the older {older} is usable" in message
    assert "trainer.resume_fallback=older" in message and "trainer.resume=null" in message


def test_fallback_older_resumes_the_older_run_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    older, newest = _write_runs(tmp_path / "outputs")
    config = {**CONFIG, "trainer": {**CONFIG["trainer"], "resume_fallback": "older"}}
    with caplog.at_level(logging.WARNING, logger="neuropbr.training.checkpoint"):
        found = find_resume_checkpoint("auto", tmp_path / "new" / "checkpoints", tmp_path / "outputs", config)
    assert found == older
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(newest) in record.getMessage() and str(older) in record.getMessage()
    assert "trainer.resume_fallback=older" in record.getMessage()


def test_an_unreadable_checkpoint_of_this_run_is_an_error(tmp_path: Path) -> None:
    own = tmp_path / "run" / "checkpoints"
    own.mkdir(parents=True)
    (own / "latest.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"this run's checkpoint .*latest\.pth is unreadable"):
        find_resume_checkpoint("auto", own, tmp_path / "outputs", None)


def test_resume_fallback_is_checked_when_composing(compose_cfg: Callable[..., DictConfig]) -> None:
    assert compose_cfg().trainer.resume_fallback.name == "error"
    with pytest.raises(ConfigCompositionException, match=r"trainer\.resume_fallback=newest") as info:
        compose_cfg("trainer.resume_fallback=newest")
    assert "expected one of [error, older]" in str(info.value.__cause__)


def test_train_with_resume_auto_refuses_then_falls_back_when_asked(
    compose_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through ``train``: the key reaches the resolution, and the older run really is resumed."""
    monkeypatch.chdir(tmp_path)  # resume=auto searches ./outputs
    base = (
        "experiment=smoke",
        "tracking=none",
        "data.resolution=32",
        "data.num_samples=4",
        "trainer.max_epochs=1",
    )

    def run(name: str, *extra: str) -> None:
        cfg = compose_cfg(*base, *extra)
        with open_dict(cfg):
            cfg.paths.checkpoint_dir = str(tmp_path / "outputs" / name / "checkpoints")
        train(cfg)

    run("older")
    older = tmp_path / "outputs" / "older" / "checkpoints" / "latest.pth"
    newest = tmp_path / "outputs" / "newest" / "checkpoints" / "latest.pth"
    newest.parent.mkdir(parents=True)
    newest.write_bytes(older.read_bytes()[:1000])  # a newer run of the same config, cut short
    os.utime(older, (1_000_000, 1_000_000))

    with pytest.raises(CheckpointError, match=r"trainer\.resume_fallback=older") as info:
        run("again", "trainer.resume=auto")
    assert str(newest) in str(info.value) and str(older) in str(info.value)
    assert not (tmp_path / "outputs" / "again" / "checkpoints" / "latest.pth").exists()

    with caplog.at_level(logging.INFO):
        run("again", "trainer.resume=auto", "trainer.resume_fallback=older", "trainer.max_epochs=2")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(newest) in m and str(older) in m for m in warnings), warnings
    assert any(m.startswith(f"resumed from {older}: epoch 1") for m in caplog.messages), caplog.messages
    assert load_checkpoint(tmp_path / "outputs" / "again" / "checkpoints" / "latest.pth")["epoch"] == 2
