"""Rendering loss: sees every map, finite at the extremes, reproducible random configurations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from neuropbr.losses.rendering import (
    DIFFUSE_MIN_COS,
    SPECULAR_AIM,
    RenderingLoss,
    render_maps,
    rendering_loss,
    sample_render_configs,
)


def fixed_configs(num_configs: int = 4, batch: int = 2, seed: int = 1):
    return sample_render_configs(num_configs, batch, generator=torch.Generator().manual_seed(seed))


def test_zero_for_identical_positive_otherwise(make_maps):
    pred, target = make_maps(), make_maps()
    configs = fixed_configs()
    assert rendering_loss(pred, pred, configs).item() == 0.0
    assert rendering_loss(pred, target, configs).item() > 0.0


@pytest.mark.parametrize("name", ["albedo", "roughness", "metallic", "normal"])
def test_sees_every_map(make_maps, name):
    pred = make_maps(low=0.3, high=0.6)
    changed = dict(pred)
    if name == "normal":
        changed["normal"] = F.normalize(
            pred["normal"] + torch.tensor([0.4, -0.3, 0.0]).view(1, 3, 1, 1), dim=1
        )
    else:
        changed[name] = pred[name] + 0.3  # still in [0, 1]
    assert rendering_loss(changed, pred, fixed_configs()).item() > 1e-3


def test_roughness_moves_the_loss_monotonically(make_maps):
    target = make_maps()
    target["roughness"] = torch.full_like(target["roughness"], 0.3)
    configs = fixed_configs()
    values = []
    for roughness in (0.3, 0.5, 0.8):
        pred = dict(target, roughness=torch.full_like(target["roughness"], roughness))
        values.append(rendering_loss(pred, target, configs).item())
    assert values[0] == 0.0 and values[0] < values[1] < values[2]


def extreme_maps(size: int = 8) -> dict[str, torch.Tensor]:
    """Roughness 0 and 1, metallic 0 and 1 in the four quadrants, normals from +z to grazing."""
    half = size // 2
    roughness = torch.zeros(1, 1, size, size)
    roughness[..., half:] = 1.0
    metallic = torch.zeros(1, 1, size, size)
    metallic[..., half:, :] = 1.0
    normal = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).repeat(1, 1, size, size)
    normal[..., 0, :] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1)  # exactly grazing (in the plane)
    normal[..., 1, :] = F.normalize(torch.tensor([1.0, 0.0, 1e-4]), dim=0).view(3, 1)
    normal[..., 2, :] = torch.tensor([0.0, -1.0, 0.0]).view(3, 1)
    normal[..., 3, :] = torch.tensor([0.0, 0.0, -1.0]).view(3, 1)  # facing away
    albedo = torch.zeros(1, 3, size, size)
    albedo[..., ::2] = 1.0
    return {"albedo": albedo, "roughness": roughness, "metallic": metallic, "normal": normal}


def test_finite_values_and_gradients_at_extremes(make_maps):
    target = make_maps(1)
    for pred, other in ((extreme_maps(), target), (make_maps(1), extreme_maps())):
        pred = {name: value.clone().requires_grad_() for name, value in pred.items()}
        loss = rendering_loss(pred, other, fixed_configs(batch=1))
        loss.backward()
        assert torch.isfinite(loss)
        for name, value in pred.items():
            assert torch.isfinite(value.grad).all(), name


def test_gradcheck_float64(make_maps):
    # eps 1e-3 keeps the check meaningful even if the renderer shades in float32. The target is
    # the prediction made brighter, so |log pred - log target| never crosses its kink.
    pred = make_maps(1, dtype=torch.float64, low=0.3, high=0.5, tilt=0.2)
    target = dict(pred, albedo=pred["albedo"] + 0.45)
    configs = fixed_configs(num_configs=2, batch=1)
    names = list(pred)

    def fn(*tensors):
        return rendering_loss(dict(zip(names, tensors)), target, configs)

    inputs = tuple(pred[name].clone().requires_grad_() for name in names)
    assert gradcheck(fn, inputs, eps=1e-3, atol=1e-4, rtol=1e-2)


def test_configs_shapes_and_hemisphere():
    configs = fixed_configs(num_configs=5, batch=3)
    for tensor in configs:
        assert tensor.shape[:2] == (5, 3) and tensor.dtype == torch.float32
    # every light and camera is above the sample, at least DIFFUSE_MIN_COS * 2 high
    assert (configs.light_position[..., 2] >= 2.0 * DIFFUSE_MIN_COS - 1e-5).all()
    assert (configs.camera_position[..., 2] >= 2.0 * DIFFUSE_MIN_COS - 1e-5).all()


def test_specular_configs_are_mirror_pairs_and_show_a_highlight():
    configs = fixed_configs(num_configs=4, batch=2)
    light, camera = configs.light_position[2:], configs.camera_position[2:]  # K // 2 = 2 specular, last
    assert torch.allclose(light[..., 2], camera[..., 2])
    aim = (light[..., :2] + camera[..., :2]) / 2
    assert (aim.abs() <= SPECULAR_AIM + 1e-6).all()
    # A flat glossy metal: the specular renders hold a highlight far above their median.
    size = 32
    glossy = {
        "albedo": torch.full((2, 3, size, size), 0.8),
        "roughness": torch.full((2, 1, size, size), 0.15),
        "metallic": torch.ones(2, 1, size, size),
        "normal": torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, size, size),
    }
    renders = render_maps(glossy, configs)  # (K, B, 3, H, W)
    for render in renders[2:].flatten(0, 1):
        assert render.max() > 10 * render.median()


def test_module_draws_from_global_rng_in_training_and_fixed_configs_in_eval(make_maps):
    pred, target = make_maps(), make_maps()
    loss = RenderingLoss(num_configs=4)
    torch.manual_seed(3)
    first = loss(pred, target)
    torch.manual_seed(3)
    assert loss(pred, target) == first  # a restored RNG state reproduces the step
    assert loss(pred, target) != first  # and the next step draws new configurations
    loss.eval()
    state = torch.get_rng_state()
    assert loss(pred, target) == loss(pred, target)
    assert torch.equal(torch.get_rng_state(), state)  # validation leaves the training RNG alone


def test_bf16_autocast_gives_float32_finite_value(make_maps):
    pred, target = make_maps(), make_maps()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = RenderingLoss(2)({k: v.bfloat16() for k, v in pred.items()}, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_configs": 0}, "loss.render_num_configs must be >= 1, got 0"),
        ({"eps": 0.0}, "loss.render_eps must be > 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RenderingLoss(**kwargs)
