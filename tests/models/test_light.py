"""The light estimator, its place in the generator, the ``light`` loss term and its config check."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from neuropbr.build import build_generator
from neuropbr.config_checks import ConfigValueError, check_train_config
from neuropbr.losses import LightDirectionLoss, build_loss
from neuropbr.models.decoders.unet_heads import UNetHeadsDecoder
from neuropbr.models.encoders.unet import UNetEncoder
from neuropbr.models.fusion.pooling import MaxFusion
from neuropbr.models.generator import PBRGenerator
from neuropbr.models.light import MIN_LIGHT_HEIGHT, LightEstimator
from neuropbr.render.geometry import texel_positions

from .helpers import assert_every_param_has_grad, projection_loss


def _generator(stacked_views: int = 0) -> PBRGenerator:
    encoder = UNetEncoder(
        channels=[4, 8, 8], exposure_norm=True, light_estimation=True, stacked_views=stacked_views
    )
    decoder = UNetHeadsDecoder(
        in_channels=8, skip_channels=[4, 8], skip_reductions=[1, 2], bottleneck_reduction=4, channels=[8, 4]
    )
    return PBRGenerator(encoder, MaxFusion(in_channels=8), decoder, LightEstimator(width=4, working_size=16))


def test_directions_point_from_each_texel_to_the_estimated_position() -> None:
    estimator = LightEstimator(width=4, working_size=16)
    with torch.no_grad():
        estimator.head[-1].weight.zero_()
        estimator.head[-1].bias.copy_(torch.tensor([0.5, -0.25, 0.0]))  # softplus(0) + 0.3 high
    views = torch.rand(2, 3, 3, 8, 8)
    directions = estimator(views)
    assert directions.shape == (2, 3, 3, 8, 8)
    light = torch.tensor([0.5, -0.25, math.log(2.0) + MIN_LIGHT_HEIGHT])
    expected = F.normalize(light.view(1, 3, 1, 1) - texel_positions(8, 8), dim=1)[0]
    torch.testing.assert_close(directions[1, 2], expected, atol=1e-6, rtol=0)


def test_the_estimate_starts_above_the_centre_and_ignores_exposure() -> None:
    estimator = LightEstimator(width=4, working_size=16)
    views = 0.2 + 0.5 * torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        position = estimator.positions(views)
    assert position.shape == (1, 2, 3)
    assert float(position[..., :2].abs().max()) < 0.05  # about straight above the centre
    assert bool((position[..., 2] > MIN_LIGHT_HEIGHT).all())
    estimator.head[-1].weight.data.normal_()  # any weights: one gain per view changes nothing
    torch.testing.assert_close(
        estimator.positions(views), estimator.positions(views * 1.7), atol=1e-5, rtol=0
    )


def test_generator_feeds_the_light_to_the_encoder_and_returns_it_only_in_training() -> None:
    generator = _generator()
    assert next(generator.encoder.levels[0].parameters()).shape[1] == 6  # RGB + light direction
    views = torch.rand(2, 3, 3, 16, 16)
    out = generator(views)
    assert out["light"].shape == (2, 3, 3, 16, 16)
    torch.testing.assert_close(out["light"].norm(dim=2), torch.ones(2, 3, 16, 16))
    (projection_loss({k: v for k, v in out.items() if k != "light"}) + out["light"].sum()).backward()
    assert_every_param_has_grad(generator)
    assert "light" not in generator.eval()(views)  # validation, inference and export see the maps only


def test_stacked_views_take_each_views_light_as_channels() -> None:
    generator = _generator(stacked_views=3)
    assert next(generator.encoder.levels[0].parameters()).shape[1] == 18  # 3 views x (RGB + light)
    assert generator(torch.rand(1, 3, 3, 16, 16))["light"].shape == (1, 3, 3, 16, 16)


def test_the_light_term_teaches_the_estimator() -> None:
    """A few steps of the ``light`` term alone move the estimate towards a lamp on the left."""
    torch.manual_seed(0)
    estimator = LightEstimator(width=8, working_size=16)
    term = LightDirectionLoss()
    lamp = torch.tensor([-1.5, 0.0, 1.0])
    truth = F.normalize(lamp.view(1, 1, 3, 1, 1) - texel_positions(16, 16)[:, None], dim=2).expand(
        4, 2, -1, -1, -1
    )
    views = torch.rand(4, 2, 3, 16, 16)
    optimizer = torch.optim.Adam(estimator.parameters(), 1e-2)
    first = None
    for _ in range(40):
        loss = term({"light": estimator(views)}, {"light": truth})
        assert loss is not None
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.25 * first
    with torch.no_grad():
        assert float(estimator.positions(views)[..., 0].mean()) < -0.5  # it moved to the left


def test_light_term_value_absence_and_shape_errors() -> None:
    term = LightDirectionLoss()
    a = torch.zeros(1, 2, 3, 4, 4)
    a[:, :, 2] = 1.0
    b = torch.zeros(1, 2, 3, 4, 4)
    b[:, :, 0] = 1.0
    assert float(term({"light": a}, {"light": b})) == pytest.approx(2.0 / 3.0)  # |1| + |-1| over 3 channels
    assert term({"normal": a}, {"light": b}) is None
    assert term({"light": a}, {"normal": b}) is None
    with pytest.raises(ValueError, match=r"light: estimate \(1, 2, 3, 4, 4\) and target \(1, 2, 3, 2, 2\)"):
        term({"light": a}, {"light": b[..., :2, :2]})
    loss = build_loss(weights={"l1": 1.0, "light": 0.5})
    maps = {
        "albedo": torch.rand(1, 3, 4, 4),
        "roughness": torch.rand(1, 1, 4, 4),
        "metallic": torch.rand(1, 1, 4, 4),
        "normal": F.normalize(torch.rand(1, 3, 4, 4), dim=1),
    }
    total, values = loss({**maps, "light": a}, {**maps, "light": b})
    assert float(values["light"]) == pytest.approx(2.0 / 3.0)
    assert float(total) == pytest.approx(0.5 * 2.0 / 3.0)  # l1 is 0 on equal maps
    _, values = loss(maps, maps)  # validation: no estimate, the term is skipped
    assert "light" not in values


def test_config_builds_the_estimator_and_checks_the_light_term(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    tiny = ("encoder=unet", "encoder.channels=[4,8,8]", "decoder.channels=[8,4]", "data.resolution=32")
    cfg = compose_cfg(
        *tiny, "encoder.light_estimation=true", "loss.weights.light=1", "data.light_targets=true"
    )
    check_train_config(cfg)
    assert isinstance(build_generator(cfg).light_estimator, LightEstimator)
    assert build_generator(compose_cfg(*tiny)).light_estimator is None
    with pytest.raises(ConfigValueError, match=r"loss.weights.light=1.0 needs encoder.light_estimation=true .* and "
                       r"data.light_targets=true"):  # fmt: skip
        check_train_config(compose_cfg(*tiny, "loss.weights.light=1"))
