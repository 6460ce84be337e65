"""Per-step training lines reach the log file (``train.log``), not only the tracker."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from neuropbr.train import train

_STEP_LINE = re.compile(r"step (\d+) \(epoch (\d+)\): (.*), g_lr (\S+), (\S+) samples/s")


def _step_lines(text: str) -> list[tuple[int, int, dict[str, float], float, float]]:
    lines = []
    for match in _STEP_LINE.finditer(text):
        losses = dict(pair.rsplit(" ", 1) for pair in match.group(3).split(", "))
        lines.append(
            (
                int(match.group(1)),
                int(match.group(2)),
                {k: float(v) for k, v in losses.items()},
                float(match.group(4)),
                float(match.group(5)),
            )
        )
    return lines


def test_every_logging_window_is_a_log_line_with_the_trackers_values(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 8 samples -> 7 training samples in batches of 2: steps 1-4; windows end at 3 and at the
    # epoch's end (4).
    cfg = compose_cfg(
        "experiment=smoke", "tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment_name=log",
        "trainer.max_epochs=1", "trainer.log_every_n_steps=3",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="neuropbr.training.trainer"):
        train(cfg)
    lines = _step_lines(caplog.text)
    assert [(step, epoch) for step, epoch, *_ in lines] == [(3, 1), (4, 1)]
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("log").experiment_id])
    for step, _, losses, g_lr, samples_per_sec in lines:
        assert {"g_loss", "d_loss", "loss_l1_total", "loss_ssim", "loss_normal", "loss_gan_g"} <= set(losses)
        assert samples_per_sec > 0
        printed = {**losses, "g_lr": g_lr, "samples_per_sec": samples_per_sec}
        for key, value in printed.items():
            history = client.get_metric_history(run.info.run_id, f"train/{key}")
            (logged,) = [m.value for m in history if m.step == step]
            # As printed: losses to 4 decimals, the lr to 3 significant digits, samples/s to 1 decimal.
            tolerance = {"g_lr": {"rel": 5e-3}, "samples_per_sec": {"abs": 0.051}}.get(key, {"abs": 5.1e-5})
            assert value == pytest.approx(logged, **tolerance), key


@pytest.mark.slow
def test_train_log_holds_the_step_lines(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuropbr.train",
            "experiment=smoke",
            "tracking=none",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (run_dir / "train.log").read_text()
    assert [step for step, *_ in _step_lines(text)] == [2, 4]
