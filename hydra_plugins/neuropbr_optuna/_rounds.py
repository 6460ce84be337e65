"""The shared trial budget: several workers, one study, ``n_trials`` trials in all.

A *sweep* (one run of the sweep command, by one or several workers) adds ``n_trials`` trials to
its study. Its bookkeeping lives in the study itself, as the user attribute ``neuropbr_sweep``::

    {"sweep": 2, "start": 20, "target": 40, "n_trials": 20,
     "workers_joined": 3, "mlflow_parent_run_id": "ab12...", "opened_at": "2025-..."}

Protocol (every step under the storage's lock, see ``_storage.StorageLock``):

1. *Join.* A worker reads the attribute and the study's trial count N. If there is no sweep, or
   the last one is full (N >= target), it opens a new sweep: ``start = N``,
   ``target = N + n_trials``. Otherwise it joins the open sweep (its own ``n_trials`` is then
   ignored: the opener's budget holds).
2. *Reserve.* Before each trial the worker counts the study's trials again and asks a new one
   only while the count is below ``target``. Trial numbers are assigned by the storage, so they
   are unique; the lock makes count-then-ask atomic, so no worker asks past the budget.

What this guarantees (sqlite and postgresql, which have a lock):

- workers started while a sweep is open share it: exactly ``n_trials`` trials are created in
  all (RUNNING ones included), with unique numbers, however the workers interleave;
- workers started at the same moment: the lock serialises their joins, so exactly one opens
  the sweep and the others join it;
- running the command again after a sweep filled up adds ``n_trials`` more (a new sweep);
- a worker that was interrupted leaves its sweep open; running the command again resumes it
  and creates only the missing trials. The trial it was running counts toward the budget: it
  is recorded as FAIL (Ctrl-C, SIGTERM) or, if the process was killed outright, by the next
  worker that reserves a trial once its heartbeat is older than ``grace_period``
  (``_storage.TrialHeartbeat``); neither is re-run;
- a worker that starts after the sweep filled up opens the next sweep (it cannot tell a late
  worker from a re-run): start all workers of one sweep while it is open.

Other dialects have no lock: two workers can both pass the count at the end of a sweep. The
trial beyond the budget is then recorded as FAIL with the user attribute
``neuropbr_over_budget`` and not run.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from ._storage import StorageLock

log = logging.getLogger(__name__)

#: Study user attribute that holds the current sweep's bookkeeping.
SWEEP_ATTR = "neuropbr_sweep"
#: Trial user attribute of a trial asked past the budget (dialects without a lock only).
OVER_BUDGET_ATTR = "neuropbr_over_budget"


@dataclass
class SweepRound:
    """One sweep of a study, as stored in the study's ``neuropbr_sweep`` user attribute."""

    sweep: int
    start: int
    target: int
    n_trials: int
    workers_joined: int
    mlflow_parent_run_id: str | None = None
    opened_at: str = ""


@dataclass
class Membership:
    """What one worker got when it joined: the sweep, whether it opened it, and its index."""

    round: SweepRound
    opened: bool
    #: 0 for the first worker ever to join this study, 1 for the next... (seeds the sampler).
    worker_index: int


def _round_from_attr(stored: dict[str, Any]) -> SweepRound:
    known = SweepRound.__dataclass_fields__
    return SweepRound(**{k: v for k, v in stored.items() if k in known})


class SharedBudget:
    """Joins a sweep of ``study`` and hands out trials while the sweep's budget lasts.

    Args:
        storage: the study's storage (from ``_storage.open_storage``).
        lock: the lock of the same storage URL.
        study_name: the study (it must exist).
        n_trials: trials a new sweep adds.
        open_parent_run: called with the new sweep's number when this worker opens a sweep;
            returns the MLflow parent run id to store for the workers that join (or None).
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        lock: StorageLock,
        study_name: str,
        n_trials: int,
        open_parent_run: Callable[[int], str | None] | None = None,
    ) -> None:
        self.storage = storage
        self.lock = lock
        self.study_name = study_name
        self.n_trials = n_trials
        self.open_parent_run = open_parent_run
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.round: SweepRound | None = None
        if lock.kind == "none":
            log.warning(
                "storage dialect %r has no sweep lock: concurrent workers may ask one trial past the budget "
                "at the end of a sweep (recorded as FAIL, not run); use sqlite or postgresql for exact budgets",
                self.storage.engine.dialect.name,
            )

    def _lock(self) -> Any:
        return self.lock.hold(self.study_name)

    def n_existing(self) -> int:
        """Trials of the study in any state."""
        return self.storage.get_n_trials(self.study_id)

    def join(self) -> Membership:
        """Join the open sweep of the study, or open a new one (see the module docstring)."""
        with self._lock():
            stored = self.storage.get_study_user_attrs(self.study_id).get(SWEEP_ATTR)
            previous = _round_from_attr(stored) if stored else None
            count = self.n_existing()
            workers_before = previous.workers_joined if previous else 0
            opened = previous is None or count >= previous.target
            if opened:
                number = previous.sweep + 1 if previous else 1
                parent = self.open_parent_run(number) if self.open_parent_run else None
                current = SweepRound(
                    sweep=number,
                    start=count,
                    target=count + self.n_trials,
                    n_trials=self.n_trials,
                    workers_joined=workers_before + 1,
                    mlflow_parent_run_id=parent,
                    opened_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                )
            else:
                assert previous is not None
                current = SweepRound(**{**asdict(previous), "workers_joined": workers_before + 1})
            self.storage.set_study_user_attr(self.study_id, SWEEP_ATTR, asdict(current))
        self.round = current
        verb = "opened" if opened else "joined"
        log.info(
            "%s sweep %d of study %r: trials %d..%d (%d already created)",
            verb,
            current.sweep,
            self.study_name,
            current.start,
            current.target - 1,
            count,
        )
        return Membership(round=current, opened=opened, worker_index=workers_before)

    def reserve(
        self,
        study: optuna.Study,
        count: int,
        fixed_distributions: dict[str, optuna.distributions.BaseDistribution],
    ) -> list[optuna.Trial]:
        """Ask up to ``count`` new trials of ``study`` while the sweep has budget left.

        Returns an empty list once the sweep is full.
        """
        assert self.round is not None, "join() first"
        trials: list[optuna.Trial] = []
        with self._lock():
            self._fail_stale_trials(study)
            for _ in range(count):
                if self.n_existing() >= self.round.target:
                    break
                trial = study.ask(fixed_distributions)
                if trial.number >= self.round.target:
                    # Only without a lock: another worker asked between our count and our ask.
                    trial.set_user_attr(OVER_BUDGET_ATTR, True)
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    log.warning(
                        "trial %d is past the sweep's budget (target %d): recorded as FAIL, not run",
                        trial.number,
                        self.round.target,
                    )
                    break
                trials.append(trial)
        return trials

    @staticmethod
    def _fail_stale_trials(study: optuna.Study) -> None:
        """Running trials of workers killed outright (no heartbeat for grace_period) -> FAIL, so
        the sweep can finish; they keep their budget slot, as interrupted trials do."""
        with warnings.catch_warnings():
            # Heartbeats outside study.optimize are what the sweeper is built for (it beats for
            # its trials itself, _storage.TrialHeartbeat): silence optuna's reminders of that.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            optuna.storages.fail_stale_trials(study)

    def running_trials(self, study: optuna.Study) -> list[int]:
        """Numbers of the sweep's trials still RUNNING, after failing those whose worker died
        (only with heartbeats: without them a dead worker's trial stays RUNNING)."""
        with self._lock():
            self._fail_stale_trials(study)
        return [t.number for t in self.round_trials(study) if t.state == optuna.trial.TrialState.RUNNING]

    def round_trials(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The trials of the joined sweep (every worker's), in number order."""
        assert self.round is not None
        start, target = self.round.start, self.round.target
        return [t for t in study.get_trials(deepcopy=False) if start <= t.number < target]

    def round_finished(self, study: optuna.Study) -> bool:
        """True when the sweep's budget is used up and none of its trials is still running."""
        assert self.round is not None
        trials = self.round_trials(study)
        return len(trials) >= self.round.n_trials and all(t.state.is_finished() for t in trials)
