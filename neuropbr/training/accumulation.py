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

from torch import Tensor


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
