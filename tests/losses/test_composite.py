"""Composite loss: named terms, weights, the GAN term, validation, and every conf/loss preset."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException

from neuropbr.build import build_loss as build_loss_from_cfg
from neuropbr.config import LossConfig, config_dir
from neuropbr.losses.composite import DEFAULT_WEIGHTS, TERM_NAMES, CompositeLoss, build_loss
from neuropbr.losses.reconstruction import WeightedL1Loss

L1_DIAGNOSTICS = {"l1_albedo", "l1_roughness", "l1_metallic", "l1_normal"}
LOSS_PRESETS = sorted(path.stem for path in Path(config_dir(), "loss").glob("*.yaml"))


def test_default_terms_names_and_weighted_total(make_maps):
    loss = build_loss()
    assert loss.weights == DEFAULT_WEIGHTS and loss.uses_gan
    pred, target = make_maps(size=16), make_maps(size=16)
    total, values = loss(pred, target, fake_logits=torch.randn(2, 1, 2, 2))
    assert set(values) == {"l1", "ssim", "normal", "gan"} | L1_DIAGNOSTICS
    expected = sum(DEFAULT_WEIGHTS[name] * values[name] for name in ("l1", "ssim", "normal", "gan"))
    assert torch.allclose(total, expected)
    # the L1 term is the map-weighted sum of its diagnostics, which are not added again
    assert torch.allclose(values["l1"], sum(values[key] for key in L1_DIAGNOSTICS))


def test_weights_are_applied(make_maps):
    pred, target = make_maps(), make_maps()
    weights = {"l1": 2.0, "normal": 0.25, "render": 3.0}
    loss = build_loss(weights=weights, map_weights={"albedo": 1.5, "normal": 2.0}, render_num_configs=2)
    loss.eval()  # fixed rendering configurations, so the two calls below see the same loss
    total, values = loss(pred, target)
    assert set(values) == {"l1", "normal", "render"} | L1_DIAGNOSTICS  # zero-weight terms absent
    assert torch.allclose(total, sum(w * values[name] for name, w in weights.items()))
    l1_expected = (
        1.5 * values["l1_albedo"] + values["l1_roughness"] + values["l1_metallic"] + 2.0 * values["l1_normal"]
    )
    assert torch.allclose(values["l1"], l1_expected)
    doubled = build_loss(
        weights={k: 2 * w for k, w in weights.items()},
        map_weights={"albedo": 1.5, "normal": 2.0},
        render_num_configs=2,
    ).eval()
    assert torch.allclose(doubled(pred, target)[0], 2 * total)


def test_identical_maps_give_zero(make_maps):
    pred = make_maps(size=16)
    loss = build_loss(weights={"l1": 1.0, "ssim": 0.3, "normal": 0.5, "render": 0.5}, render_num_configs=2)
    total, values = loss(pred, pred)
    assert 0 <= total.item() < 1e-4 and all(0 <= v.item() < 1e-4 for v in values.values())


def test_gan_term_only_with_logits_and_weight(make_maps):
    pred, target = make_maps(), make_maps()
    loss = build_loss(weights={"l1": 1.0, "gan": 0.1}, gan_type="lsgan")
    total, values = loss(pred, target)
    assert "gan" not in values and torch.allclose(total, values["l1"])
    fake = torch.full((2, 1, 2, 2), -1.0)
    total, values = loss(pred, target, fake_logits=fake)
    assert values["gan"].item() == pytest.approx(0.5 * 4.0)  # lsgan: 0.5 * (fake - 1)^2
    assert torch.allclose(total, values["l1"] + 0.1 * values["gan"])
    no_gan = build_loss(weights={"l1": 1.0, "gan": 0.0})
    assert not no_gan.uses_gan and "gan" not in no_gan(pred, target, fake_logits=fake)[1]


@pytest.mark.parametrize("gan_type", ["hinge", "bce", "lsgan"])
def test_discriminator_loss_follows_gan_type(gan_type):
    real, fake = torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2)
    loss = build_loss(gan_type=gan_type)
    expected = {
        "hinge": 0.0,
        "bce": 2 * torch.nn.functional.softplus(torch.tensor(-1.0)).item(),
        "lsgan": 0.5,
    }
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(expected[gan_type], abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"weights": {"l1": 1.0, "sssim": 0.3}},
            r"loss.weights: unknown term\(s\) \['sssim'\]; valid terms: \['l1', 'mse', 'ssim'",
        ),
        ({"weights": {"l1": 1.0, "ssim": -0.1}}, "loss.weights.ssim must be >= 0, got -0.1"),
        ({"weights": {"l1": 0.0, "gan": 1.0}}, "every reconstruction term is 0"),
        ({"map_weights": {"normals": 1.0}}, r"loss.map_weights: unknown map\(s\) \['normals'\]"),
        ({"weights": {"l1": 0.0, "normal": 1.0}, "map_weights": {"normals": 1.0}}, "loss.map_weights"),
        ({"gan_type": "wgan"}, "loss.gan_type='wgan'"),
        (
            {"weights": {"mse": 1.0}, "mse_maps": ["metalness"]},
            r"loss.mse_maps: unknown map\(s\) \['metalness'\]",
        ),
        ({"weights": {"mse": 1.0}, "mse_maps": []}, "loss.mse_maps is empty"),
    ],
)
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_loss(**kwargs)


def test_composite_needs_a_module_for_each_weighted_term():
    with pytest.raises(ValueError, match=r"\['ssim'\] weight > 0 but no module"):
        CompositeLoss({"l1": WeightedL1Loss()}, {"l1": 1.0, "ssim": 0.3})
    with pytest.raises(ValueError, match=r"invalid name\(s\) \['gan'\]"):
        CompositeLoss({"l1": WeightedL1Loss(), "gan": WeightedL1Loss()}, {"l1": 1.0})


def test_every_term_float32_finite_under_bf16_autocast(make_maps, vgg_weights_dir):
    weights = dict.fromkeys(TERM_NAMES, 0.5)
    loss = build_loss(
        weights=weights, perceptual_weights=str(vgg_weights_dir / "features.pth"), render_num_configs=2
    )
    pred, target = make_maps(1), make_maps(1)
    for maps in (pred, target):  # the light estimate and its target: (B, V, 3, H, W) directions
        maps["light"] = torch.nn.functional.normalize(torch.randn(1, 2, 3, 4, 4), dim=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, values = loss(
            {k: v.bfloat16() for k, v in pred.items()}, target, torch.randn(1, 1, 2, 2).bfloat16()
        )
    assert set(TERM_NAMES) <= set(values)
    for value in (total, *values.values()):
        assert value.dtype == torch.float32 and torch.isfinite(value)


# --- conf/loss presets through Hydra ---------------------------------------------------------------


def test_build_loss_takes_exactly_the_schema_fields():
    fields = {f.name for f in dataclasses.fields(LossConfig)} - {"_target_"}
    assert set(inspect.signature(build_loss).parameters) == fields
    assert LossConfig._target_ == f"{build_loss.__module__}.{build_loss.__name__}"


def test_all_presets_listed():
    assert LOSS_PRESETS == ["default", "l1_only", "normal_focused", "photographic", "rendering"]


@pytest.mark.parametrize("preset", LOSS_PRESETS)
def test_preset_composes_and_builds(compose_cfg, vgg_weights_dir, make_maps, preset):
    cfg = compose_cfg(f"loss={preset}", f"loss.perceptual_weights={vgg_weights_dir / 'features.pth'}")
    loss = build_loss_from_cfg(cfg)
    assert isinstance(loss, CompositeLoss)
    active = {name for name, weight in cfg.loss.weights.items() if weight > 0 and name != "gan"}
    assert set(loss.terms) == active
    total, values = loss(make_maps(1, 16), make_maps(1, 16))
    assert torch.isfinite(total) and active <= set(values)


def test_photographic_without_weights_offline_names_the_key(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    # Hydra wraps the error of the _target_, keeping its message and its cause
    with pytest.raises(InstantiationException, match=r"loss\.perceptual_weights is not set") as error:
        build_loss_from_cfg(compose_cfg("loss=photographic"))
    assert isinstance(error.value.__cause__, FileNotFoundError)


def test_guide_examples_are_overrides(compose_cfg, vgg_weights_dir):
    # "Emphasise normal quality": w_normal 1.0, w_normal_map 2.0, w_albedo 0.8
    cfg = compose_cfg("loss.weights.normal=1.0", "loss.map_weights.normal=2.0", "loss.map_weights.albedo=0.8")
    loss = build_loss_from_cfg(cfg)
    assert loss.weights["normal"] == 1.0
    assert loss.terms["l1"].map_weights == {"albedo": 0.8, "roughness": 1.0, "metallic": 1.0, "normal": 2.0}
    assert (
        build_loss_from_cfg(compose_cfg("loss=normal_focused")).terms["l1"].map_weights
        == loss.terms["l1"].map_weights
    )
    # "Photography-quality albedo": w_albedo 1.5, w_ssim 0.7, w_perceptual 0.2
    cfg = compose_cfg(
        "loss.map_weights.albedo=1.5",
        "loss.weights.ssim=0.7",
        "loss.weights.perceptual=0.2",
        f"loss.perceptual_weights={vgg_weights_dir / 'full.pth'}",
        "loss.gan_type=bce",
    )
    loss = build_loss_from_cfg(cfg)
    assert (loss.weights["ssim"], loss.weights["perceptual"]) == (0.7, 0.2) and "perceptual" in loss.terms
    assert loss.terms["l1"].map_weights["albedo"] == 1.5 and loss.adversarial.gan_type == "bce"


def test_weight_typo_fails(compose_cfg):
    with pytest.raises(Exception, match=r"loss.weights.sssim"):  # Hydra refuses the unknown key
        compose_cfg("loss.weights.sssim=0.5")
    with pytest.raises(InstantiationException, match=r"loss.weights: unknown term\(s\) \['sssim'\]") as error:
        build_loss_from_cfg(compose_cfg("+loss.weights.sssim=0.5"))
    assert isinstance(error.value.__cause__, ValueError)


@pytest.mark.parametrize("preset", ["rendering", "normal_focused"])
def test_preset_trains(compose_cfg, make_maps, preset):
    """A few optimiser steps on free maps (parametrised like the decoder's outputs) lower the loss."""
    loss = build_loss_from_cfg(compose_cfg(f"loss={preset}"))
    target = make_maps(1, 8)
    logits = {name: torch.zeros_like(value, requires_grad=True) for name, value in target.items()}
    optimizer = torch.optim.Adam(logits.values(), lr=0.1)

    def maps():
        out = {name: torch.sigmoid(value) for name, value in logits.items() if name != "normal"}
        out["normal"] = torch.nn.functional.normalize(
            logits["normal"] + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), dim=1
        )
        return out

    first = loss(maps(), target)[0].item()
    for _ in range(20):
        optimizer.zero_grad()
        loss(maps(), target)[0].backward()
        optimizer.step()
    assert loss(maps(), target)[0].item() < 0.5 * first


def test_inert_gan_weight_is_said_without_a_discriminator(compose_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="neuropbr.build"):
        build_loss_from_cfg(compose_cfg("discriminator=none"))
    assert "loss.weights.gan=0.05 has no effect: discriminator=none" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="neuropbr.build"):
        build_loss_from_cfg(compose_cfg("discriminator=none", "loss.weights.gan=0"))
        build_loss_from_cfg(compose_cfg())  # the default has a discriminator: the weight is live
    assert "has no effect" not in caplog.text
