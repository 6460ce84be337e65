"""Non-finite losses: skip the step (weights and running statistics as before it), count, stop.

A NaN or inf loss (diverging learning rate, fp16 overflow, a broken sample) would write NaN into
the weights, the optimizer's moments and the BatchNorm running statistics, and every later step
and checkpoint would carry it. :class:`NonFiniteGuard` checks each optimizer step's loss (and the
clipped gradient norm) once the backward pass is queued; a non-finite step is not applied, the
networks' buffers are put back as they were before the step's forward passes, and

- ``trainer.on_nonfinite=raise`` (default): after ``trainer.nonfinite_patience`` consecutive
  non-finite steps training stops with :class:`NonFiniteLossError`, naming the step, the batch's
  samples and the non-finite loss terms; nothing is saved, so ``latest.pth`` stays the last good
  state;
- ``trainer.on_nonfinite=skip_step``: every such step is skipped with a warning and counted
  (``train/nonfinite_steps`` at the end of the run).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

ON_NONFINITE_CHOICES = ("raise", "skip_step")


class NonFiniteLossError(FloatingPointError):
    """Training stopped: the loss was not finite for ``trainer.nonfinite_patience`` steps in a row."""


class NonFiniteGuard:
    """Decides, per optimizer step, whether its loss is finite, and what happens when it is not.

    Args:
        mode: ``raise`` or ``skip_step`` (``trainer.on_nonfinite``).
        patience: consecutive non-finite steps after which ``raise`` stops (>= 1).
        modules: the networks whose buffers are restored after a non-finite step (None skipped).
        latest_path: ``latest.pth``, named in the error (it is not overwritten).
        distributed: all ranks agree on each decision (one tiny all-reduce per optimizer step).
    """

    def __init__(
        self,
        mode: str,
        patience: int,
        modules: Sequence[nn.Module | None],
        latest_path: str | Path,
        distributed: bool = False,
    ) -> None:
        if mode not in ON_NONFINITE_CHOICES:
            raise ValueError(f"trainer.on_nonfinite={mode!r}: choose one of {list(ON_NONFINITE_CHOICES)}")
        if patience < 1:
            raise ValueError(f"trainer.nonfinite_patience={patience}: expected >= 1")
        self.mode, self.patience = mode, patience
        self.latest_path = Path(latest_path)
        self.distributed = distributed
        self._buffers = [b for m in modules if m is not None for b in m.buffers()]
        self._backup: list[Tensor] | None = None
        #: Non-finite steps in a row, and in the whole run (this process's lifetime).
        self.consecutive = 0
        self.skipped = 0

    def snapshot(self) -> None:
        """Remember the buffers (BatchNorm running statistics) before a step's forward passes."""
        if not self._buffers:
            return
        if self._backup is None:
            self._backup = [torch.empty_like(b) for b in self._buffers]
        torch._foreach_copy_(self._backup, self._buffers)  # one fused copy, no sync

    def restore(self) -> None:
        """Put the buffers back as :meth:`snapshot` saw them."""
        if self._backup is not None:
            torch._foreach_copy_(self._buffers, self._backup)

    def finite(self, loss: Tensor, grad_norm: Tensor | None = None) -> bool:
        """Whether ``loss`` (and ``grad_norm``) are finite: one device sync, on every rank alike."""
        flag = torch.isfinite(loss.detach()).all()
        if grad_norm is not None:
            flag = flag & torch.isfinite(grad_norm)
        if self.distributed and dist.is_available() and dist.is_initialized():
            as_int = flag.to(torch.int32)
            if dist.get_backend() != "nccl":
                as_int = as_int.cpu()
            dist.all_reduce(as_int, op=dist.ReduceOp.MIN)
            return bool(as_int.item())
        return bool(flag.item())

    def record(
        self,
        ok: bool,
        *,
        step: int,
        epoch: int,
        samples: Sequence[str] | None,
        logs: Mapping[str, Tensor],
    ) -> None:
        """Count a step's outcome; raise when ``raise`` has seen ``patience`` bad steps in a row.

        Args:
            ok: the step was finite and applied.
            step, epoch: 1-based numbers of the step and its epoch, for messages.
            samples: the batch's sample names (``batch["sample"]``).
            logs: the step's loss terms (detached scalars).

        Raises:
            NonFiniteLossError: ``mode == "raise"`` and ``patience`` consecutive non-finite steps.
        """
        if ok:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.skipped += 1
        terms = _nonfinite_terms(logs)
        where = f"step {step} (epoch {epoch}), samples {list(samples) if samples is not None else '?'}"
        if self.mode == "raise" and self.consecutive >= self.patience:
            kept = (
                f"{self.latest_path} is still the last good state"
                if self.latest_path.is_file()
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"trainer.on_nonfinite=raise: the loss was not finite for {self.consecutive} consecutive "
                f"step(s) (trainer.nonfinite_patience={self.patience}); last at {where}; non-finite "
                f"terms: {terms or 'the gradient norm'}. Nothing was saved: {kept}. Check the data "
                "(python -m neuropbr.check), lower optimizer.g_lr / optimizer.d_lr, or use "
                "trainer.precision=bf16|fp32; trainer.on_nonfinite=skip_step skips such steps instead"
            )
        log.warning(
            "non-finite loss at %s: %s; step skipped (weights and running statistics unchanged; "
            "%d in a row, %d in this run; trainer.on_nonfinite=%s)",
            where,
            terms or "the gradient norm",
            self.consecutive,
            self.skipped,
            self.mode,
        )


def _nonfinite_terms(logs: Mapping[str, Any]) -> dict[str, float]:
    """The loss entries of a step's logs that are NaN or inf (metrics are not losses)."""
    terms = {}
    for key, value in logs.items():
        if key in ("g_loss", "d_loss") or key.startswith(("loss_", "l1_")):
            number = float(value)
            if not math.isfinite(number):
                terms[key] = number
    return terms
