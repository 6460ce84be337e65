"""The shared budget: workers joining one sweep, re-runs, resumes, and the cross-process lock."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.neuropbr_optuna._rounds import SharedBudget
from hydra_plugins.neuropbr_optuna._storage import StorageLock, TrialHeartbeat, open_storage

from .conftest import assert_lock_excludes_another_process, sqlite_url


@pytest.fixture
def db(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "optuna.db")


@pytest.fixture
def study(db: str) -> optuna.Study:
    return optuna.create_study(study_name="s", storage=open_storage(db))


def _worker(db: str, n_trials: int, parents: list[int] | None = None) -> SharedBudget:
    """One worker's bookkeeping, on its own connection to the study's database."""
    record = (lambda number: parents.append(number) or f"parent-{number}") if parents is not None else None
    return SharedBudget(open_storage(db), StorageLock(db), "s", n_trials, open_parent_run=record)


def _finish(study: optuna.Study, trials: list[optuna.Trial]) -> None:
    for trial in trials:
        study.tell(trial, 1.0)


def test_workers_share_one_budget_and_a_rerun_opens_the_next_sweep(db: str, study: optuna.Study) -> None:
    parents: list[int] = []
    a, b = _worker(db, 4, parents), _worker(db, 10, parents)
    joined_a, joined_b = a.join(), b.join()
    assert (joined_a.opened, joined_a.worker_index) == (True, 0)
    assert (joined_b.opened, joined_b.worker_index) == (False, 1)
    assert (
        joined_b.round.target == 4 and joined_b.round.mlflow_parent_run_id == "parent-1"
    )  # the opener's budget
    first = a.reserve(study, 3, {})
    second = b.reserve(study, 3, {})
    assert [t.number for t in first] == [0, 1, 2] and [t.number for t in second] == [3]
    assert a.reserve(study, 1, {}) == [] and b.reserve(study, 1, {}) == []
    assert not a.round_finished(study)  # all asked, none told
    _finish(study, first + second)
    assert a.round_finished(study)

    rerun = _worker(db, 2, parents)
    joined = rerun.join()
    assert joined.opened and (joined.round.sweep, joined.round.start, joined.round.target) == (2, 4, 6)
    assert joined.worker_index == 2 and parents == [1, 2]
    assert [t.number for t in rerun.reserve(study, 5, {})] == [4, 5]


def test_an_interrupted_sweep_is_resumed_not_restarted(db: str, study: optuna.Study) -> None:
    first = _worker(db, 3)
    first.join()
    _finish(study, first.reserve(study, 1, {}))
    first.reserve(study, 1, {})  # the worker dies here: trial 1 stays RUNNING
    again = _worker(db, 3)
    joined = again.join()
    assert not joined.opened and joined.round.target == 3
    assert [t.number for t in again.reserve(study, 5, {})] == [2]  # only the missing trial


@pytest.mark.slow  # a second process
def test_the_sqlite_lock_excludes_another_process(db: str) -> None:
    assert_lock_excludes_another_process(db)


def test_a_trial_whose_worker_died_is_failed_once_its_heartbeat_is_stale(
    db: str, study: optuna.Study
) -> None:
    """A worker killed outright leaves its trial RUNNING; its heartbeats stop. The next worker
    that reserves records it as FAIL after grace_period (not re-run: the budget slot stays
    used), while a trial whose worker is alive keeps beating and stays RUNNING."""
    stale: list[int] = []

    def heartbeat_study() -> optuna.Study:
        storage = open_storage(
            db, heartbeat_interval=1, grace_period=1, on_stale_trial=lambda _s, t: stale.append(t.number)
        )
        return optuna.load_study(study_name="s", storage=storage)

    dead, alive, late = _worker(db, 3), _worker(db, 3), _worker(db, 3)
    dead.join(), alive.join(), late.join()
    dead_study, alive_study, late_study = heartbeat_study(), heartbeat_study(), heartbeat_study()
    killed = dead.reserve(dead_study, 1, {})
    dead_beat = TrialHeartbeat(dead_study._storage, 1)  # beats once, then the worker "dies"
    dead_beat.watch(killed)
    dead_beat.stop()  # ... no more beats
    running = alive.reserve(alive_study, 1, {})
    alive_beat = TrialHeartbeat(alive_study._storage, 1)
    alive_beat.watch(running)
    try:
        time.sleep(3.5)  # > grace_period (sqlite's clock has 1 s resolution)
        assert [t.number for t in late.reserve(late_study, 5, {})] == [2]  # only the missing trial
        assert stale == [0]
        states = {t.number: t.state for t in late_study.get_trials()}
        assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING, 2: TrialState.RUNNING}
    finally:
        alive_beat.stop()


def test_without_heartbeats_a_dead_workers_trial_stays_running(db: str, study: optuna.Study) -> None:
    """heartbeat_interval=null: nothing can tell a dead worker from a slow one."""
    first = _worker(db, 2)
    first.join()
    first.reserve(study, 1, {})
    again = _worker(db, 2)
    again.join()
    assert [t.number for t in again.reserve(study, 5, {})] == [1]
    assert study.get_trials()[0].state == TrialState.RUNNING
