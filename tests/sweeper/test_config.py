"""Sweeper configuration: presets, names, errors that name the key (fast, no sweep runs)."""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

from hydra_plugins.neuropbr_optuna import register_plugin
from hydra_plugins.neuropbr_optuna._factories import (
    build_pruner,
    build_sampler,
    directions,
    pruner_spec,
    sampler_spec,
)
from hydra_plugins.neuropbr_optuna._impl import OptunaSweeperImpl
from hydra_plugins.neuropbr_optuna._storage import absolute_storage_url, redact
from hydra_plugins.neuropbr_optuna.config import PRUNERS, SAMPLERS

from .conftest import APP_FILE, REPO


@pytest.fixture
def compose_app(hydra_restore_singletons: None):
    register_plugin()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(APP_FILE.parent / "conf"), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()


def _sample(sampler: optuna.samplers.BaseSampler) -> float:
    return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0.0, 1.0)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
        ("nsgaii", optuna.samplers.NSGAIISampler),
    ],
)
def test_sampler_names_build_their_class(name: str, cls: type) -> None:
    assert type(build_sampler(sampler_spec(name))) is cls


def test_grid_sampler_gets_the_search_space() -> None:
    sampler = build_sampler(sampler_spec("grid"), grid={"x": [1, 2]})
    assert isinstance(sampler, optuna.samplers.GridSampler)
    with pytest.raises(ValueError, match="sampler=grid needs a search space"):
        build_sampler(sampler_spec("grid"))


def test_seed_offset_separates_workers_and_keeps_worker_zero_reproducible() -> None:
    spec = {"_target_": "optuna.samplers.RandomSampler", "seed": 3}
    first, again, second = (_sample(build_sampler(spec, offset)) for offset in (0, 0, 1))
    assert first == again == _sample(optuna.samplers.RandomSampler(seed=3))
    assert second == _sample(optuna.samplers.RandomSampler(seed=4)) != first


def test_unknown_sampler_and_pruner_names_list_the_valid_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"hydra.sweeper.sampler='bayes'; choose one of \['cmaes', 'grid', 'nsgaii', 'random', 'tpe'\]",
    ):
        sampler_spec("bayes")
    with pytest.raises(
        ValueError, match=r"hydra.sweeper.pruner='early'; choose one of \['hyperband', 'median', 'none'\]"
    ):
        pruner_spec("early")


def test_targets_must_be_optuna_samplers_and_pruners() -> None:
    with pytest.raises(
        ValueError,
        match=r"hydra.sweeper.sampler._target_='optuna.pruners.MedianPruner': expected a subclass of optuna.samplers",
    ):
        sampler_spec({"_target_": "optuna.pruners.MedianPruner"})
    with pytest.raises(
        ValueError, match=r"hydra.sweeper.pruner._target_='optuna.nothing.Here' cannot be imported"
    ):
        pruner_spec({"_target_": "optuna.nothing.Here"})
    with pytest.raises(
        ValueError,
        match=r"hydra.sweeper.pruner: optuna.pruners.MedianPruner\(\{'n_startup_trials': -1\}\) failed",
    ):
        pruner_spec({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": -1})


def test_pruner_names_and_null() -> None:
    assert type(build_pruner(pruner_spec("median"))) is optuna.pruners.MedianPruner
    assert type(build_pruner(pruner_spec("hyperband"))) is optuna.pruners.HyperbandPruner
    assert type(build_pruner(pruner_spec(None))) is optuna.pruners.NopPruner


def test_cmaes_without_its_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cmaes", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install cmaes"):
        build_sampler(sampler_spec("cmaes"))


def test_directions() -> None:
    assert directions("minimize") == ["minimize"]
    assert directions(["minimize", "maximize"]) == ["minimize", "maximize"]
    for bad in ("min", ["minimize", "up"], []):
        with pytest.raises(ValueError, match=r"hydra.sweeper.direction=.*: expected minimize or maximize"):
            directions(bad)


@pytest.mark.parametrize("presets", [SAMPLERS, PRUNERS])
def test_preset_fields_are_arguments_of_their_class(presets: dict[str, type]) -> None:
    for name, preset in presets.items():
        target = preset()._target_
        module, _, cls_name = target.rpartition(".")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        accepted = set(inspect.signature(cls.__init__).parameters)
        fields = {f.name for f in dataclasses.fields(preset)} - {"_target_"}
        if "kwargs" not in accepted:
            assert fields <= accepted, f"{name}: {sorted(fields - accepted)} are not arguments of {target}"


def _sweeper(**changes):
    args = dict(
        sampler="tpe",
        pruner="none",
        direction="minimize",
        storage="sqlite:///optuna.db",
        study_name="s",
        n_trials=2,
        n_jobs=1,
        max_failure_rate=0.0,
        params=None,
        custom_search_space=None,
    )
    return OptunaSweeperImpl(**{**args, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_trials": 0}, r"hydra.sweeper.n_trials=0: expected an integer >= 1"),
        ({"n_jobs": 0}, r"hydra.sweeper.n_jobs=0: expected an integer >= 1"),
        ({"max_failure_rate": 1.5}, r"hydra.sweeper.max_failure_rate=1.5: expected a value in \[0, 1\]"),
        ({"storage": ""}, r"hydra.sweeper.storage is empty: expected an RDB URL"),
        ({"storage": "sqlite://"}, r"in-memory SQLite database cannot be shared"),
        ({"storage": "not a url"}, r"hydra.sweeper.storage='not a url' is not a SQLAlchemy URL"),
        ({"direction": "up"}, r"hydra.sweeper.direction='up'"),
        ({"heartbeat_interval": 0}, r"hydra.sweeper.heartbeat_interval=0: expected null or an integer >= 1"),
        ({"grace_period": -5}, r"hydra.sweeper.grace_period=-5: expected null or an integer >= 1"),
        (
            {"heartbeat_interval": None, "grace_period": 30},
            r"grace_period is set but heartbeat_interval=null",
        ),
    ],
)
def test_sweeper_arguments_are_checked_at_build_time(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _sweeper(**changes)


def test_relative_sqlite_paths_become_absolute_and_passwords_are_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_storage_url("sqlite:///optuna.db") == f"sqlite:///{tmp_path / 'optuna.db'}"
    url = "postgresql+psycopg2://alice:secret@db.example:5432/optuna"
    assert absolute_storage_url(url) == url
    assert "secret" not in redact(url) and "alice" in redact(url)


def test_unknown_group_option_lists_the_available_ones(compose_app) -> None:
    with pytest.raises(
        ConfigCompositionException, match=r"(?s)hydra/sweeper/sampler.*cmaes.*grid.*nsgaii.*random.*tpe"
    ):
        compose_app("hydra/sweeper/sampler=bayes")


def test_sampler_and_pruner_by_group_or_by_name(compose_app) -> None:
    cfg = compose_app(
        "hydra/sweeper/sampler=random",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
    )
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert cfg.hydra.sweeper.sampler.seed == 0  # the app's config still applies on top of the preset
    assert build_pruner(pruner_spec(dict(cfg.hydra.sweeper.pruner))).__class__ is optuna.pruners.MedianPruner
    cfg = compose_app("hydra.sweeper.sampler=random")
    assert type(build_sampler(sampler_spec(cfg.hydra.sweeper.sampler))) is optuna.samplers.RandomSampler


def test_typos_in_sweeper_keys_fail_at_compose_time(compose_app) -> None:
    with pytest.raises(ConfigCompositionException, match="n_trails"):
        compose_app("hydra.sweeper.n_trails=3")
    with pytest.raises(ConfigCompositionException, match="n_startup"):
        compose_app("hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup=3")


def test_plugin_package_layout() -> None:
    # hydra_plugins/ is a namespace shared with every other Hydra plugin: no __init__.py there.
    assert not (REPO / "hydra_plugins" / "__init__.py").exists()
    assert (REPO / "hydra_plugins" / "neuropbr_optuna" / "__init__.py").is_file()
