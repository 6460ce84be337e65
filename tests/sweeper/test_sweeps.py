"""Sweeps of the sphere app, in-process on a real SQLite storage: budget, resume, failures,
pruning, multi-objective, grid, custom search space."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from hydra_plugins.neuropbr_optuna._impl import SweepFailedError
from hydra_plugins.neuropbr_optuna._rounds import SWEEP_ATTR

from .conftest import load_trials, sqlite_url, states


def test_sweep_runs_n_trials_and_rerun_adds_to_the_study(app_sweep, tmp_path: Path) -> None:
    storage = sqlite_url(tmp_path / "optuna.db")
    ran = app_sweep("hydra.sweeper.n_trials=3")
    assert [t.number for t in ran] == [0, 1, 2]
    trials = load_trials(storage)
    assert states(trials) == ["COMPLETE"] * 3
    assert all(t.user_attrs["sweep"] == 1 for t in trials)
    # Hydra's job number is the trial number: run directories never collide across sweeps.
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir() if p.is_dir()) == ["0", "1", "2"]
    results = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")
    best = min(trials, key=lambda t: t.value)
    assert results.best_trial == best.number and results.best_value == pytest.approx(best.value)
    assert results.best_params == best.params

    app_sweep("hydra.sweeper.n_trials=2")
    trials = load_trials(storage)
    assert [t.number for t in trials] == list(range(5)) and states(trials) == ["COMPLETE"] * 5
    sweep = optuna.load_study(study_name="sphere", storage=storage).user_attrs[SWEEP_ATTR]
    assert (sweep["sweep"], sweep["start"], sweep["target"]) == (2, 3, 5)
    assert [t.user_attrs["sweep"] for t in trials] == [1] * 3 + [2] * 2


def test_seeded_sweeps_are_reproducible(app_sweep, tmp_path: Path) -> None:
    params = []
    for name in ("a", "b"):
        app_sweep("hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={sqlite_url(tmp_path / name)}.db")
        params.append([t.params for t in load_trials(sqlite_url(tmp_path / name) + ".db")])
    assert params[0] == params[1]


def test_failed_trials_are_recorded_and_the_sweep_goes_on(app_sweep, tmp_path: Path) -> None:
    # x is 0 or 10; x > 5 raises in the task. One failure of 2 trials is within 0.5 * 2.
    app_sweep(
        "hydra/sweeper/sampler=grid",
        "x=choice(0.0, 10.0)",
        "y=1",
        "fail_above=5",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5",
    )
    trials = load_trials(sqlite_url(tmp_path / "optuna.db"))
    by_x = {t.params["x"]: t for t in trials}
    assert by_x[10.0].state.name == "FAIL"
    assert "RuntimeError: deliberate failure" in by_x[10.0].user_attrs["fail_reason"]
    assert by_x[0.0].state.name == "COMPLETE" and by_x[0.0].value == pytest.approx(4.0 + 1.0 + 1.0 / 3)


def test_max_failure_rate_stops_the_sweep(app_sweep, tmp_path: Path) -> None:
    # Every trial fails; floor(0.4 * 3) = 1 failure is tolerated, the second stops the sweep.
    with pytest.raises(
        SweepFailedError, match=r"2 trial\(s\) of this worker failed \(\[0, 1\]\).*max_failure_rate=0.4"
    ):
        app_sweep("fail_above=-100", "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=0.4")
    trials = load_trials(sqlite_url(tmp_path / "optuna.db"))
    assert states(trials) == ["FAIL"] * 2  # the 3rd trial was never asked


def test_a_bad_trial_is_pruned_after_its_first_report(app_sweep, tmp_path: Path) -> None:
    pruner = ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1", "epochs=5"]
    app_sweep(*pruner, "hydra.sweeper.n_trials=1", "x=2.0")  # good: loss -> y
    app_sweep(*pruner, "hydra.sweeper.n_trials=1", "x=100.0")  # deliberately bad
    good, bad = load_trials(sqlite_url(tmp_path / "optuna.db"))
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 5
    assert bad.state.name == "PRUNED"
    assert list(bad.intermediate_values) == [0]  # stopped at its first report, not after 5 epochs
    assert bad.user_attrs["neuropbr_pruner"]["_target_"] == "optuna.pruners.MedianPruner"


def test_multi_objective_sweep_needs_a_sequence(app_sweep, tmp_path: Path) -> None:
    app_sweep(
        "hydra.sweeper.direction=[minimize,minimize]",
        "objectives=2",
        "hydra.sweeper.n_trials=2",
        "~optimized_metric_mode",
    )
    study = optuna.load_study(study_name="sphere", storage=sqlite_url(tmp_path / "optuna.db"))
    assert [len(t.values) for t in study.trials] == [2, 2]
    assert "solutions" in OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")

    with pytest.raises(SweepFailedError, match="must return a sequence of 2 floats"):
        app_sweep(
            "hydra.sweeper.direction=[minimize,minimize]",
            "objectives=1",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.max_failure_rate=0",
            "~optimized_metric_mode",
            "hydra.sweeper.study_name=other",
        )


def test_grid_sampler_covers_the_grid_once(app_sweep, tmp_path: Path) -> None:
    app_sweep(
        "hydra/sweeper/sampler=grid", "x=choice(1.0, 3.0)", "y=range(0, 2)", "hydra.sweeper.n_trials=50"
    )
    trials = load_trials(sqlite_url(tmp_path / "optuna.db"))
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == [
        (x, y) for x in (1.0, 3.0) for y in (0, 1)
    ]
    assert states(trials) == ["COMPLETE"] * 4


def suggest_epochs(cfg, trial: optuna.Trial) -> None:
    """A custom search space: a parameter that only exists when y > 0."""
    if trial.params["y"] > 0:
        trial.suggest_int("epochs", 1, 3)


def test_custom_search_space_adds_parameters(app_sweep, tmp_path: Path) -> None:
    app_sweep(f"hydra.sweeper.custom_search_space={__name__}.suggest_epochs", "hydra.sweeper.n_trials=3")
    trials = load_trials(sqlite_url(tmp_path / "optuna.db"))
    assert {"epochs" in t.params for t in trials} == {True, False}  # seed 0 samples both branches
    for trial in trials:
        assert ("epochs" in trial.params) == (trial.params["y"] > 0)
        if "epochs" in trial.params:  # the job ran with it: one report per epoch
            assert len(trial.intermediate_values) == trial.params["epochs"]


def test_direction_must_match_the_stored_study_and_the_metric_mode(app_sweep) -> None:
    app_sweep("hydra.sweeper.n_trials=1")
    with pytest.raises(ValueError, match=r"study 'sphere' .* was created with directions \['minimize'\]"):
        app_sweep("hydra.sweeper.direction=maximize", "optimized_metric_mode=max")
    with pytest.raises(
        ValueError, match=r"hydra\.sweeper\.direction='maximize' disagrees with optimized_metric_mode='min'"
    ):
        app_sweep("hydra.sweeper.direction=maximize", "hydra.sweeper.study_name=new")


def _dead_workers_trial(storage_url: str, heartbeat: bool) -> None:
    """A worker that opened the sweep (2 trials), asked trial 0 and died: it stays RUNNING."""
    from hydra_plugins.neuropbr_optuna._rounds import SharedBudget
    from hydra_plugins.neuropbr_optuna._storage import StorageLock, TrialHeartbeat, open_storage

    storage = open_storage(storage_url, heartbeat_interval=1 if heartbeat else None, grace_period=1)
    study = optuna.create_study(study_name="sphere", storage=storage)
    dead = SharedBudget(storage, StorageLock(storage_url), "sphere", 2)
    dead.join()
    trials = dead.reserve(study, 1, {})
    if heartbeat:  # one beat, then the worker "dies"
        beat = TrialHeartbeat(storage, 1)
        beat.watch(trials)
        beat.stop()


def test_a_trial_still_running_after_final_wait_s_makes_the_results_provisional(
    app_sweep, tmp_path: Path
) -> None:
    """Without heartbeats a dead worker's trial stays RUNNING: the wait for it is bounded and
    the file says what it waited for."""
    _dead_workers_trial(sqlite_url(tmp_path / "optuna.db"), heartbeat=False)
    app_sweep(
        "hydra.sweeper.n_trials=2", "hydra.sweeper.heartbeat_interval=null", "hydra.sweeper.final_wait_s=1"
    )
    results = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")
    assert results.final is False and list(results.running_trials) == [0]
    assert "hydra.sweeper.final_wait_s=1 s" in results.note and "provisional" in results.note
    assert results.best_trial == 1 and results.trials == {"RUNNING": 1, "COMPLETE": 1}


def test_with_heartbeats_a_dead_workers_trial_is_failed_and_the_results_are_final(
    app_sweep, tmp_path: Path
) -> None:
    """With heartbeats the waiting worker fails the dead worker's trial once its beat is older
    than grace_period, and writes final results well before final_wait_s."""
    _dead_workers_trial(sqlite_url(tmp_path / "optuna.db"), heartbeat=True)
    app_sweep(
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=1",
        "hydra.sweeper.final_wait_s=120",
    )
    results = OmegaConf.load(tmp_path / "multirun" / "optimization_results.yaml")
    assert results.final is True and "running_trials" not in results
    assert results.trials == {"FAIL": 1, "COMPLETE": 1} and results.best_trial == 1
