"""Progress bars: samples/s and the whole run's ETA on the training bar, a validation bar."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from omegaconf import DictConfig

from neuropbr.train import train
from neuropbr.training.progress import RunProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(clock: FakeClock, **settings: Any) -> RunProgress:
    progress = RunProgress(batches_per_epoch=10, max_epochs=3, clock=clock, **settings)
    progress.start_epoch()
    for _ in range(5):  # five batches of 2 samples, one second each
        clock.now += 1.0
        progress.batch_done(2)
    return progress


def test_eta_covers_every_remaining_epoch_and_validation() -> None:
    clock = FakeClock()
    progress = _progress(clock)
    assert progress.samples_per_sec == pytest.approx(2.0)
    assert progress.eta(epoch=0, batch_in_epoch=5, step=5) == pytest.approx(5 + 2 * 10)
    progress.validation_done(4.0)  # then each of the 3 epoch ends validates too
    assert progress.eta(epoch=0, batch_in_epoch=5, step=5) == pytest.approx(25 + 3 * 4)
    assert progress.postfix(epoch=0, batch_in_epoch=5, step=5) == {"samples/s": "2.0", "ETA": "00:37"}
    clock.now += 100.0  # a validation and a checkpoint between epochs are not a batch's time
    progress.start_epoch()
    clock.now += 1.0
    progress.batch_done(2)
    assert progress.eta(epoch=1, batch_in_epoch=1, step=11) == pytest.approx(9 + 10 + 2 * 4)


def test_eta_follows_validation_frequency_accumulation_and_the_step_budget() -> None:
    every_other = _progress(FakeClock(), val_every=2)
    every_other.validation_done(4.0)
    assert every_other.eta(epoch=0, batch_in_epoch=5, step=5) == pytest.approx(25 + 2 * 4)  # epochs 2, 3
    # max_steps=4 with 2 batches per step: 8 batches left of the 25, one validation where it stops.
    budget = _progress(FakeClock(), max_steps=4 + 2, accumulate=2)
    budget.validation_done(4.0)
    assert budget.eta(epoch=0, batch_in_epoch=5, step=2) == pytest.approx(8 + 4 * 2)


def _run_output(compose_cfg: Callable[..., DictConfig], capsys: pytest.CaptureFixture, bar: str) -> str:
    cfg = compose_cfg("experiment=smoke", "tracking=none", "trainer.max_epochs=2", "data.num_samples=12",
                      "data.resolution=32", f"trainer.progress_bar={bar}")  # fmt: skip
    capsys.readouterr()
    train(cfg)
    return capsys.readouterr().err


def test_a_tiny_run_shows_rate_eta_and_a_validation_bar(
    compose_cfg: Callable[..., DictConfig], capsys: pytest.CaptureFixture
) -> None:
    text = _run_output(compose_cfg, capsys, "true")
    # The second epoch's bar, finished: 6 of 6 batches, losses, rate and the run's ETA.
    assert re.search(
        r"Epoch 2/2: 100%.*6/6.*G_loss=[\d.]+, D_loss=[\d.]+, samples/s=[\d.]+, ETA=00:0\d", text
    )
    # Each validation's own bar over its batch (cleared when done: leave=False).
    assert re.search(r"Validation 1: .*\d/1 ", text) and re.search(r"Validation 2: .*\d/1 ", text)


def test_progress_bar_false_draws_nothing(
    compose_cfg: Callable[..., DictConfig], capsys: pytest.CaptureFixture
) -> None:
    text = _run_output(compose_cfg, capsys, "false")
    assert "samples/s" not in text and "Validation" not in text and "Epoch 1/2" not in text
