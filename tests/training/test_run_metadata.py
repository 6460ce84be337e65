"""Run names, params and tags of MLflow runs (pure functions; the runs themselves are in
tests/test_mlflow_compare.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from neuropbr.training.run_metadata import (
    child_run_name,
    config_params,
    default_run_name,
    source_tags,
    swept_values,
    user_tags,
)

NOON = dt.datetime(2026, 12, 4, 12, 30, 5)


def test_default_name_is_experiment_encoder_loss_and_time() -> None:
    choices = {"experiment": "quick_test", "encoder": "resnet18", "loss": "normal_focused"}
    assert (
        default_run_name("train", choices, {}, NOON) == "quick_test-resnet18-normal_focused-20261204-123005"
    )
    # No preset: the task; encoder=timm: the backbone's name.
    timm = {"encoder": "timm", "loss": "default", "experiment": None}
    assert default_run_name("train", timm, {"name": "convnext_tiny"}, NOON) == (
        "train-convnext_tiny-default-20261204-123005"
    )
    # Outside a Hydra app: the encoder from its node, no loss choice to name.
    unet = {"_target_": "neuropbr.models.encoders.unet.UNetEncoder"}
    assert default_run_name("train", {}, unet, NOON) == "train-unet-20261204-123005"


def test_child_names_carry_the_number_and_values_tried() -> None:
    values = swept_values(
        ["optimizer.g_lr=1e-3,1e-4", "experiment=smoke", "loss=default,normal_focused"],
        ["optimizer.g_lr=0.0001", "experiment=smoke", "loss=normal_focused"],
    )
    assert values == {"optimizer.g_lr": "0.0001", "loss": "normal_focused"}  # experiment is not swept
    assert child_run_name("job", 3, values) == "job3-optimizer.g_lr=0.0001-loss=normal_focused"
    assert child_run_name("trial", 0, {}) == "trial0"
    sampled = {
        "loss.weights.l1": "0.20513382630874505",
        "optimizer.g_lr": "1.2345678e-05",
        "encoder": "resnet18",
    }
    assert child_run_name("trial", 7, sampled) == (
        "trial7-loss.weights.l1=0.2051-optimizer.g_lr=1.235e-05-encoder=resnet18"
    )
    assert child_run_name("job", 2, {"seed": "3", "data.num_views": "4"}) == "job2-seed=3-data.num_views=4"
    assert len(child_run_name("job", 1, {"k": "x" * 1000})) == 250


def test_params_drop_builder_entries_and_add_choices() -> None:
    config = {
        "encoder": {"_target_": "neuropbr.models.encoders.unet.UNetEncoder", "channels": [8, 16]},
        "optimizer": {
            "g_lr": 1e-3,
            "generator": {"_target_": "torch.optim.AdamW", "_partial_": True, "eps": 1e-8},
        },
        "discriminator": {"_target_": None},
        "loss": {"weights": {}},
    }
    params = config_params(config, {"encoder": "unet", "discriminator": "none", "hydra/launcher": "basic"})
    assert params == {
        "encoder": {"channels": [8, 16]},
        "optimizer": {"g_lr": 1e-3, "generator": {"eps": 1e-8}},
        "loss": {"weights": {}},  # an empty setting stays
        "choices": {"encoder": "unet", "discriminator": "none"},  # Hydra's own groups left out
    }


def test_user_tags() -> None:
    assert user_tags([]) == {}
    assert user_tags(["baseline", "owner:ana", "data: v2"]) == {
        "baseline": "true",
        "owner": "ana",
        "data": "v2",
        "tags": "baseline,owner:ana,data: v2",
    }


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([""], r"tags\[0\]=''"),
        (["ok", "bad*key"], r"tags\[1\]='bad\*key'"),
        (["mlflow.user:me"], r"tags\[0\]='mlflow.user:me'.*MLflow's own"),
        (["a", "a:b"], r"tags\[1\]='a:b': the tag 'a' is given twice"),
    ],
)
def test_bad_user_tags_name_the_entry(tags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        user_tags(tags)


def test_source_tags_of_the_checkout() -> None:
    tags = source_tags()
    assert tags["mlflow.source.name"] == "neuropbr/train.py" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and tags["neuropbr_version"]
    assert len(tags["mlflow.source.git.commit"]) == 40  # the tests run from the source checkout
    assert tags["git_dirty"] in ("true", "false")
