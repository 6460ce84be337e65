"""What ``mlflow ui`` shows of tiny training runs, read back through ``MlflowClient``: distinct
names that say what each run is, one metric vocabulary for train and val, clean params, the
standard source tags and the user's tags, a logged model per run that loads and predicts,
labelled images at their steps, and a parent run over a plain grid multirun.

The runs go through the Hydra app in-process (``Hydra.run``), as ``python -m neuropbr.train``
runs them, so the config-group choices that name a run are the real ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra

from neuropbr.config import register_configs

REPO = Path(__file__).resolve().parents[1]
#: Two epochs of tiny models at 32 px on 4 samples: seconds each on a CPU.
SMALL = ["experiment=smoke", "trainer.max_epochs=2", "data.resolution=32", "data.num_samples=4"]


def hydra_app() -> Hydra:
    """The ``neuropbr.train`` Hydra app (config search path, schemas) without parsing sys.argv."""
    register_configs()
    return Hydra.create_main_hydra_file_or_module(
        calling_file=str(REPO / "neuropbr" / "train.py"),
        calling_module=None,
        config_path="../conf",
        job_name="train",
    )


def run_multirun(*overrides: str) -> Any:
    """One ``python -m neuropbr.train -m overrides`` in this process (Hydra's basic sweeper)."""
    from neuropbr.train import train

    try:
        return hydra_app().multirun(
            config_name="train",
            task_function=train,
            overrides=[*overrides, "hydra.mode=MULTIRUN"],  # what -m adds on the command line
            with_log_configuration=False,
        )
    finally:
        GlobalHydra.instance().clear()


def run_training(*overrides: str) -> Any:
    """One ``python -m neuropbr.train overrides`` in this process; returns its objective."""
    from neuropbr.train import train

    try:
        job = hydra_app().run(
            config_name="train", task_function=train, overrides=list(overrides), with_log_configuration=False
        )
    finally:
        GlobalHydra.instance().clear()
    return job.return_value


@dataclass
class ComparedRuns:
    uri: str
    runs: list[Any]  # mlflow.entities.Run: the two single runs, in the order trained
    parent: Any  # the grid multirun's parent run
    children: list[Any]  # its jobs, by job number
    client: Any


@pytest.fixture(scope="module")
def compared_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComparedRuns]:
    """Two runs of one seed and config (the first with user tags and an EMA), then a grid
    multirun over the loss (two jobs), all in one SQLite store."""
    from mlflow.tracking import MlflowClient

    directory = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    common = [*SMALL, "tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment_name=compare", "seed=7"]
    for index, extra in enumerate([["tags=[baseline,owner:ana]", "trainer.ema_decay=0.9"], []]):
        run_training(*common, *extra, f"hydra.run.dir={directory / f'run{index}'}")
    run_multirun(*common, "loss=default,l1_only", f"hydra.sweep.dir={directory / 'grid'}")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("compare").experiment_id
    runs = client.search_runs([experiment], order_by=["attributes.start_time ASC"])
    parents = [run for run in runs if "multirun" in run.info.run_name]
    (parent,) = parents
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    singles = [run for run in runs if run not in parents and run not in children]
    yield ComparedRuns(uri, singles, parent, sorted(children, key=lambda r: r.info.run_name), client)


def test_runs_of_one_seed_have_distinct_names_that_carry_the_config(compared_runs: ComparedRuns) -> None:
    names = [run.info.run_name for run in compared_runs.runs]
    assert len(names) == 2 and len(set(names)) == 2, names
    # <experiment>-<encoder>-<loss>-<date>-<time>, made unique when two start in the same second.
    assert all(re.fullmatch(r"smoke-tiny-default-\d{8}-\d{6}(-2)?", name) for name in names), names
    assert all(run.info.status == "FINISHED" for run in compared_runs.runs)


def test_a_grid_multirun_nests_its_jobs_under_a_parent(compared_runs: ComparedRuns) -> None:
    parent = compared_runs.parent
    assert re.fullmatch(r"smoke-multirun-\d{8}-\d{6}", parent.info.run_name)
    assert parent.info.status == "FINISHED" and parent.data.params == {"loss": "default,l1_only"}
    assert "loss=default,l1_only" in parent.data.tags["multirun_overrides"]
    # Children: named by job number and the value tried.
    assert [run.info.run_name for run in compared_runs.children] == ["job0-loss=default", "job1-loss=l1_only"]
    assert [run.data.params["choices.loss"] for run in compared_runs.children] == ["default", "l1_only"]


def test_train_and_val_share_metric_keys(compared_runs: ComparedRuns) -> None:
    for run in [*compared_runs.runs, *compared_runs.children]:
        metrics = set(run.data.metrics)
        for key in ("albedo_mae", "albedo_rmse", "roughness_mae", "normal_rmse", "normal_angle_mean"):
            assert {f"train/{key}", f"val/{key}"} <= metrics, key
        assert not any(k.startswith(("train/mae_", "train/rmse_")) for k in metrics)


def test_params_are_settings_and_choices(compared_runs: ComparedRuns) -> None:
    params = compared_runs.children[1].data.params
    assert not [key for key in params if "_target_" in key or "_partial_" in key]
    assert params["choices.encoder"] == "tiny" and params["choices.loss"] == "l1_only"
    assert params["choices.experiment"] == "smoke" and params["seed"] == "7"
    assert params["optimizer.generator.betas"] == "[0.5, 0.999]"


def test_source_overrides_and_user_tags(compared_runs: ComparedRuns) -> None:
    tagged, plain = compared_runs.runs[0].data.tags, compared_runs.runs[1].data.tags
    assert len(tagged["mlflow.source.git.commit"]) == 40  # the tests run from the source checkout
    assert tagged["mlflow.source.name"] == "neuropbr/train.py" and tagged["mlflow.user"]
    assert "tags=[baseline,owner:ana]" in tagged["overrides"] and "seed=7" in tagged["overrides"]
    assert tagged["baseline"] == "true" and tagged["owner"] == "ana"
    assert "baseline" not in plain and "owner" not in plain
    found = compared_runs.client.search_runs(
        [compared_runs.runs[0].info.experiment_id], filter_string="tags.owner = 'ana'"
    )
    assert [run.info.run_id for run in found] == [compared_runs.runs[0].info.run_id]


def test_every_run_logs_a_model_that_loads_and_predicts(compared_runs: ComparedRuns) -> None:
    import mlflow
    import torch
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from neuropbr.maps import PBR_CHANNELS, PBR_MAPS

    for run in [*compared_runs.runs, *compared_runs.children]:
        with _use_tracking_uri(compared_runs.uri):
            module = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
        with torch.no_grad():
            maps = module(torch.rand(2, 3, 3, 32, 32))
        assert {name: tuple(value.shape) for name, value in maps.items()} == {
            name: (2, PBR_CHANNELS[name], 32, 32) for name in PBR_MAPS
        }
        for name in ("albedo", "roughness", "metallic"):
            assert 0 <= maps[name].min() and maps[name].max() <= 1
        assert torch.allclose(maps["normal"].norm(dim=1), torch.ones(1), atol=1e-4)
    # The run with an EMA logged the EMA weights; every logged model records its step.
    logged = compared_runs.client.search_logged_models(
        experiment_ids=[compared_runs.runs[0].info.experiment_id],
        filter_string=f"source_run_id = '{compared_runs.runs[0].info.run_id}'",
    )
    assert {model.name for model in logged} <= {"model", "last_model"} and "model" in {m.name for m in logged}


def test_images_are_labelled_and_stepped(compared_runs: ComparedRuns) -> None:
    run = compared_runs.runs[0]
    files = [a.path for a in compared_runs.client.list_artifacts(run.info.run_id, "images")]
    steps = {
        key: sorted({int(re.search(r"\+step\+(\d+)\+", f).group(1)) for f in files if f"/{key}+step+" in f})
        for key in ("val~input_views", "val~comparison", "val~error_heatmaps")
    }
    # Two epochs, images after each: two steps per grid, the image slider's positions.
    assert all(len(found) == 2 for found in steps.values()), files
