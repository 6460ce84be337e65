"""``trainer.early_stopping``: stop training when a validation metric stops improving.

Called after every validation (rank 0, like the Optuna pruning hook); the run then ends as a
finished run (not pruned): ``best_model.pth`` and the logged model hold the best validation's
weights, and ``train`` returns the best ``optimized_metric``. The count of validations without
improvement restarts when a run is resumed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

#: What the loop calls after each validation (rank 0): ``(epoch, metrics) -> stop?``. The public
#: interface between the trainer and whatever decides to stop it: early stopping here, the Optuna
#: sweeper's pruning callback (``hydra_plugins.neuropbr_optuna.pruning``), built by ``neuropbr.build``.
ValidationHook = Callable[[int, dict[str, float]], bool]


def check_settings(patience: int, mode: str, min_delta: float) -> None:
    """The ``trainer.early_stopping`` keys that need no metric list (checked even when it is off)."""
    if patience < 1:
        raise ValueError(f"trainer.early_stopping.patience={patience}: expected >= 1 validations")
    if mode not in ("min", "max"):
        raise ValueError(f"trainer.early_stopping.mode={mode!r}: expected min or max")
    if not min_delta >= 0:
        raise ValueError(f"trainer.early_stopping.min_delta={min_delta}: expected >= 0")


class EarlyStopping:
    """Stop after ``patience`` validations in a row whose ``metric`` did not beat the best one by
    more than ``min_delta``.

    Args:
        metric: a validation key, e.g. ``val/loss`` or ``val/skill_db``.
        patience: validations without improvement before stopping (>= 1).
        mode: ``min`` (lower is better) or ``max``.
        min_delta: smallest change that counts as an improvement (>= 0).
        valid_metrics: the keys validation reports (the metric must be one of them).

    Raises:
        ValueError: a bad value, naming its ``trainer.early_stopping.*`` key.
    """

    def __init__(
        self,
        metric: str,
        patience: int,
        mode: str = "min",
        min_delta: float = 0.0,
        valid_metrics: Sequence[str] = (),
    ) -> None:
        check_settings(patience, mode, min_delta)
        if valid_metrics and metric not in valid_metrics:
            raise ValueError(
                f"trainer.early_stopping.metric={metric!r}: expected one of {list(valid_metrics)}"
            )
        self.metric, self.patience, self.mode, self.min_delta = metric, patience, mode, min_delta
        self.best: float | None = None
        self.bad_validations = 0
        #: The epoch (1-based) after which training was stopped, or None.
        self.stopped_after_epoch: int | None = None

    def __call__(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record the validation after ``epoch`` (0-based); True: stop training now."""
        value = metrics[self.metric]
        if math.isfinite(value) and (
            self.best is None
            or (
                value < self.best - self.min_delta
                if self.mode == "min"
                else value > self.best + self.min_delta
            )
        ):
            self.best, self.bad_validations = value, 0
            return False
        self.bad_validations += 1
        if self.bad_validations < self.patience:
            return False
        self.stopped_after_epoch = epoch + 1
        log.info(
            "early stopping after epoch %d: %s has not improved on %.6g for %d validation(s)",
            epoch + 1,
            self.metric,
            self.best if self.best is not None else math.nan,
            self.bad_validations,
        )
        return True


class ValidationHooks:
    """Several ``(epoch, metrics) -> stop?`` hooks as one: every hook sees every validation, and
    :attr:`fired` names those that asked to stop."""

    def __init__(self, **hooks: ValidationHook | None) -> None:
        self.hooks = {name: hook for name, hook in hooks.items() if hook is not None}
        self.fired: list[str] = []

    def __call__(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.fired = [name for name, hook in self.hooks.items() if hook(epoch, metrics)]
        return bool(self.fired)

    def __bool__(self) -> bool:
        return bool(self.hooks)
