"""Config errors name the key, its value and what was expected, before any data is touched.

Each bad config points ``data.root`` at a folder that does not exist: had the data module been
set up first, the error would be about the dataset, not the key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from neuropbr.config import config_dir, register_configs
from neuropbr.config_checks import ConfigValueError, check_train_config
from neuropbr.train import train

REPO = Path(__file__).resolve().parents[2]
TINY = ("encoder=tiny", "fusion=tiny", "decoder=tiny", "discriminator=tiny", "tracking=none")


@pytest.fixture
def folder_cfg(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_cfg("data=folder", f"data.root={tmp_path / 'absent'}", *TINY, *overrides)

    return make


def test_negative_learning_rate_fails_naming_the_key(folder_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigValueError, match=r"optimizer\.g_lr=-0\.001: expected a learning rate > 0"):
        train(folder_cfg("optimizer.g_lr=-1e-3", "data.resolution=64"))


def test_every_bad_value_is_listed_at_once(folder_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigValueError) as info:
        train(folder_cfg("optimizer.g_lr=-1", "optimizer.d_lr=0", "data.val_ratio=1.5"))
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "optimizer.g_lr=-1.0",
        "optimizer.d_lr=0.0",
        "data.val_ratio=1.5",
    ]


def test_resolution_the_encoder_cannot_take_names_data_resolution(
    folder_cfg: Callable[..., DictConfig],
) -> None:
    with pytest.raises(ConfigValueError) as info:
        train(folder_cfg("data.resolution=50"))  # the tiny U-Net's bottleneck is 8x smaller
    assert str(info.value).startswith("data.resolution=50: expected a multiple of 8")
    assert "(e.g. 48 or 56)" in str(info.value)


def test_resnet_stem_stride_changes_the_multiple(compose_cfg: Callable[..., DictConfig]) -> None:
    check_train_config(compose_cfg("encoder=resnet18", "encoder.stem_stride=1", "data.resolution=48"))
    with pytest.raises(ConfigValueError, match=r"data\.resolution=48: expected a multiple of 32"):
        check_train_config(compose_cfg("encoder=resnet18", "data.resolution=48"))


def test_missing_root_says_data_root(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigValueError, match=r"data\.root: missing; data=folder needs data\.root=DIR"):
        train(compose_cfg("data=folder", *TINY))


def test_trainer_keys_are_checked_before_the_data(folder_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ValueError, match=r"trainer\.max_epochs=0: expected >= 1"):
        train(folder_cfg("trainer.max_epochs=0", "data.resolution=64"))


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_preset_passes(preset: str) -> None:
    """No false alarms: each shipped preset (its encoder on the meta device) is accepted."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}"])
    GlobalHydra.instance().clear()
    check_train_config(cfg)
