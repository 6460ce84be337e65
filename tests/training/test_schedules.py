"""Learning-rate schedules: warmup from 10%, cosine/step/plateau/constant, exact state round trip."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from neuropbr.training import schedules


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler: schedules.EpochScheduler, epochs: int, metrics: list[float] | None = None) -> list[float]:
    out = []
    for epoch in range(epochs):
        out.append(scheduler.get_last_lr()[0])
        scheduler.step(None if metrics is None else metrics[epoch])
    return out


def test_warmup_starts_at_ten_percent_and_reaches_base() -> None:
    lrs = _lrs(schedules.constant(_optimizer(2.0), max_epochs=10, warmup_epochs=4), 6)
    assert lrs == pytest.approx([0.2, 0.65, 1.1, 1.55, 2.0, 2.0])


def test_cosine_decays_to_min_lr_after_warmup() -> None:
    lrs = _lrs(schedules.cosine(_optimizer(1.0), max_epochs=12, warmup_epochs=2, min_lr=0.0), 13)
    assert lrs[:3] == pytest.approx([0.1, 0.55, 1.0])
    assert lrs[2 + 5] == pytest.approx(0.5)  # half way through the 10 cosine epochs
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[2:]))


def test_cosine_floor_is_min_lr() -> None:
    lrs = _lrs(schedules.cosine(_optimizer(1e-3), max_epochs=5, warmup_epochs=0, min_lr=1e-6), 8)
    assert lrs[5] == pytest.approx(1e-6) and lrs[7] == pytest.approx(1e-6)


def test_step_multiplies_by_gamma() -> None:
    lrs = _lrs(schedules.step(_optimizer(1.0), max_epochs=10, step_size=3, gamma=0.1), 7)
    assert lrs == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01])


def test_plateau_reduces_after_patience_in_the_metric_direction() -> None:
    sched = schedules.plateau(_optimizer(1.0), max_epochs=10, patience=1, factor=0.5, mode="min")
    lrs = _lrs(sched, 6, metrics=[1.0, 0.9, 0.95, 0.95, 0.95, 0.95])
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    sched_max = schedules.plateau(_optimizer(1.0), max_epochs=10, patience=0, factor=0.5, mode="max")
    assert _lrs(sched_max, 4, metrics=[1.0, 2.0, 1.5, 3.0]) == pytest.approx([1.0, 1.0, 1.0, 0.5])


def test_state_round_trip_continues_identically() -> None:
    full = _lrs(schedules.cosine(_optimizer(), max_epochs=8, warmup_epochs=2), 8)
    first = schedules.cosine(_optimizer(), max_epochs=8, warmup_epochs=2)
    _lrs(first, 3)
    resumed_opt = _optimizer()
    resumed = schedules.cosine(resumed_opt, max_epochs=8, warmup_epochs=2)
    resumed_opt.param_groups[0]["lr"] = 123.0  # what an optimizer state_dict may restore
    resumed.load_state_dict(first.state_dict())
    assert _lrs(resumed, 5) == pytest.approx(full[3:])


def test_resume_with_longer_run_follows_the_new_schedule() -> None:
    short = schedules.cosine(_optimizer(), max_epochs=4, warmup_epochs=0, min_lr=0.0)
    _lrs(short, 2)
    longer = schedules.cosine(_optimizer(), max_epochs=8, warmup_epochs=0, min_lr=0.0)
    longer.load_state_dict(short.state_dict())
    assert longer.get_last_lr()[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 8)))


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (schedules.constant, {"warmup_epochs": -1}, "scheduler.warmup_epochs"),
        (schedules.step, {"step_size": 0}, "scheduler.step_size"),
        (schedules.plateau, {"factor": 1.5}, "scheduler.factor"),
        (schedules.plateau, {"mode": "up"}, "optimized_metric_mode"),
    ],
)
def test_bad_values_name_the_key(factory, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        factory(_optimizer(), max_epochs=5, **kwargs)


def _step_lrs(scheduler: schedules.EpochScheduler, steps: int, epoch_every: int = 0) -> list[float]:
    """The lr of each of ``steps`` optimizer steps (an epoch ends every ``epoch_every`` steps)."""
    out = []
    for i in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.batch_step()
        if epoch_every and (i + 1) % epoch_every == 0:
            scheduler.step()
    return out


def test_step_warmup_rises_every_optimizer_step_across_epoch_ends() -> None:
    sched = schedules.constant(_optimizer(2.0), max_epochs=10, warmup_steps=4)
    # Epochs of 3 steps: the ramp goes on through the epoch end, and ends after 4 steps.
    assert _step_lrs(sched, 7, epoch_every=3) == pytest.approx([0.2, 0.65, 1.1, 1.55, 2.0, 2.0, 2.0])
    assert (sched.epoch, sched.steps) == (2, 7)


def test_step_warmup_multiplies_the_epoch_schedule_from_epoch_zero() -> None:
    """The cosine spans every epoch (no epochs are reserved for the warmup)."""
    sched = schedules.cosine(_optimizer(1.0), max_epochs=4, warmup_epochs=0, warmup_steps=2, min_lr=0.0)
    lrs = _step_lrs(sched, 8, epoch_every=2)
    cos = [0.5 * (1 + math.cos(math.pi * epoch / 4)) for epoch in range(4)]
    assert lrs == pytest.approx([0.1, 0.55 * cos[0], cos[1], cos[1], cos[2], cos[2], cos[3], cos[3]])


def test_step_warmup_state_round_trip_mid_warmup() -> None:
    def cosine(optimizer: torch.optim.Optimizer) -> schedules.EpochScheduler:
        return schedules.cosine(optimizer, max_epochs=6, warmup_epochs=0, warmup_steps=5, min_lr=0.0)

    full = _step_lrs(cosine(_optimizer()), 12, 3)
    first = cosine(_optimizer())
    _step_lrs(first, 4, 3)  # stopped inside the warmup, one step into the second epoch
    resumed_opt = _optimizer()
    resumed = cosine(resumed_opt)
    resumed_opt.param_groups[0]["lr"] = 123.0
    resumed.load_state_dict(first.state_dict())
    lrs = []
    for i in range(4, 12):  # the epoch ends where the uninterrupted run's do
        lrs.append(resumed.get_last_lr()[0])
        resumed.batch_step()
        if (i + 1) % 3 == 0:
            resumed.step()
    assert lrs == pytest.approx(full[4:])
    second_epoch = 0.5 * (1 + math.cos(math.pi / 6))
    assert full[:5] == pytest.approx([0.1, 0.28, 0.46, 0.64 * second_epoch, 0.82 * second_epoch])


def test_plateau_ignores_metrics_during_a_step_warmup() -> None:
    sched = schedules.plateau(_optimizer(1.0), max_epochs=10, patience=0, factor=0.5, warmup_steps=3)
    sched.batch_step()
    sched.step(1.0)  # an epoch end inside the warmup: not a plateau reading
    sched.batch_step()
    sched.step(2.0)
    assert sched.best is None and sched.reductions == 0
    sched.batch_step()
    sched.step(1.0)
    sched.batch_step()
    sched.step(2.0)  # worse than 1.0 with patience 0
    assert sched.reductions == 1 and sched.get_last_lr()[0] == pytest.approx(0.5)


@pytest.mark.parametrize("factory", [schedules.cosine, schedules.step, schedules.plateau, schedules.constant])
def test_warmup_in_epochs_and_steps_together_is_an_error_naming_both(factory) -> None:
    with pytest.raises(ValueError, match=r"scheduler\.warmup_epochs=2 and scheduler\.warmup_steps=10"):
        factory(_optimizer(), max_epochs=5, warmup_epochs=2, warmup_steps=10)
    with pytest.raises(ValueError, match=r"scheduler\.warmup_steps=-1: expected >= 0"):
        factory(_optimizer(), max_epochs=5, warmup_epochs=0, warmup_steps=-1)
