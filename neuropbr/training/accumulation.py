"""Gradient accumulation (``trainer.accumulate_grad_batches=k``): one optimizer step per k batches.

Batches are grouped by their position in the epoch: batches ``0..k-1`` form the first group,
``k..2k-1`` the next, and the epoch's last group may be shorter (an epoch always ends on an
optimizer step, so no gradient is carried from one epoch into the next). Each batch's loss is
divided by its group's size, so a step applies the mean gradient of the group, as one batch of
that many samples would.

Exact resume: checkpoints are only written at group boundaries (epoch ends, the step budget, and a
stop signal, which waits for the group to finish), never with gradients half accumulated, so a
checkpoint never needs them; a run killed mid-group resumes from the last boundary checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from neuropbr.training.nonfinite import NonFiniteGuard


def check_accumulation(accumulate_grad_batches: int, d_steps_per_g_step: int) -> None:
    """Raise ``ValueError`` naming the key(s) when the accumulation setting is not usable."""
    k = accumulate_grad_batches
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(
            f"trainer.accumulate_grad_batches={k!r}: expected an integer >= 1 (an optimizer step every k batches)"
        )
    if k > 1 and d_steps_per_g_step > 1:
        raise ValueError(
            f"trainer.accumulate_grad_batches={k} and trainer.d_steps_per_g_step={d_steps_per_g_step}: "
            "several discriminator steps per batch cannot accumulate over batches; set one of them to 1"
        )


def group_of(batch_in_epoch: int, batches_per_epoch: int, k: int) -> tuple[int, bool]:
    """``(size, last)``: the size of the accumulation group holding batch ``batch_in_epoch``
    (0-based) and whether it is the group's last batch (the optimizer steps after it)."""
    start = batch_in_epoch // k * k
    size = max(1, min(k, batches_per_epoch - start))
    return size, batch_in_epoch >= start + size - 1


class LossSums:
    """Each network's loss summed over the batches of the group in progress (detached; no sync).

    The sum is finite exactly when every batch's loss was: the non-finite check at the optimizer
    step then covers the whole group with one device sync.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}

    def add(self, name: str, loss: Tensor) -> None:
        loss = loss.detach()
        self._sums[name] = loss if name not in self._sums else self._sums[name] + loss

    def take(self, name: str) -> Tensor:
        """The sum for ``name``, forgotten afterwards (the network has stepped)."""
        return self._sums.pop(name)


class AccumulationGroup:
    """The accumulation group in progress: its batches so far, their samples and loss sums.

    The trainer calls :meth:`start_batch` for every batch and :meth:`finish` after the group's
    optimizer steps; nothing here is checkpointed (checkpoints fall on group boundaries).
    """

    def __init__(self) -> None:
        self.batches = 0
        self.samples: list[str] = []
        self.losses = LossSums()

    def start_batch(
        self, batch: dict[str, Any], guard: NonFiniteGuard, zero_grad: Callable[[], None]
    ) -> None:
        """Count ``batch`` in; the group's first batch snapshots the networks (restored when the
        step is not finite) and clears the gradients the group accumulates into."""
        if self.batches == 0:
            guard.snapshot()
            zero_grad()
        self.batches += 1
        self.samples += list(batch.get("sample") or [])

    def finish(
        self,
        guard: NonFiniteGuard,
        finite: bool,
        logs: dict[str, Tensor],
        sums: dict[str, Tensor | None],
        *,
        group_size: int,
        step: int,
        epoch: int,
    ) -> None:
        """Close the group and record its optimizer step with the guard.

        Args:
            guard: the trainer's non-finite guard.
            finite: whether every optimizer step of the group was applied.
            logs: the last batch's logs.
            sums: the group's summed losses under their log keys (``g_loss``, ``d_loss``;
                None: that network did not step).
            group_size, step, epoch: the group's size and the 1-based step and epoch it ends.
        """
        samples, self.samples, self.batches = self.samples, [], 0
        group_logs = dict(logs)
        if group_size > 1:  # the group's mean losses: a non-finite batch anywhere shows in the message
            group_logs |= {key: total / group_size for key, total in sums.items() if total is not None}
        guard.record(finite, step=step, epoch=epoch, samples=samples or None, logs=group_logs)
