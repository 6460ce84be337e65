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
