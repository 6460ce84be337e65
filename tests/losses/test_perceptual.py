"""Perceptual loss: local weights only, clear offline error, frozen VGG16, zero for identical maps."""

from __future__ import annotations

import os

import pytest
import torch

from neuropbr.losses.composite import build_loss
from neuropbr.losses.perceptual import VGG16_CACHE_NAME, PerceptualLoss


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A torch hub cache without VGG16 weights (what an offline machine has)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.mark.parametrize("file_name", ["features.pth", "full.pth"])
def test_loads_features_or_full_state_dict(vgg_weights_dir, make_maps, file_name):
    loss = PerceptualLoss(maps=("albedo", "roughness", "normal"), weights_path=vgg_weights_dir / file_name)
    pred, target = make_maps(1, 32), make_maps(1, 32)
    assert loss(pred, pred).item() == 0.0
    assert loss(pred, target).item() > 0.0


def test_frozen_eval_and_gradient_reaches_only_the_prediction(vgg_weights_dir, make_maps):
    loss = PerceptualLoss(weights_path=vgg_weights_dir / "features.pth")
    assert not loss.extractor.features.training
    assert all(not p.requires_grad for p in loss.parameters())
    pred, target = make_maps(1, 16), make_maps(1, 16)
    pred["albedo"].requires_grad_()
    loss(pred, target).backward()
    assert pred["albedo"].grad is not None and pred["albedo"].grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_offline_without_file_names_the_key_and_the_fix(empty_torch_home):
    with pytest.raises(FileNotFoundError, match=r"loss\.perceptual_weights") as error:
        PerceptualLoss()
    assert "vgg16(weights='IMAGENET1K_V1').features.state_dict()" in str(error.value)
    assert str(empty_torch_home) in str(error.value)  # says where it looked


def test_uses_torchvision_cache_when_no_file_is_given(vgg_weights_dir, empty_torch_home):
    cache = empty_torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    os.symlink(vgg_weights_dir / "full.pth", cache / VGG16_CACHE_NAME)
    assert isinstance(PerceptualLoss().extractor.features, torch.nn.Sequential)


def test_missing_file_and_wrong_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"loss.perceptual_weights='.*nope.pth': no such file"):
        PerceptualLoss(weights_path=tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"is not a VGG16 state dict: missing \['0.bias', '0.weight'"):
        PerceptualLoss(weights_path=tmp_path / "other.pth")


def test_bad_maps():
    with pytest.raises(ValueError, match=r"loss.perceptual_maps: unknown map\(s\) \['rgb'\]"):
        PerceptualLoss(maps=("rgb",))


def test_off_never_loads_vgg(empty_torch_home):
    loss = build_loss(weights={"l1": 1.0, "perceptual": 0.0}, perceptual_weights="/does/not/exist.pth")
    assert "perceptual" not in loss.terms


def test_bf16_autocast_gives_float32_finite_value(vgg_weights_dir, make_maps):
    loss = PerceptualLoss(weights_path=vgg_weights_dir / "features.pth")
    pred, target = make_maps(1, 8), make_maps(1, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss({k: v.bfloat16() for k, v in pred.items()}, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
