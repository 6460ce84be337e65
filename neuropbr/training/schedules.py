"""Per-epoch learning-rate schedules with a linear warmup (the guide's "Learning Rate Scheduling").

Each schedule is a pure function of the epoch index, the optimizer-step count and the CURRENT
config, so a run resumed with a different ``trainer.max_epochs`` follows the new schedule from
where it stopped, and a checkpoint only needs the two counters (plus the plateau state).

The warmup counts either epochs (``warmup_epochs``, the guide's form: the lr changes at epoch
starts and the schedule proper starts after the warmup) or optimizer steps (``warmup_steps``, the
common form: the lr rises at every step, the trainer calls :meth:`EpochScheduler.batch_step`, and
the epoch schedule counts from epoch 0 underneath it). Setting both is an error.

Kept instead of torch's ``LinearLR`` + ``SequentialLR``/``CosineAnnealingLR``/``StepLR``/
``ReduceLROnPlateau`` (same lrs within a run: 1e-16 for cosine, 0 for step): their state restores
``T_max`` and the chain, so a resumed run would not follow a changed ``trainer.max_epochs``, the cosine
climbs again past ``T_max``, and a plateau cannot sit behind a warm-up or a per-step warm-up overlap
an epoch schedule (experiments/library_equivalence/README.md has the numbers).

The presets in ``conf/scheduler/`` are partials: ``train.py`` calls them once per optimizer as
``scheduler(optimizer, max_epochs=..., mode=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch.optim import Optimizer


class EpochScheduler:
    """Sets every param group's lr to ``base_lr * factor(epoch)`` at the start of each epoch.

    Args:
        optimizer: its param groups' current ``lr`` are taken as the base learning rates.
        factor: ``epoch -> multiplier`` (after an epoch warmup).
        warmup_epochs: linear warmup from ``warmup_start_factor`` to 1 over this many epochs.
        warmup_start_factor: the guide's "starts at 10% of target".
        warmup_steps: linear warmup over this many optimizer steps instead (0 = off); exclusive
            with ``warmup_epochs``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        factor: Callable[[int], float],
        warmup_epochs: int = 0,
        warmup_start_factor: float = 0.1,
        warmup_steps: int = 0,
    ) -> None:
        if warmup_epochs < 0:
            raise ValueError(f"scheduler.warmup_epochs={warmup_epochs}: expected >= 0")
        if warmup_steps < 0:
            raise ValueError(f"scheduler.warmup_steps={warmup_steps}: expected >= 0")
        if warmup_epochs > 0 and warmup_steps > 0:
            raise ValueError(
                f"scheduler.warmup_epochs={warmup_epochs} and scheduler.warmup_steps={warmup_steps}: "
                "warm up in epochs or in steps, not both; set the other to 0 (e.g. "
                "scheduler.warmup_epochs=0 to warm up in steps)"
            )
        if not 0.0 < warmup_start_factor <= 1.0:
            raise ValueError(f"scheduler.warmup_start_factor={warmup_start_factor}: expected in (0, 1]")
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.factor = factor
        self.warmup_epochs = warmup_epochs
        self.warmup_steps = warmup_steps
        self.warmup_start_factor = warmup_start_factor
        self.epoch = 0
        #: Optimizer steps taken (counted by :meth:`batch_step`).
        self.steps = 0
        self._apply()

    def _ramp(self, done: int, length: int) -> float:
        if done >= length:
            return 1.0
        return self.warmup_start_factor + (1.0 - self.warmup_start_factor) * done / length

    def warmup_factor(self, epoch: int, steps: int = 0) -> float:
        """The warmup's multiplier after ``epoch`` epochs and ``steps`` optimizer steps."""
        if self.warmup_steps > 0:
            return self._ramp(steps, self.warmup_steps)
        return self._ramp(epoch, self.warmup_epochs)

    @property
    def in_warmup(self) -> bool:
        """Whether the lr is still below the schedule proper (plateau tracking waits for it)."""
        return self.epoch < self.warmup_epochs or self.steps < self.warmup_steps

    def lr_factor(self, epoch: int, steps: int = 0) -> float:
        """Total multiplier of the base lr at ``epoch`` after ``steps`` optimizer steps."""
        return self.warmup_factor(epoch, steps) * self.factor(max(epoch - self.warmup_epochs, 0))

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.lr_factor(self.epoch, self.steps)

    def step(self, metric: float | None = None) -> None:
        """Advance to the next epoch (``metric`` is used by the plateau schedule only)."""
        self.epoch += 1
        self._apply()

    def batch_step(self) -> None:
        """Count one optimizer step; during a step warmup the lr rises for the next step."""
        self.steps += 1
        if self.steps <= self.warmup_steps:  # afterwards the lr only changes at epoch ends
            self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "steps": self.steps, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        # Checkpoints from before step warmups have no count; the trainer passes its own step.
        self.steps = int(state.get("steps", 0))
        self.base_lrs = list(state["base_lrs"])
        self._apply()


class PlateauScheduler(EpochScheduler):
    """ReduceLROnPlateau after warmup: multiply the lr by ``factor`` when the metric has not
    improved for ``patience`` validations; never below ``min_lr``."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str,
        patience: int,
        factor: float,
        min_lr: float,
        warmup_epochs: int = 0,
        warmup_start_factor: float = 0.1,
        warmup_steps: int = 0,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"plateau mode={mode!r}; choose 'min' or 'max' (optimized_metric_mode)")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"scheduler.factor={factor}: expected in (0, 1)")
        if patience < 0:
            raise ValueError(f"scheduler.patience={patience}: expected >= 0")
        self.mode = mode
        self.patience = patience
        self.decay = factor
        self.min_lr = min_lr
        self.best: float | None = None
        self.bad_epochs = 0
        self.reductions = 0
        super().__init__(
            optimizer,
            lambda _epoch: self.decay**self.reductions,
            warmup_epochs,
            warmup_start_factor,
            warmup_steps,
        )

    def step(self, metric: float | None = None) -> None:
        if metric is not None and not self.in_warmup:
            improved = self.best is None or (metric < self.best if self.mode == "min" else metric > self.best)
            if improved:
                self.best, self.bad_epochs = metric, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs > self.patience:
                    self.reductions += 1
                    self.bad_epochs = 0
        super().step(metric)

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = max(base * self.lr_factor(self.epoch, self.steps), min(self.min_lr, base))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "reductions": self.reductions,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.reductions = state["best"], state["bad_epochs"], state["reductions"]
        super().load_state_dict(state)


def cosine(
    optimizer: Optimizer,
    *,
    max_epochs: int,
    warmup_epochs: int = 5,
    warmup_start_factor: float = 0.1,
    min_lr: float = 1e-6,
    mode: str = "min",
    warmup_steps: int = 0,
) -> EpochScheduler:
    """Cosine annealing from the base lr to ``min_lr`` over the epochs after an epoch warmup
    (over all epochs with a step warmup, which overlaps their start)."""
    base = optimizer.param_groups[0]["lr"]
    span = max(max_epochs - warmup_epochs, 1)
    floor = min(min_lr / base, 1.0) if base > 0 else 0.0

    def factor(epoch: int) -> float:
        progress = min(epoch / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return EpochScheduler(optimizer, factor, warmup_epochs, warmup_start_factor, warmup_steps)


def step(
    optimizer: Optimizer,
    *,
    max_epochs: int,
    step_size: int = 30,
    gamma: float = 0.1,
    warmup_epochs: int = 0,
    warmup_start_factor: float = 0.1,
    mode: str = "min",
    warmup_steps: int = 0,
) -> EpochScheduler:
    """Multiply the lr by ``gamma`` every ``step_size`` epochs (after an epoch warmup)."""
    if step_size < 1:
        raise ValueError(f"scheduler.step_size={step_size}: expected >= 1")
    return EpochScheduler(
        optimizer,
        lambda epoch: gamma ** (epoch // step_size),
        warmup_epochs,
        warmup_start_factor,
        warmup_steps,
    )


def plateau(
    optimizer: Optimizer,
    *,
    max_epochs: int,
    patience: int = 10,
    factor: float = 0.5,
    min_lr: float = 1e-6,
    warmup_epochs: int = 0,
    warmup_start_factor: float = 0.1,
    mode: str = "min",
    warmup_steps: int = 0,
) -> PlateauScheduler:
    """Reduce the lr when the optimized metric stops improving (direction from ``mode``)."""
    return PlateauScheduler(
        optimizer, mode, patience, factor, min_lr, warmup_epochs, warmup_start_factor, warmup_steps
    )


def constant(
    optimizer: Optimizer,
    *,
    max_epochs: int,
    warmup_epochs: int = 0,
    warmup_start_factor: float = 0.1,
    mode: str = "min",
    warmup_steps: int = 0,
) -> EpochScheduler:
    """``scheduler=none``: a constant lr (after the optional warmup)."""
    return EpochScheduler(optimizer, lambda _epoch: 1.0, warmup_epochs, warmup_start_factor, warmup_steps)
