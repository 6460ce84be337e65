"""What the training progress bar shows beside the losses: throughput and the whole run's ETA.

tqdm's own estimate covers the current epoch only. :class:`RunProgress` times the recent batches
(data loading included) and each validation, and estimates what is left of the whole run: the
rest of this epoch, the remaining epochs (or the ``trainer.max_steps`` budget, if it ends the run
first) and the validations still to come.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


class RunProgress:
    """Samples/s over the last ``window`` batches and the run's remaining time.

    Args:
        batches_per_epoch: training batches per epoch (after any ``limit_train_batches``).
        max_epochs, max_steps: the run's length (``max_steps`` counts optimizer steps; None: none).
        accumulate: batches per optimizer step (``trainer.accumulate_grad_batches``).
        val_every: validate after every this many epochs (and after the last one).
        validates: False when there is no validation set.
        world_size: processes training together (the rate shown is theirs together).
        window: batches the rate and the time per batch are averaged over.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        batches_per_epoch: int,
        max_epochs: int,
        max_steps: int | None = None,
        accumulate: int = 1,
        val_every: int = 1,
        validates: bool = True,
        world_size: int = 1,
        window: int = 50,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.batches_per_epoch, self.max_epochs, self.max_steps = batches_per_epoch, max_epochs, max_steps
        self.accumulate, self.val_every, self.validates = accumulate, val_every, validates
        self.world_size, self.clock = world_size, clock
        self._batches: deque[tuple[float, int]] = deque(maxlen=window)  # (seconds, samples)
        self._last: float | None = None
        self._validation_seconds: float | None = None

    def start_epoch(self) -> None:
        """Call before an epoch's first batch, so the time since the last one (a validation, a
        checkpoint) is not counted as a batch's."""
        self._last = self.clock()

    def batch_done(self, samples: int) -> None:
        now = self.clock()
        if self._last is not None:
            self._batches.append((now - self._last, samples))
        self._last = now

    def validation_done(self, seconds: float) -> None:
        self._validation_seconds = seconds

    @property
    def samples_per_sec(self) -> float | None:
        seconds = sum(s for s, _ in self._batches)
        return sum(n for _, n in self._batches) * self.world_size / seconds if seconds > 0 else None

    def eta(self, epoch: int, batch_in_epoch: int, step: int) -> float | None:
        """Seconds left in the run, at ``batch_in_epoch`` batches into the 0-based ``epoch`` after
        ``step`` optimizer steps (None until a batch has been timed)."""
        if not self._batches:
            return None
        per_batch = sum(s for s, _ in self._batches) / len(self._batches)
        per_epoch = self.batches_per_epoch
        rest = per_epoch - batch_in_epoch
        batches = rest + (self.max_epochs - epoch - 1) * per_epoch
        ends = range(epoch + 1, self.max_epochs + 1)  # 1-based epochs whose end is still to come
        if self.max_steps is not None:
            budget = max(self.max_steps - step, 0) * self.accumulate
            if budget < batches:  # the step budget ends the run first (and validates there)
                batches = budget
                ends = range(epoch + 1, epoch + 2 + max(0, -(-(budget - rest) // max(per_epoch, 1))))
        seconds = batches * per_batch
        if self.validates and self._validation_seconds is not None:  # unknown before the first
            validations = sum(1 for e in ends if e % self.val_every == 0 or e == ends[-1])
            seconds += validations * self._validation_seconds
        return seconds

    def postfix(self, epoch: int, batch_in_epoch: int, step: int) -> dict[str, str]:
        """``{"samples/s": ..., "ETA": ...}`` for ``tqdm.set_postfix`` (empty before the first timing)."""
        rate, eta = self.samples_per_sec, self.eta(epoch, batch_in_epoch, step)
        shown = {}
        if rate is not None:
            shown["samples/s"] = f"{rate:.1f}"
        if eta is not None:
            shown["ETA"] = tqdm.format_interval(eta)
        return shown

    def bar(self, loader: DataLoader, epoch: int, batch_in_epoch: int, *, shown: bool) -> tqdm:
        """The epoch's tqdm bar over ``loader`` (the batches left), resumed at ``batch_in_epoch``
        of the 0-based ``epoch``; ``shown`` False disables it."""
        return tqdm(
            loader,
            total=batch_in_epoch + len(loader),
            initial=batch_in_epoch,
            desc=f"Epoch {epoch + 1}/{self.max_epochs}",
            disable=not shown,
            dynamic_ncols=True,
        )
