"""The trainer-side pruning hook against a real SQLite study, and train.py's wiring of it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from omegaconf import open_dict

from hydra_plugins.neuropbr_optuna._factories import PRUNER_ATTR
from hydra_plugins.neuropbr_optuna._storage import open_storage
from hydra_plugins.neuropbr_optuna.pruning import OptunaPruningHook

from .conftest import sqlite_url

MEDIAN = {
    "_target_": "optuna.pruners.MedianPruner",
    "n_startup_trials": 1,
    "n_warmup_steps": 0,
    "interval_steps": 1,
    "n_min_trials": 1,
}


def _study(tmp_path: Path, directions: list[str] | None = None) -> tuple[str, optuna.Study]:
    storage = sqlite_url(tmp_path / "optuna.db")
    study = optuna.create_study(
        study_name="s", storage=open_storage(storage), directions=directions or ["minimize"]
    )
    return storage, study


def _running_trial(study: optuna.Study, pruner: dict | None = MEDIAN) -> optuna.Trial:
    """A trial as the sweeper leaves it before launching its job."""
    trial = study.ask()
    if pruner is not None:
        trial.set_user_attr(PRUNER_ATTR, pruner)
    return trial


def test_hook_reports_each_validation_and_prunes_a_worse_trial(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    reference = _running_trial(study)
    for epoch, loss in enumerate([1.0, 0.8, 0.6]):
        reference.report(loss, epoch)
    study.tell(reference, 0.6)

    better = OptunaPruningHook(storage, "s", _running_trial(study).number, "val/loss")
    assert better(0, {"val/loss": 0.9, "val/psnr": 20.0}) is False
    assert better(1, {"val/loss": 0.7}) is False
    worse = OptunaPruningHook(storage, "s", _running_trial(study).number, "val/loss")
    assert worse(0, {"val/loss": 5.0}) is True
    stored = {t.number: t.intermediate_values for t in study.get_trials()}
    assert stored[1] == {0: 0.9, 1: 0.7} and stored[2] == {0: 5.0}


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # optuna's median of [NaN]
def test_diverged_metrics_are_pruned(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    reference = _running_trial(study)
    reference.report(1.0, 0)
    study.tell(reference, 1.0)
    for value in (float("nan"), float("inf")):
        assert (
            OptunaPruningHook(storage, "s", _running_trial(study).number, "val/loss")(0, {"val/loss": value})
            is True
        )


def test_without_a_pruner_spec_or_with_none_it_never_prunes(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    reference = _running_trial(study)
    reference.report(1.0, 0)
    study.tell(reference, 1.0)
    for spec in (None, {"_target_": "optuna.pruners.NopPruner"}):
        assert (
            OptunaPruningHook(storage, "s", _running_trial(study, spec).number, "val/loss")(
                0, {"val/loss": 99.0}
            )
            is False
        )


def test_multi_objective_studies_are_not_pruned(tmp_path: Path) -> None:
    storage, study = _study(tmp_path, ["minimize", "minimize"])
    assert (
        OptunaPruningHook(storage, "s", _running_trial(study).number, "val/loss")(0, {"val/loss": 1.0})
        is False
    )


def test_errors_name_the_key(tmp_path: Path) -> None:
    storage, study = _study(tmp_path)
    trial = _running_trial(study)
    hook = OptunaPruningHook(storage, "s", trial.number, "val/loss")
    with pytest.raises(
        KeyError, match=r"optimized_metric='val/loss' is not among the validation metrics: \['val/psnr'\]"
    ):
        hook(0, {"val/psnr": 1.0})
    with pytest.raises(ValueError, match=r"sweep.study_name='nope', sweep.trial_number=0: no such trial"):
        OptunaPruningHook(storage, "nope", 0, "val/loss")
    with pytest.raises(ValueError, match=r"sweep.study_name='s', sweep.trial_number=7: no such trial"):
        OptunaPruningHook(storage, "s", 7, "val/loss")
    study.tell(trial, 1.0)
    with pytest.raises(
        ValueError, match=r"sweep.trial_number=0: trial of study 's' is COMPLETE, expected RUNNING"
    ):
        OptunaPruningHook(storage, "s", trial.number, "val/loss")


def test_the_builder_makes_the_hook_only_for_sweep_trials(tiny_cfg, tmp_path: Path) -> None:
    from neuropbr.build import build_pruning_hook

    assert build_pruning_hook(tiny_cfg) is None
    storage, study = _study(tmp_path)
    trial = _running_trial(study)
    with open_dict(tiny_cfg):
        tiny_cfg.sweep.storage, tiny_cfg.sweep.study_name, tiny_cfg.sweep.trial_number = (
            storage,
            "s",
            trial.number,
        )
    hook = build_pruning_hook(tiny_cfg)
    assert isinstance(hook, OptunaPruningHook) and hook.metric == tiny_cfg.optimized_metric
