"""The guide's presets train: every ``experiment=`` at tiny size (fast), the small ones with their
real models for a step (slow), and the issue's 5-view ResNet50 command (slow)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from neuropbr.config import config_dir
from neuropbr.train import train

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
TINY_DATA = ["data.resolution=32", "data.num_samples=4", "data.num_workers=0", "data.batch_size=2"]
ONE_STEP = ["trainer.max_epochs=1", "trainer.max_steps=1", "trainer.device=cpu", "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def vgg_features_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init VGG16 features, so presets with the perceptual term run offline."""
    from torchvision.models.vgg import cfgs, make_layers

    path = tmp_path_factory.mktemp("vgg") / "vgg16_features.pth"
    torch.save(make_layers(cfgs["D"]).state_dict(), path)
    return path


# The guide's preset table: encoder, ViT depth, epochs, GAN, loss emphasis.
GUIDE_PRESETS = {
    None: ("resnet50", 4, 100, True, "default"),
    "quick_test": ("resnet18", 2, 10, True, "default"),
    "lightweight": ("resnet50", 4, 100, False, "default"),
    "high_quality": ("resnet101", 6, 200, True, "photographic"),
    "fast_iteration": ("resnet18", 2, 50, True, "default"),
    "normal_focused": ("resnet50", 4, 150, True, "normal_focused"),
}
LOSS_WEIGHTS = {  # the loss preset each emphasis stands for (normal weight, albedo map weight)
    "default": (0.5, 1.0), "photographic": (0.5, 1.5), "normal_focused": (1.0, 0.8),
}  # fmt: skip


@pytest.mark.parametrize("experiment", list(GUIDE_PRESETS), ids=lambda e: e or "default")
def test_presets_match_the_guides_table(
    compose_cfg: Callable[..., DictConfig], experiment: str | None
) -> None:
    encoder, depth, epochs, gan, loss = GUIDE_PRESETS[experiment]
    cfg = compose_cfg(*([f"experiment={experiment}"] if experiment else []))
    assert cfg.encoder.name == encoder and cfg.fusion.depth == depth and cfg.trainer.max_epochs == epochs
    assert (cfg.discriminator.get("_target_") is not None) == gan
    assert (cfg.loss.weights.normal, cfg.loss.map_weights.albedo) == LOSS_WEIGHTS[loss]
    if experiment == "high_quality":
        assert cfg.loss.weights.perceptual > 0  # "ResNet101 + perceptual loss"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_trains_at_tiny_size(
    compose_cfg: Callable[..., DictConfig], vgg_features_file: Path, experiment: str
) -> None:
    preset = compose_cfg(f"experiment={experiment}")
    # Tiny slots, and tiny widths too: a preset's own values (e.g. fusion.dim) merge over them.
    slots = ["encoder=tiny", "fusion=tiny", "decoder=tiny", "fusion.dim=32", "fusion.depth=1",
             "fusion.num_heads=2", "decoder.channels=[16,16,8,8,8]", "decoder.sr_channels=8"]  # fmt: skip
    if preset.discriminator.get("_target_") is not None:  # keep `none` where the preset has no GAN
        slots.append("discriminator=tiny")
    cfg = compose_cfg(
        f"experiment={experiment}", "tracking=none", *slots, *TINY_DATA, *ONE_STEP,
        f"loss.perceptual_weights={vgg_features_file}", "trainer.gan_start_epoch=0",
    )  # fmt: skip
    assert cfg.loss.weights == preset.loss.weights  # the preset's loss emphasis is what trains
    assert torch.isfinite(torch.tensor(train(cfg)))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["quick_test", "fast_iteration"])
def test_small_presets_train_with_their_real_models(
    compose_cfg: Callable[..., DictConfig], experiment: str
) -> None:
    cfg = compose_cfg(
        f"experiment={experiment}", "tracking=none", *TINY_DATA, *ONE_STEP, "data.resolution=64"
    )
    assert torch.isfinite(torch.tensor(train(cfg)))


@pytest.mark.slow
def test_cpu_preset_trains_on_its_family_split_and_returns_the_skill(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    # 60 samples hold every family at this seed, so the preset's four held-out families exist.
    cfg = compose_cfg(
        "experiment=cpu", "tracking=none", "data.resolution=32", "data.num_samples=60", "data.cache=false",
        "data.num_workers=0", "data.batch_size=4", *ONE_STEP[:2], "trainer.progress_bar=false",
    )  # fmt: skip
    assert cfg.optimized_metric == "val/skill_db" and cfg.data.split == "family"
    skill = train(cfg)
    assert math.isfinite(skill) and -30.0 < skill < 30.0  # dB over the constant / flat baselines


@pytest.mark.slow
def test_the_issues_five_view_resnet50_command(compose_cfg: Callable[..., DictConfig]) -> None:
    # python -m neuropbr.train data=synthetic data.resolution=64 encoder=resnet50 fusion=vit
    #   data.num_views=5 discriminator=configurable discriminator.n_layers=5 trainer.max_steps=2 tracking=none
    cfg = compose_cfg(
        "data=synthetic", "data.resolution=64", "encoder=resnet50", "fusion=vit", "data.num_views=5",
        "discriminator=configurable", "discriminator.n_layers=5", "trainer.max_steps=2", "tracking=none",
        "data.num_samples=6", "data.num_workers=0", "trainer.gan_start_epoch=0",
    )  # fmt: skip
    assert torch.isfinite(torch.tensor(train(cfg)))


def test_a_diverged_run_fails_loudly(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        "experiment=smoke", "tracking=none", *TINY_DATA, "trainer.max_epochs=1", "discriminator=none",
        "optimizer.g_lr=1e30", "trainer.grad_clip_norm=null", "loss=l1_only",
    )  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"optimized_metric='val/loss' is (nan|inf)"):
        train(cfg)
