"""The whole conf/ tree: every option of every group composes, the non-model groups build, and
bad overrides fail at compose time naming the key. Model groups are covered
in depth by tests/models/test_configs.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from neuropbr.build import build_datamodule, build_loss, instantiate
from neuropbr.config import config_dir
from neuropbr.training.schedules import EpochScheduler
from neuropbr.training.tracking import MlflowTracker, NullTracker

CONF = Path(config_dir())
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
CLI_CONFIGS = sorted(p.stem for p in CONF.glob("*.yaml"))


def test_every_group_of_design_section_8_exists() -> None:
    expected = {"data", "encoder", "fusion", "decoder", "discriminator", "loss", "optimizer", "scheduler",
                "trainer", "tracking", "experiment", "hparams_search", "paths"}  # fmt: skip
    assert expected <= set(GROUPS)
    names = {group: {o for g, o in OPTIONS if g == group} for group in GROUPS}
    assert {"synthetic", "folder"} <= names["data"]
    assert {
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "unet",
        "unet_stride",
        "timm",
        "tiny",
    } <= names["encoder"]
    assert {"vit", "mean", "max", "tiny"} <= names["fusion"]
    assert {"unet_heads", "tiny"} <= names["decoder"]
    assert {"simple", "configurable", "none", "tiny"} <= names["discriminator"]
    assert {"default", "normal_focused", "photographic", "l1_only", "rendering"} <= names["loss"]
    assert {"adam", "adamw"} <= names["optimizer"] and {"cosine", "step", "plateau", "none"} <= names[
        "scheduler"
    ]
    assert {"mlflow", "none"} <= names["tracking"]
    assert {"quick_test", "lightweight", "high_quality", "fast_iteration", "normal_focused"} <= names[
        "experiment"
    ]
    assert {"loss_weights", "learning_rates", "generalisation"} <= names["hparams_search"]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(compose_cfg: Callable[..., DictConfig], group: str, option: str) -> None:
    extra = ["data.root=/nonexistent"] if (group, option) == ("data", "folder") else []
    cfg = compose_cfg(f"{group}={option}", *extra)
    assert cfg.seed == 42 or group in ("experiment", "hparams_search")


@pytest.mark.parametrize("name", CLI_CONFIGS)
def test_every_cli_config_composes(compose_cfg: Callable[..., DictConfig], name: str) -> None:
    required = {"synth": ["out=/tmp/x"], "infer": ["checkpoint=x.pth", "views=[a.png]"],
                "evaluate": ["checkpoint=x.pth"], "export": ["checkpoint=x.pth"]}  # fmt: skip
    assert compose_cfg(*required.get(name, []), config_name=name) is not None


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "optimizer"))
def test_optimizers_build_for_generator_and_discriminator(
    compose_cfg: Callable[..., DictConfig], option: str
) -> None:
    cfg = compose_cfg(f"optimizer={option}")
    param = torch.nn.Parameter(torch.zeros(2))
    for node, lr in (
        (cfg.optimizer.generator, cfg.optimizer.g_lr),
        (cfg.optimizer.discriminator, cfg.optimizer.d_lr),
    ):
        optimizer = instantiate(node)([param], lr=lr)
        assert isinstance(optimizer, torch.optim.Optimizer) and optimizer.param_groups[0]["lr"] == lr


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "scheduler"))
def test_schedulers_build(compose_cfg: Callable[..., DictConfig], option: str) -> None:
    cfg = compose_cfg(f"scheduler={option}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = instantiate(cfg.scheduler)(optimizer, max_epochs=10, mode="min")
    assert isinstance(scheduler, EpochScheduler)
    scheduler.step(1.0)
    assert scheduler.epoch == 1


def test_tracking_options_build(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    assert isinstance(instantiate(compose_cfg("tracking=none").tracking), NullTracker)
    cfg = compose_cfg("tracking=mlflow", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    tracker = instantiate(cfg.tracking)
    assert isinstance(tracker, MlflowTracker) and tracker.uri.endswith("m.db")


@pytest.mark.parametrize("option", sorted(o for g, o in OPTIONS if g == "loss" and o != "photographic"))
def test_losses_build(compose_cfg: Callable[..., DictConfig], option: str) -> None:
    loss = build_loss(compose_cfg(f"loss={option}"))
    assert set(loss.weights) == {"l1", "mse", "ssim", "normal", "gan", "perceptual", "render", "light"}


def test_data_options_build(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    synthetic = build_datamodule(compose_cfg("data=synthetic", "data.num_samples=4"))
    assert synthetic.num_views == 3 and synthetic.map_resolution == synthetic.resolution
    folder = build_datamodule(compose_cfg("data=folder", f"data.root={tmp_path}", "decoder.sr_scale=2"))
    assert folder.map_resolution == 2 * folder.resolution


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("encoder.widht=3", "encoder.widht"),
        ("trainer.max_epoch=3", "trainer.max_epoch"),
        ("data.resolution=abc", "data.resolution"),
        ("data.renders=dirt", "data.renders"),
        ("trainer.precision=fp8", "trainer.precision"),
        ("optimizer.g_lr=fast", "optimizer.g_lr"),
        ("loss.gan_type=wgan", "loss.gan_type"),
        ("tracking.uri=[1,2]", "tracking.uri"),
        ("optimized_metric_mode=up", "optimized_metric_mode"),
        ("scheduler.warmup_steps=many", "scheduler.warmup_steps"),
    ],
)
def test_bad_overrides_fail_at_compose_time_naming_the_key(
    compose_cfg: Callable[..., DictConfig], override: str, names: str
) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg(override)
    message = str(info.value) + str(info.value.__cause__)
    assert names in message


def test_unknown_group_option_lists_the_choices(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(Exception, match=r"(?s)Could not find 'encoder/resnet999'.*resnet50"):
        compose_cfg("encoder=resnet999")


def test_presets_override_top_level_defaults(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("hparams_search=loss_weights")
    assert cfg.optimized_metric == "val/overall_psnr" and cfg.optimized_metric_mode.value == "max"
    assert compose_cfg().optimized_metric == "val/loss"


def test_the_generalisation_sweep_scores_held_out_families(compose_cfg: Callable[..., DictConfig]) -> None:
    # On top of experiment=cpu: the family split stays, skill over the baselines is maximised,
    # and every epoch is validated so that the pruner can compare trials from the second one.
    cfg = compose_cfg("experiment=cpu", "hparams_search=generalisation")
    assert cfg.optimized_metric == "val/skill_db" and cfg.optimized_metric_mode.value == "max"
    assert cfg.data.split.value == "family" and cfg.trainer.val_every_n_epochs == 1


@pytest.mark.parametrize(
    ("preset", "base"),
    [("loss_weights", ()), ("learning_rates", ()), ("generalisation", ("experiment=cpu",))],
)
def test_every_searched_parameter_is_a_config_key(
    compose_cfg: Callable[..., DictConfig], preset: str, base: tuple[str, ...]
) -> None:
    # A typo in a search space would otherwise surface only when the first trial starts.
    params = OmegaConf.load(Path(config_dir(), "hparams_search", f"{preset}.yaml")).hydra.sweeper.params
    cfg = compose_cfg(*base, f"hparams_search={preset}")
    missing = [key for key in params if OmegaConf.select(cfg, key) is None]
    assert params and not missing, f"hparams_search={preset} searches keys the config lacks: {missing}"
