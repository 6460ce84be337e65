"""Optuna pruning from inside a training job: report each validation, stop a hopeless trial
(imported as ``hydra_plugins.neuropbr_optuna.pruning``).

The sweeper's public interface to the trainer. The training loop knows only a validation hook
``(epoch, metrics) -> stop?`` (:data:`neuropbr.training.early_stopping.ValidationHook`);
:func:`neuropbr.build.build_pruning_hook` builds this callback for a sweep trial and hands it to
the trainer, so ``neuropbr.training`` never imports the sweeper.

The Optuna sweeper (``hydra/sweeper=optuna``) runs each trial as a training job and tells it
which trial it is through ``sweep.storage``, ``sweep.study_name`` and ``sweep.trial_number``.
``neuropbr.build`` then passes an :class:`OptunaPruningHook` to the trainer as ``on_validation``; after
each validation the hook reports ``optimized_metric`` at step = epoch to the trial in the shared
storage and asks the study's pruner whether to stop. ``train.py`` turns a stop into
``optuna.TrialPruned``, which the sweeper records as PRUNED.

The pruner is the one the sweeper configured (``hydra.sweeper.pruner``): the sweeper stores its
spec on the trial (user attribute ``neuropbr_pruner``) and the hook rebuilds it here, since the
job may run in another process or on another machine than the sweeper.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import optuna

# The sweeper's own storage helpers and pruner specs: the job opens the storage with the same
# engine settings as the sweeper (SQLite busy timeout, pre-ping) and rebuilds the same pruner.
from ._factories import PRUNER_ATTR, build_pruner
from ._storage import open_storage, redact

log = logging.getLogger(__name__)


class OptunaPruningHook:
    """``(epoch, metrics) -> stop?``: reports ``metrics[metric]`` to a trial and asks its pruner.

    Args:
        storage: the study's RDB URL (``sweep.storage``).
        study_name: the study (``sweep.study_name``).
        trial_number: the trial this job runs (``sweep.trial_number``).
        metric: the validation metric to report, e.g. ``val/loss`` (``optimized_metric``).

    Raises:
        ValueError: the study or the trial does not exist in ``storage``, or the trial is not
            running (a stale ``sweep.*`` override).
    """

    def __init__(self, storage: str, study_name: str, trial_number: int, metric: str) -> None:
        self.metric = metric
        self.trial_number = trial_number
        rdb = open_storage(storage, existing=True)
        try:
            study_id = rdb.get_study_id_from_name(study_name)
            trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        except KeyError as err:
            raise ValueError(
                f"sweep.study_name={study_name!r}, sweep.trial_number={trial_number}: no such trial in {redact(storage)}"
            ) from err
        frozen = rdb.get_trial(trial_id)
        if frozen.state != optuna.trial.TrialState.RUNNING:
            raise ValueError(
                f"sweep.trial_number={trial_number}: trial of study {study_name!r} is {frozen.state.name}, "
                "expected RUNNING (are these sweep.* overrides from an earlier sweep?)"
            )
        spec = frozen.user_attrs.get(PRUNER_ATTR)
        pruner = build_pruner(spec) if spec else optuna.pruners.NopPruner()
        # The job never samples: a RandomSampler keeps loading the study cheap.
        self.study = optuna.load_study(
            study_name=study_name, storage=rdb, sampler=optuna.samplers.RandomSampler(), pruner=pruner
        )
        self.trial = optuna.Trial(self.study, trial_id)
        self.multi_objective = len(self.study.directions) > 1
        if self.multi_objective:
            log.warning(
                "study %r is multi-objective: optuna cannot prune it; the trial runs to the end", study_name
            )
        log.info(
            "trial %d of study %r reports %s to %s", trial_number, study_name, metric, type(pruner).__name__
        )

    def __call__(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Report ``metrics[self.metric]`` at step ``epoch``; True when the trial should stop."""
        if self.metric not in metrics:
            raise KeyError(
                f"optimized_metric={self.metric!r} is not among the validation metrics: {sorted(metrics)}"
            )
        if self.multi_objective:
            return False
        # A diverged run reports NaN or inf as it is: optuna's pruners prune a NaN outright and
        # an inf is worse than any median.
        value = float(metrics[self.metric])
        self.trial.report(value, step=epoch)
        prune = bool(self.trial.should_prune())  # optuna returns numpy booleans
        if prune:
            log.info(
                "trial %d pruned after epoch %d: %s=%.6g", self.trial_number, epoch + 1, self.metric, value
            )
        return prune
