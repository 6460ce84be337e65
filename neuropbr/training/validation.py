"""One validation pass, shared by the trainer's epochs and ``python -m neuropbr.evaluate``, so the
numbers a run logs and the numbers its checkpoint is later scored with are computed the same way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from neuropbr.metrics import BaselineMaps, MetricAccumulator
from neuropbr.training.distributed import DistInfo

#: Validation never perturbs the training RNG stream and always draws the same randomness
#: (e.g. the rendering loss's light configurations), so values compare across epochs and runs.
VALIDATION_SEED = 1234


@dataclass
class ValidationResult:
    """Dataset-level metrics (keys of :data:`~neuropbr.metrics.VALIDATION_KEYS`, no prefix),
    the number of samples, and the first samples for image grids."""

    metrics: dict[str, float]
    count: int
    shown: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def validate(
    generator: nn.Module,
    loader: Iterable[dict[str, Any]],
    loss: nn.Module | None,
    precision: Any,
    device: torch.device,
    num_shown: int = 0,
    dist_info: DistInfo | None = None,
    baseline: BaselineMaps | None = None,
) -> ValidationResult:
    """Run ``generator`` over ``loader`` in eval mode; the full metric set, and the loss if given.

    Predictions are made under ``precision``'s autocast and scored in float32. Train/eval modes
    of the generator and the loss are restored afterwards.

    Args:
        generator: views (B, V, 3, H, W) -> maps.
        loader: yields the data module's batches (a DataLoader, or a progress bar around one).
        loss: a composite loss (evaluated in eval mode), or None to skip ``loss``.
        precision: a :class:`~neuropbr.training.precision.Precision`.
        device: where to run.
        num_shown: how many of the first samples to return (on the CPU) for image grids.
        dist_info: under DDP, ``loader`` holds this rank's shard: the sums of every rank are
            all-reduced, so every rank returns the whole set's metrics.
        baseline: the training maps' means: adds the trivial predictors' scores and the model's
            skill over them (:mod:`neuropbr.metrics`).
    """
    modes = [(m, m.training) for m in (generator, loss) if m is not None]
    for module, _ in modes:
        module.eval()  # e.g. the rendering term then uses its fixed evaluation lights
    accumulator = MetricAccumulator(device, baseline)
    loss_sum, count = torch.zeros((), device=device), 0
    shown: dict[str, Any] = {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(VALIDATION_SEED)
            for batch in loader:
                views = batch["views"].to(device, non_blocking=True)  # (B, V, 3, H, W)
                target = {k: v.to(device, non_blocking=True) for k, v in batch["maps"].items()}
                with precision.autocast():
                    raw = generator(views)
                pred: dict[str, Tensor] = {k: v.float() for k, v in raw.items()}
                if loss is not None:
                    total, _ = loss(pred, target)
                    loss_sum += total.float() * views.shape[0]
                accumulator.update(pred, target, views)
                count += views.shape[0]
                if num_shown and not shown:
                    shown = {
                        "views": views[:num_shown].cpu(),
                        "pred": {k: v[:num_shown].cpu() for k, v in pred.items()},
                        "target": {k: v[:num_shown].cpu() for k, v in target.items()},
                    }
    finally:
        for module, was_training in modes:
            module.train(was_training)
    if dist_info is not None and dist_info.enabled:
        state = accumulator.state()
        totals = torch.stack(
            [loss_sum.double(), torch.tensor(float(count), device=device, dtype=torch.float64)]
        )
        for tensor in (*state.values(), totals):
            dist.all_reduce(tensor)  # sum over ranks, in place
        accumulator.reset()
        accumulator.merge(state)
        loss_sum, count = totals[0], int(totals[1])
    metrics = accumulator.compute()
    if loss is not None:
        metrics["loss"] = float(loss_sum / max(count, 1))
    return ValidationResult(metrics, count, shown)
