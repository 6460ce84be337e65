"""Key-light direction maps: their geometry, their place in synthetic samples and augmentation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neuropbr.data.synthetic import SyntheticDataModule, SyntheticDataset
from neuropbr.data.transforms import Augmentation, flip_rot90, transform_normals
from neuropbr.render.geometry import texel_positions
from neuropbr.render.scene import key_light_directions, upsample_light_directions

SIZE = 24


def _point(position: list[float], intensity: float = 1.0) -> dict:
    return {"kind": "point", "position": position, "intensity": [intensity] * 3}


def test_one_point_light_gives_the_direction_from_each_texel_to_it() -> None:
    directions = key_light_directions([_point([0.5, -1.0, 2.0])], resolution=8)
    expected = F.normalize(torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1) - texel_positions(8, 8), dim=1)[0]
    torch.testing.assert_close(directions, expected, atol=1e-5, rtol=0)


def test_a_directional_light_is_uniform_and_the_sky_fill_is_ignored() -> None:
    sun = [math.cos(0.5), 0.0, math.sin(0.5)]
    lights = [
        {"kind": "directional", "direction": sun, "irradiance": [2.0, 2.0, 2.0]},
        {"kind": "sky", "sun_direction": sun, "zenith": [0.2] * 3, "horizon": [0.4] * 3, "glow": 1.0},
    ]
    directions = key_light_directions(lights, resolution=4)
    torch.testing.assert_close(directions, torch.tensor(sun).view(3, 1, 1).expand(3, 4, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(  # no key light at all: straight up
        key_light_directions(lights[1:], resolution=2),
        torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2),
    )


def test_two_lamps_are_weighted_by_the_light_each_brings() -> None:
    """Two lamps at the same height left and right of the centre texel (3 x 3 map): with equal
    lamps it points straight up; with the right one 3x stronger it leans to it in that ratio."""
    left, right = [-1.0, 0.0, 1.0], [1.0, 0.0, 1.0]
    equal = key_light_directions([_point(left), _point(right)], resolution=3)
    torch.testing.assert_close(equal[:, 1, 1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5, rtol=0)
    stronger_right = key_light_directions([_point(left), _point(right, intensity=3.0)], resolution=3)
    # Both lamps are sqrt(2) away from the centre: weights 1 and 3 on (-1, 0, 1) / sqrt(2) and (1, 0, 1) / sqrt(2).
    expected = F.normalize(torch.tensor([-1.0, 0.0, 1.0]) + 3.0 * torch.tensor([1.0, 0.0, 1.0]), dim=0)
    torch.testing.assert_close(stronger_right[:, 1, 1], expected, atol=1e-5, rtol=0)


def test_upsampling_keeps_unit_vectors_and_the_field() -> None:
    low = key_light_directions([_point([0.3, 0.2, 1.2])], resolution=16)
    up = upsample_light_directions(low, 64)
    torch.testing.assert_close(up.norm(dim=0), torch.ones(64, 64))
    exact = key_light_directions([_point([0.3, 0.2, 1.2])], resolution=64)
    assert float((up - exact).abs().max()) < 0.03  # a smooth field: 16 px carry it


def _module(**overrides: object) -> SyntheticDataModule:
    settings: dict[str, object] = {
        "resolution": SIZE, "num_views": 2, "num_samples": 6, "batch_size": 2, "num_workers": 0,
        "val_ratio": 0.3, "seed": 3, "augment": None, "light_targets": True,
    }  # fmt: skip
    settings.update(overrides)
    module = SyntheticDataModule(**settings)  # type: ignore[arg-type]
    module.setup()
    return module


def test_training_samples_carry_each_views_light_and_validation_none() -> None:
    module = _module()
    assert isinstance(module.train_set, SyntheticDataset) and isinstance(module.val_set, SyntheticDataset)
    sample = module.train_set[0]
    light = sample["maps"]["light"]
    assert light.shape == (2, 3, SIZE, SIZE)
    torch.testing.assert_close(light.norm(dim=1), torch.ones(2, SIZE, SIZE))
    _, spec, _ = module.generator.render(module.train_set.indices[0], variants=("clean",))
    for view, lights in zip(light, spec["views"]):  # each view's own lights
        exact = key_light_directions(lights["lights"], resolution=SIZE)
        assert float((view - exact).abs().max()) < 0.03
    assert "light" not in module.val_set[0]["maps"]
    assert "light" not in _module(light_targets=False).train_set[0]["maps"]


def test_cached_and_rendered_light_targets_agree() -> None:
    fresh, cached = _module(), _module(cache=True)
    for position in range(len(fresh.train_set)):
        a, b = fresh.train_set[position]["maps"]["light"], cached.train_set[position]["maps"]["light"]
        torch.testing.assert_close(b, a, atol=2e-3, rtol=0)  # stored as float16


def test_perspective_views_refuse_light_targets() -> None:
    with pytest.raises(ValueError, match=r"data.light_targets=true with data.camera=perspective"):
        _module(camera="perspective", aligned=False)


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_turns_the_light_with_the_views(seed: int) -> None:
    """Flips and quarter turns move the light map's pixels and turn its vectors, like normals."""
    views = torch.rand(2, 3, 8, 8)
    light = F.normalize(torch.randn(2, 3, 8, 8), dim=1)
    normal = F.normalize(torch.randn(3, 8, 8), dim=0)
    out_views, out_maps = Augmentation(photometric=False)(views, {"normal": normal, "light": light}, seed)
    # Recover the draw from the normal map, then check the light map got the same transform.
    for hflip in (False, True):
        for vflip in (False, True):
            for k in range(4):
                if torch.allclose(
                    transform_normals(normal, hflip=hflip, vflip=vflip, k=k), out_maps["normal"]
                ):
                    expected = transform_normals(light, hflip=hflip, vflip=vflip, k=k)
                    torch.testing.assert_close(out_maps["light"], expected)
                    torch.testing.assert_close(out_views, flip_rot90(views, hflip=hflip, vflip=vflip, k=k))
                    return
    pytest.fail("the normal map was not transformed by any flip/turn")
