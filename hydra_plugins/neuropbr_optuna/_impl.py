"""The sweep loop: join a sweep, ask trials, launch them, tell the results, summarise.

One worker (one ``python -m neuropbr.train -m hparams_search=...`` process) does::

    study  = create or load ``study_name`` in ``storage``          (under the sweep lock)
    sweep  = join the study's open sweep or open a new one         (``_rounds``; MLflow parent)
    while the sweep has budget:
        trials    = ask up to ``n_jobs`` trials                     (under the sweep lock)
        returns   = launcher.launch(overrides of each trial)        (job number = trial number)
        tell each trial COMPLETE / PRUNED / FAIL; tag its MLflow run
        stop once more than ``max_failure_rate * n_trials`` of this worker's trials failed
    wait until no trial of the sweep is RUNNING (other workers'; at most final_wait_s)
    log the best value(s) and params on the MLflow parent; write optimization_results.yaml

Each trial job receives, besides the sampled params, ``sweep.storage``, ``sweep.study_name``,
``sweep.trial_number`` and ``sweep.mlflow_parent_run_id`` (when the job config has a ``sweep``
node), through which it reports its validation metric for pruning
(the public :class:`hydra_plugins.neuropbr_optuna.pruning.OptunaPruningHook`) and nests its MLflow run.

Return values: single-objective tasks return a float; with several directions the task must
return a sequence of as many floats (in direction order). Anything else fails the trial.
A task that raises ``optuna.TrialPruned`` is recorded as PRUNED.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from neuropbr.training.sweep_runs import SweepRuns, mlflow_target

from ._factories import PRUNER_ATTR, build_pruner, build_sampler, directions, pruner_spec, sampler_spec
from ._rounds import Membership, SharedBudget
from ._search_space import SearchSpace, format_value, parse_params
from ._storage import StorageLock, TrialHeartbeat, absolute_storage_url, open_storage, redact

log = logging.getLogger(__name__)

_MODE_TO_DIRECTION = {"min": "minimize", "max": "maximize"}
#: Seconds between polls of the storage while waiting for other workers' trials.
_POLL_S = 1.0


class SweepFailedError(RuntimeError):
    """Raised when more trials failed than ``hydra.sweeper.max_failure_rate`` allows."""


class OptunaSweeperImpl(Sweeper):
    """See :class:`hydra_plugins.neuropbr_optuna.config.OptunaSweeperConfig` for the arguments."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        storage: str,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: dict[str, Any] | None,
        custom_search_space: str | None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
        final_wait_s: int = 3600,
    ) -> None:
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"hydra.sweeper.{key}={value!r}: expected an integer >= 1")
        for key, seconds in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
            if seconds is not None and (not isinstance(seconds, int) or seconds < 1):
                raise ValueError(
                    f"hydra.sweeper.{key}={seconds!r}: expected null or an integer >= 1 (seconds)"
                )
        if not isinstance(final_wait_s, int) or final_wait_s < 0:
            raise ValueError(
                f"hydra.sweeper.final_wait_s={final_wait_s!r}: expected an integer >= 0 (seconds)"
            )
        if heartbeat_interval is None and grace_period is not None:
            raise ValueError(
                "hydra.sweeper.grace_period is set but heartbeat_interval=null: set both or neither"
            )
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: expected a value in [0, 1]")
        self.sampler_spec = sampler_spec(sampler)
        self.pruner_spec = pruner_spec(pruner)
        self.directions = directions(direction)
        self.storage_url = absolute_storage_url(storage)
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.final_wait_s = final_wait_s
        #: Trials of dead workers this worker's storage recorded as FAIL (heartbeat too old).
        self.stale_trials: list[FrozenTrial] = []
        self.params = dict(params or {})
        self.custom_search_space: Callable[[DictConfig, optuna.Trial], None] | None = (
            get_method(custom_search_space) if custom_search_space else None
        )
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    # --- Hydra's Sweeper interface ---------------------------------------------------------------

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> list[FrozenTrial]:
        """Run this worker's share of the sweep; returns the trials it ran (finished)."""
        assert self.config is not None and self.launcher is not None
        space = parse_params(self.params, arguments)
        self._check_metric_mode(self.config, space)
        grid = space.grid() if self.sampler_spec["_target_"].endswith("GridSampler") else None
        n_trials = self.n_trials
        if grid is not None:
            points = math.prod(len(values) for values in grid.values())
            n_trials = min(n_trials, points)
            log.info("sampler=grid: %d points, n_trials=%d", points, n_trials)
        lock = StorageLock(self.storage_url)
        with lock.hold("neuropbr-optuna-schema"):  # workers starting together on a new database
            storage = open_storage(
                self.storage_url,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                on_stale_trial=lambda _study, trial: self.stale_trials.append(trial),
            )
        study_name = self._create_study(storage, lock)
        target = mlflow_target(self.config)
        runs = SweepRuns(target) if target is not None else None

        def open_parent(number: int) -> str:
            assert runs is not None
            return self._open_parent(runs, study_name, number, space, n_trials)

        budget = SharedBudget(storage, lock, study_name, n_trials, open_parent if runs else None)
        membership = budget.join()
        parent_run_id = self._parent_run(runs, membership, study_name, space, n_trials)
        study = optuna.load_study(
            study_name=study_name,
            storage=storage,
            sampler=build_sampler(self.sampler_spec, membership.worker_index, grid),
            pruner=build_pruner(self.pruner_spec),
        )
        log.info(
            "study %r in %s: sampler %s (seed %s), pruner %s, directions %s, %d trial(s) in this sweep",
            study_name,
            redact(self.storage_url),
            type(study.sampler).__name__,
            self._seed(membership),
            type(study.pruner).__name__,
            self.directions,
            membership.round.n_trials,
        )
        loop = _SweepLoop(self, study, study_name, space, budget, membership, runs, parent_run_id)
        return loop.run()

    # --- helpers -------------------------------------------------------------------------------------

    def _check_metric_mode(self, config: DictConfig, space: SearchSpace) -> None:
        """``optimized_metric_mode`` (which best value ``train`` returns) must match the direction.

        The trials' mode is a fixed sweep param when the preset sets one, else the config's.
        """
        mode = space.fixed_values.get("optimized_metric_mode", config.get("optimized_metric_mode"))
        if mode is None or len(self.directions) != 1:
            return
        mode_name = str(getattr(mode, "name", mode))
        expected = _MODE_TO_DIRECTION.get(mode_name)
        if expected is not None and expected != self.directions[0]:
            raise ValueError(
                f"hydra.sweeper.direction={self.directions[0]!r} disagrees with optimized_metric_mode={mode_name!r}: "
                f"expected direction {expected!r} (train returns the {mode_name} of optimized_metric)"
            )

    def _seed(self, membership: Membership) -> int | None:
        seed = self.sampler_spec.get("seed")
        return None if seed is None else int(seed) + membership.worker_index

    def _create_study(self, storage: optuna.storages.RDBStorage, lock: StorageLock) -> str:
        """Create the study, or load it (checking its directions); returns its name."""
        with lock.hold(self.study_name or ""):
            study = optuna.create_study(
                study_name=self.study_name,
                storage=storage,
                directions=[optuna.study.StudyDirection[d.upper()] for d in self.directions],
                load_if_exists=True,
            )
        stored = [d.name.lower() for d in study.directions]
        if stored != self.directions:
            raise ValueError(
                f"hydra.sweeper.direction={self.directions}: study {study.study_name!r} in "
                f"{redact(self.storage_url)} was created with directions {stored}"
            )
        if self.study_name is None:
            log.warning(
                "hydra.sweeper.study_name is null: created study %r; pass hydra.sweeper.study_name=%s to resume "
                "it or to share it with other workers",
                study.study_name,
                study.study_name,
            )
        return study.study_name

    def _parent_params(self, space: SearchSpace, n_trials: int) -> dict[str, Any]:
        params: dict[str, Any] = {f"search_space.{name}": source for name, source in space.sources.items()}
        params.update(
            {
                "sweeper.sampler": self.sampler_spec["_target_"].rsplit(".", 1)[-1],
                "sweeper.sampler_config": json.dumps(self.sampler_spec, sort_keys=True),
                "sweeper.pruner": self.pruner_spec["_target_"].rsplit(".", 1)[-1],
                "sweeper.pruner_config": json.dumps(self.pruner_spec, sort_keys=True),
                "sweeper.direction": ",".join(self.directions),
                "sweeper.n_trials": n_trials,
                "sweeper.n_jobs": self.n_jobs,
                "sweeper.max_failure_rate": self.max_failure_rate,
                "sweeper.storage": redact(self.storage_url),
            }
        )
        return params

    def _open_parent(
        self, runs: SweepRuns, study_name: str, number: int, space: SearchSpace, n_trials: int
    ) -> str:
        return runs.create_parent(
            run_name=f"{study_name}-sweep{number}",
            params=self._parent_params(space, n_trials)
            | {"sweeper.study_name": study_name, "sweeper.sweep": number},
            tags={"optuna_study": study_name, "optuna_sweep": str(number), "optuna_role": "sweep"},
        )

    def _parent_run(
        self,
        runs: SweepRuns | None,
        membership: Membership,
        study_name: str,
        space: SearchSpace,
        n_trials: int,
    ) -> str | None:
        """The sweep's MLflow parent run; a worker whose tracking store lacks it makes its own."""
        if runs is None:
            return None
        parent = membership.round.mlflow_parent_run_id
        if parent is not None and runs.has_run(parent):
            return parent
        log.warning(
            "MLflow parent run %s of sweep %d is not in %s (workers log to different stores?): "
            "this worker nests its trials under a parent of its own",
            parent,
            membership.round.sweep,
            runs.target.uri,
        )
        return self._open_parent(runs, study_name, membership.round.sweep, space, n_trials)

    def handle_overrides(
        self, study_name: str, trial: optuna.Trial, runs: SweepRuns | None, parent_run_id: str | None
    ) -> list[str]:
        """``sweep.*`` overrides that tell the job which trial it is (if its config has them).

        The job also gets the tracking URI the sweeper resolved when its config leaves it null:
        a job that runs in another directory (``hydra.job.chdir``, another launcher) must log
        to the store where the parent run is.
        """
        assert self.config is not None
        handle = self.config.get("sweep")
        if not isinstance(handle, DictConfig) or "trial_number" not in handle:
            return []
        lines = [
            f"sweep.storage={format_value(self.storage_url)}",
            f"sweep.study_name={format_value(study_name)}",
            f"sweep.trial_number={trial.number}",
        ]
        if runs is not None and parent_run_id is not None:
            lines.append(f"sweep.mlflow_parent_run_id={format_value(parent_run_id)}")
            tracking = self.config.tracking
            if "uri" in tracking and tracking.uri is None:
                lines.append(f"tracking.uri={format_value(runs.target.uri)}")
        return lines


class _SweepLoop:
    """The ask-launch-tell loop of one worker (state shared by its helper methods)."""

    def __init__(
        self,
        sweeper: OptunaSweeperImpl,
        study: optuna.Study,
        study_name: str,
        space: SearchSpace,
        budget: SharedBudget,
        membership: Membership,
        runs: SweepRuns | None,
        parent_run_id: str | None,
    ) -> None:
        self.sweeper, self.study, self.study_name, self.space = sweeper, study, study_name, space
        self.budget, self.membership, self.runs, self.parent_run_id = budget, membership, runs, parent_run_id
        self.failures: list[tuple[int, BaseException]] = []
        self.finished: list[FrozenTrial] = []
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.allowed_failures = math.floor(sweeper.max_failure_rate * membership.round.n_trials)
        assert sweeper.config is not None
        handle = sweeper.config.get("sweep")
        if not isinstance(handle, DictConfig) or "trial_number" not in handle:
            log.warning(
                "the job config has no sweep.trial_number: trials cannot report to the pruner or nest MLflow runs"
            )

    def run(self) -> list[FrozenTrial]:
        """Ask, launch and tell until the sweep is full; returns this worker's finished trials.

        Raises:
            SweepFailedError: more failures than ``max_failure_rate`` allows.
        """
        status = "FINISHED"
        pending: list[optuna.Trial] = []
        heartbeat = TrialHeartbeat(self.budget.storage, self.sweeper.heartbeat_interval)
        try:
            while True:
                pending = self.budget.reserve(self.study, self.sweeper.n_jobs, self.space.distributions)
                self._report_stale_trials()
                if not pending:
                    break
                heartbeat.watch(pending)
                overrides = [self._prepare(trial) for trial in pending]
                returns = self._launch(pending, overrides)
                for trial, ret in zip(pending, returns):
                    self._finish(trial, ret)
                heartbeat.unwatch(pending)
                pending = []
                if len(self.failures) > self.allowed_failures:
                    self._raise_failures()
        except BaseException as err:
            status = "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED"
            for trial in pending:  # asked but never told: never leave them RUNNING
                self._abort(trial, f"sweep aborted: {type(err).__name__}: {err}")
            raise
        finally:
            heartbeat.stop()
            self._summarise(status)
        return self.finished

    def _report_stale_trials(self) -> None:
        """Log the trials of dead workers the last reserve recorded as FAIL; fail their MLflow runs."""
        while self.sweeper.stale_trials:
            trial = self.sweeper.stale_trials.pop(0)
            log.warning(
                "trial %d (worker %s) stopped sending heartbeats: its worker died; recorded as FAIL, not re-run",
                trial.number,
                trial.user_attrs.get("worker", "?"),
            )
            child = self._child_run(trial)
            if child and self.runs is not None:
                try:
                    self.runs.set_tags(
                        child, {"optuna_state": "FAIL", "fail_reason": "worker died (no heartbeat)"}
                    )
                    self.runs.terminate(child, "FAILED")
                except Exception:  # a tracking hiccup must not end a long sweep
                    log.exception("could not fail the MLflow run %s of trial %d", child, trial.number)

    def _prepare(self, trial: optuna.Trial) -> list[str]:
        """Record the trial's context on it and build its override lines."""
        sweeper = self.sweeper
        assert sweeper.config is not None
        if sweeper.custom_search_space is not None:
            sweeper.custom_search_space(sweeper.config, trial)
        clash = set(trial.params) & set(self.space.fixed)
        if clash:
            raise ValueError(
                f"hydra.sweeper.custom_search_space suggested fixed parameter(s) {sorted(clash)}"
            )
        trial.set_user_attr(PRUNER_ATTR, sweeper.pruner_spec)
        trial.set_user_attr("sweep", self.membership.round.sweep)
        trial.set_user_attr("worker", self.worker)
        if self.space.fixed:
            trial.set_user_attr("fixed_overrides", list(self.space.fixed.values()))
        lines = self.space.overrides_for(trial.params)
        handles = sweeper.handle_overrides(self.study_name, trial, self.runs, self.parent_run_id)
        if handles and "run_name" in sweeper.config.sweep:
            from neuropbr.training.run_metadata import child_run_name

            # The trial's MLflow run is named by its number and the sampled values (the fixed
            # overrides come first in ``lines`` and are the same in every trial).
            sampled = dict(line.split("=", 1) for line in lines[len(self.space.fixed) :])
            handles.append(f"sweep.run_name={format_value(child_run_name('trial', trial.number, sampled))}")
        return lines + handles

    def _launch(self, trials: Sequence[optuna.Trial], overrides: Sequence[list[str]]) -> list[JobReturn]:
        """Launch the batch so that each job's number (and run directory) is its trial number."""
        launcher = self.sweeper.launcher
        returns: list[JobReturn] = []
        start = 0
        for end in range(1, len(trials) + 1):
            # One launch per run of consecutive trial numbers (normally the whole batch).
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                batch = [tuple(lines) for lines in overrides[start:end]]
                returns.extend(launcher.launch(batch, initial_job_idx=trials[start].number))
                start = end
        return returns

    def _finish(self, trial: optuna.Trial, ret: JobReturn) -> None:
        """Tell the study how the job ended, and tag its MLflow run."""
        error: BaseException | None = None
        values: list[float] | None = None
        if ret.status == JobStatus.COMPLETED:
            try:
                values = self._values(ret._return_value)
                state = TrialState.COMPLETE
            except ValueError as err:
                state, error = TrialState.FAIL, err
        elif isinstance(ret._return_value, optuna.TrialPruned):
            state = TrialState.PRUNED
        else:
            state = TrialState.FAIL
            error = (
                ret._return_value
                if isinstance(ret._return_value, BaseException)
                else RuntimeError(str(ret._return_value))
            )
        if ret.working_dir:
            trial.set_user_attr("run_dir", str(ret.working_dir))
        child = self._child_run(trial)
        if child:
            trial.set_user_attr("mlflow_run_id", child)
        frozen = self._tell(trial, state, values, f"{type(error).__name__}: {error}" if error else None)
        if frozen.state == TrialState.FAIL:
            if error is None:  # optuna rejected the values (NaN, inf)
                error = ValueError(f"trial {trial.number} returned {values}: not finite")
            self.failures.append((trial.number, error))
            log.warning("trial %d FAIL: %s: %s", trial.number, type(error).__name__, error)
        else:
            shown = "" if frozen.values is None else f" value(s) {frozen.values}"
            log.info("trial %d %s%s params %s", trial.number, frozen.state.name, shown, frozen.params)
        if child and self.runs is not None:
            try:
                self.runs.set_tags(
                    child, {"optuna_state": frozen.state.name, "optuna_sweep": self.membership.round.sweep}
                )
            except Exception:  # a tracking hiccup must not end a long sweep
                log.exception("could not tag the MLflow run %s of trial %d", child, trial.number)
        self.finished.append(frozen)

    def _values(self, returned: Any) -> list[float]:
        n = len(self.sweeper.directions)
        if n == 1:
            if isinstance(returned, Sequence) and not isinstance(returned, str):
                raise ValueError(f"the task returned {returned!r}; a single-objective sweep needs one float")
            try:
                return [float(returned)]
            except (TypeError, ValueError) as err:
                raise ValueError(f"the task returned {returned!r}; expected a float") from err
        if not isinstance(returned, Sequence) or isinstance(returned, str) or len(returned) != n:
            raise ValueError(
                f"the task returned {returned!r}; hydra.sweeper.direction has {n} entries, so it must return "
                f"a sequence of {n} floats"
            )
        try:
            return [float(v) for v in returned]
        except (TypeError, ValueError) as err:
            raise ValueError(f"the task returned {returned!r}; expected {n} floats") from err

    def _tell(
        self, trial: optuna.Trial, state: TrialState, values: list[float] | None, reason: str | None
    ) -> FrozenTrial:
        if reason is not None:
            trial.set_user_attr("fail_reason", reason[:2000])
        try:
            return self.study.tell(trial, values=values, state=state)
        except RuntimeError as err:
            # GridSampler calls study.stop() once the grid is covered, which optuna only allows
            # inside optimize(); the trial's state is stored before that call.
            if "Study.stop" not in str(err):
                raise
            storage = self.budget.storage
            return storage.get_trial(
                storage.get_trial_id_from_study_id_trial_number(self.budget.study_id, trial.number)
            )

    def _abort(self, trial: optuna.Trial, reason: str) -> None:
        """Record a trial that will not run (or whose result was lost) as FAIL, if still open."""
        try:
            storage = self.budget.storage
            trial_id = storage.get_trial_id_from_study_id_trial_number(self.budget.study_id, trial.number)
            if storage.get_trial(trial_id).state.is_finished():
                return
            trial.set_user_attr("fail_reason", reason[:2000])
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            child = self._child_run(trial)
            if child and self.runs is not None:
                self.runs.set_tags(
                    child, {"optuna_state": "FAIL", "optuna_sweep": self.membership.round.sweep}
                )
        except Exception:  # already failing: report, but keep the original error
            log.exception("could not record trial %d as FAIL", trial.number)

    def _child_run(self, trial: optuna.Trial | FrozenTrial) -> str | None:
        if self.runs is None or self.parent_run_id is None:
            return None
        try:
            return self.runs.find_trial_run(self.parent_run_id, self.study_name, trial.number)
        except Exception:  # a tracking hiccup must not end a long sweep
            log.exception("could not look up the MLflow run of trial %d", trial.number)
            return None

    def _raise_failures(self) -> None:
        numbers = [number for number, _ in self.failures]
        last = self.failures[-1][1]
        raise SweepFailedError(
            f"{len(self.failures)} trial(s) of this worker failed ({numbers}), more than "
            f"hydra.sweeper.max_failure_rate={self.sweeper.max_failure_rate} x n_trials="
            f"{self.membership.round.n_trials} allows ({self.allowed_failures}); last error: "
            f"{type(last).__name__}: {last}"
        ) from last

    # --- the end of the sweep ---------------------------------------------------------------------

    def _wait_for_running_trials(self) -> list[int]:
        """Once the budget is used up: poll the storage until no trial of the sweep is RUNNING
        (other workers' trials; with heartbeats, dead workers' are failed meanwhile), for at most
        ``final_wait_s``. Returns the numbers of the trials still running then."""
        limit = self.sweeper.final_wait_s
        deadline = time.monotonic() + limit
        running = self.budget.running_trials(self.study)
        if running and limit > 0:
            log.info(
                "the sweep's budget is used up; waiting up to %d s (hydra.sweeper.final_wait_s) for trial(s) "
                "%s of other workers to finish before writing the sweep's best",
                limit,
                running,
            )
        while running and time.monotonic() < deadline:
            time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
            running = self.budget.running_trials(self.study)
            self._report_stale_trials()
        if running:
            log.warning(
                "trial(s) %s still RUNNING after hydra.sweeper.final_wait_s=%d s (a worker still training, "
                "or one that died with heartbeat_interval=null): the best written now is provisional",
                running,
                limit,
            )
        return running

    def _summarise(self, status: str) -> None:
        """Best value(s) and params of the sweep: log, optimization_results.yaml, MLflow parent.

        A worker that used up the budget first waits for the other workers' trials
        (:meth:`_wait_for_running_trials`), so every worker writes the same, final best; one
        that stopped early (failures, a signal) writes what there is at once.
        """
        running = self._wait_for_running_trials() if status == "FINISHED" else []
        trials = self.budget.round_trials(self.study)
        counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        summary: dict[str, Any] = {
            "name": "optuna",
            "study_name": self.study_name,
            "storage": redact(self.sweeper.storage_url),
            "sweep": self.membership.round.sweep,
            "trials": {k: v for k, v in counts.items() if v},
            "n_trials_in_study": len(self.study.get_trials(deepcopy=False)),
            "final": not running and status == "FINISHED",
        }
        if status != "FINISHED":
            summary["note"] = f"this worker stopped early ({status}): the best of the trials finished so far"
        if running:
            summary["running_trials"] = running
            summary["note"] = (
                f"trial(s) {running} were still RUNNING after waiting hydra.sweeper.final_wait_s="
                f"{self.sweeper.final_wait_s} s (a worker still training, or one that died without "
                "heartbeats): this best is provisional; the worker that finishes them writes the final one, "
                f"and optuna.load_study(study_name={self.study_name!r}, storage=...).best_trial has it"
            )
        metrics: dict[str, float] = {f"n_{k.lower()}": float(v) for k, v in counts.items()}
        tags: dict[str, Any] = {"results_final": str(summary["final"]).lower()}
        if len(self.sweeper.directions) == 1 and complete:
            pick = min if self.sweeper.directions[0] == "minimize" else max
            best = pick(complete, key=lambda t: cast(float, t.value))
            best_value = cast(float, best.value)  # COMPLETE single-objective trials have one
            summary.update(best_trial=best.number, best_value=best_value, best_params=best.params)
            metrics["best_value"] = best_value
            metrics["best_trial"] = float(best.number)
            tags.update({f"best_params.{k}": v for k, v in best.params.items()})
            tags["best_params"] = json.dumps(best.params, sort_keys=True)
            tags["best_run_id"] = best.user_attrs.get("mlflow_run_id", "")
            log.info(
                "sweep %d best: trial %d, value %s, params %s",
                self.membership.round.sweep,
                best.number,
                best.value,
                best.params,
            )
        elif complete:
            front = self.study.best_trials  # the study's Pareto front
            summary["solutions"] = [
                {"trial": t.number, "values": t.values, "params": t.params} for t in front
            ]
            metrics["n_pareto"] = float(len(front))
            tags["pareto_front"] = json.dumps([{"trial": t.number, "values": t.values} for t in front])
            log.info("Pareto front: %s", [(t.number, t.values) for t in front])
        self._write_results(summary)
        if self.runs is None or self.parent_run_id is None:
            return
        try:
            self.runs.log_metrics(self.parent_run_id, metrics)
            self.runs.set_tags(self.parent_run_id, tags)
            if status != "FINISHED":
                self.runs.terminate(self.parent_run_id, status)
            elif self.budget.round_finished(self.study):
                self.runs.terminate(self.parent_run_id, "FINISHED")
            else:
                log.info(
                    "other workers still run trials of sweep %d: the parent run stays RUNNING",
                    self.membership.round.sweep,
                )
        except Exception:  # never hide the sweep's own outcome behind a tracking error
            log.exception("could not update the MLflow parent run %s", self.parent_run_id)

    def _write_results(self, summary: dict[str, Any]) -> None:
        config = self.sweeper.config
        assert config is not None
        directory = Path(config.hydra.sweep.dir)
        directory.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(summary), directory / "optimization_results.yaml")
