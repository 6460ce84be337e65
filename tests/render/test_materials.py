"""Procedural materials and the periodic noise they are built from."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from neuropbr.data.synthetic import SyntheticDataModule
from neuropbr.render import materials
from neuropbr.render.geometry import height_to_normal
from neuropbr.render.materials import FAMILIES, generate_material
from neuropbr.render.noise import periodic_noise

MAP_CHANNELS = {"albedo": 3, "roughness": 1, "metallic": 1, "normal": 3}


def _seam_ratio(x: torch.Tensor) -> float:
    """Jump across the wrap-around seam relative to the largest jump between interior neighbours.

    For a smooth tileable field the seam is just another pair of neighbours (ratio about 1 or
    less); a field that does not tile shows its discontinuity there.
    """
    ratios = []
    for dim in (-1, -2):
        steps = (
            (x - torch.roll(x, 1, dims=dim))
            .abs()
            .mean(dim=tuple(d for d in range(x.ndim) if d != x.ndim + dim))
        )
        seam, interior = steps[0], steps[1:]
        ratios.append((seam / interior.max().clamp(min=1e-6)).item())
    return max(ratios)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gives_valid_maps(family: str) -> None:
    material = generate_material(seed=11, resolution=48, family=family)
    assert material.family == family
    json.dumps(material.params)  # the side file stores them
    for name, channels in MAP_CHANNELS.items():
        value = material.maps[name]
        assert value.shape == (channels, 48, 48) and value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    for name in ("albedo", "roughness", "metallic"):
        assert material.maps[name].min() >= 0 and material.maps[name].max() <= 1, name
    normal = material.maps["normal"]
    torch.testing.assert_close(normal.norm(dim=0), torch.ones(48, 48))
    assert (normal[2] > 0).all()  # a height field never faces away from the viewer
    assert material.maps["albedo"].std() > 0.005 or material.maps["roughness"].std() > 0.005  # not flat


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_tiles(family: str) -> None:
    """Shifting the pattern by half a tile must give the same maps rolled by half a tile: every
    pattern (cells, rings, joints, threads) continues seamlessly past the tile's edge."""
    size = 48
    maps = generate_material(seed=5, resolution=size, family=family).maps
    shifted = generate_material(seed=5, resolution=size, family=family, offset=(size // 2, size // 3)).maps
    for name, value in maps.items():
        rolled = torch.roll(value, shifts=(-(size // 3), -(size // 2)), dims=(-2, -1))
        torch.testing.assert_close(shifted[name], rolled, atol=1e-4, rtol=0, msg=name)


def test_materials_are_deterministic_per_seed() -> None:
    a, b = generate_material(seed=3, resolution=32), generate_material(seed=3, resolution=32)
    assert a.family == b.family and a.params == b.params
    for name in MAP_CHANNELS:
        assert torch.equal(a.maps[name], b.maps[name])
    other = generate_material(seed=4, resolution=32, family=a.family)
    assert not torch.equal(a.maps["albedo"], other.maps["albedo"])


def test_seeds_cover_every_family() -> None:
    families = {generate_material(seed=s, resolution=8).family for s in range(80)}
    assert families == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_material_is_the_same_at_every_resolution(family: str) -> None:
    small, large = (
        generate_material(seed=9, resolution=64, family=family),
        generate_material(seed=9, resolution=128, family=family),
    )
    assert small.params == large.params
    # Detail only the 128-px maps can hold averages out at 16 px; the rest must agree.
    for name in ("albedo", "roughness", "metallic"):
        coarse_small = F.avg_pool2d(small.maps[name][None], 4)
        coarse_large = F.avg_pool2d(large.maps[name][None], 8)
        assert (coarse_small - coarse_large).abs().mean() < 0.02, name


def test_unknown_family_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"family='velvet'; choose one of \['bricks', 'brushed_metal'"):
        generate_material(seed=0, resolution=16, family="velvet")
    with pytest.raises(ValueError, match="resolution=4, expected >= 8"):
        generate_material(seed=0, resolution=4)


def test_constant_height_gives_flat_normals() -> None:
    normal = height_to_normal(torch.full((1, 1, 8, 8), 0.3), strength=4.0)
    assert torch.equal(normal, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 8, 8))


# --- noise ----------------------------------------------------------------------------------------


def test_noise_has_zero_mean_and_unit_variance() -> None:
    fields = torch.stack([periodic_noise(seed, 64, frequency=4.0, max_frequency=24) for seed in range(40)])
    assert fields.mean().abs() < 1e-5  # no DC term: each field has zero mean exactly
    assert fields.std().item() == pytest.approx(1.0, abs=0.1)


def test_noise_tiles_and_is_deterministic() -> None:
    field = periodic_noise(7, 64, frequency=6.0, max_frequency=12)
    assert _seam_ratio(field[None]) < 1.05
    assert _seam_ratio(torch.linspace(0, 1, 64).expand(1, 64, 64)) > 10  # the check catches a ramp
    assert torch.equal(field, periodic_noise(7, 64, frequency=6.0, max_frequency=12))
    assert not torch.equal(field, periodic_noise(8, 64, frequency=6.0, max_frequency=12))


def test_noise_is_the_same_function_at_every_resolution() -> None:
    small, large = (
        periodic_noise(2, 64, frequency=2.0, max_frequency=8),
        periodic_noise(2, 256, frequency=2.0, max_frequency=8),
    )
    # The 64-px texel centres sit at 256-px coordinates 4j + 1.5: average the two nearest columns/rows.
    resampled = F.avg_pool2d(large[None, None, 1:-3, 1:-3], kernel_size=2, stride=4)[0, 0]
    assert (resampled - small[:-1, :-1]).abs().max() < 0.05 * small.abs().max()


def test_stretched_noise_forms_streaks_along_its_angle() -> None:
    along_x = periodic_noise(1, 64, frequency=4.0, stretch=10.0, angle_deg=0.0)
    along_y = periodic_noise(1, 64, frequency=4.0, stretch=10.0, angle_deg=90.0)

    def step(x: torch.Tensor, dim: int) -> float:
        return (x - torch.roll(x, 1, dims=dim)).abs().mean().item()

    assert step(along_x, 1) < 0.5 * step(along_x, 0)
    assert step(along_y, 0) < 0.5 * step(along_y, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 1}, "resolution=1, expected >= 2"),
        ({"frequency": 0.0}, "frequency=0.0, expected > 0"),
        ({"max_frequency": 0}, "max_frequency=0, expected >= 1"),
    ],
)
def test_noise_rejects_bad_settings(kwargs: dict, message: str) -> None:
    settings = {"seed": 0, "resolution": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        periodic_noise(**settings)


def test_relief_range_sets_the_mean_normal_tilt() -> None:
    """``relief_tilt_deg`` is where the drawn mean tilt falls; the maps' normals follow it."""

    def mean_tilt(material: materials.Material) -> float:
        return float(torch.rad2deg(torch.acos(material.maps["normal"][2].clamp(-1, 1))).mean())

    for seed in range(6):
        family = "bricks" if seed % 2 else "stone"
        strong = materials.generate_material(seed, 64, family, relief_tilt_deg=(15.0, 25.0))
        weak = materials.generate_material(seed, 64, family, relief_tilt_deg=(1.0, 2.0))
        assert 15.0 <= strong.params["relief_tilt_deg"] <= 25.0
        assert 1.0 <= weak.params["relief_tilt_deg"] <= 2.0
        # Weathering layers change the height a little after the draw; the order stays.
        assert mean_tilt(strong) > 3 * mean_tilt(weak)
    smooth = materials.generate_material(0, 64, "plastic", relief_tilt_deg=(15.0, 25.0))
    assert smooth.params["relief_tilt_deg"] <= materials.SMOOTH_RELIEF_TILT_DEG[1]


def test_recolour_and_weathering_can_be_switched_off() -> None:
    """On by default some materials draw a re-tint and weathering layers; switched off, none does,
    and a material that drew layers comes out as its family's bare pattern."""
    drawn = [generate_material(seed, 32) for seed in range(16)]
    assert any("tint_strength" in m.params for m in drawn)
    weathered = [seed for seed, m in enumerate(drawn) if m.params["layers"]]
    assert weathered
    for seed in range(16):
        bare = generate_material(seed, 32, recolour=False, weathering=False)
        assert bare.params["layers"] == [] and "tint_strength" not in bare.params
        assert bare.family == drawn[seed].family
    seed = weathered[0]
    unweathered = generate_material(seed, 32, weathering=False)
    assert not torch.equal(unweathered.maps["albedo"], drawn[seed].maps["albedo"]) or not torch.equal(
        unweathered.maps["roughness"], drawn[seed].maps["roughness"]
    )
    # The switches reach the generator from the data config.
    module = SyntheticDataModule(resolution=32, num_samples=8, recolour=False, weathering=False)
    assert module.generator.material(0).params["layers"] == []


@pytest.mark.parametrize("bad", [(0.0, 5.0), (10.0, 5.0), (5.0, 95.0), (5.0,)])
def test_relief_range_rejects_bad_values(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"data.relief_tilt_deg=.*expected \[low, high\]"):
        SyntheticDataModule(resolution=32, num_samples=8, relief_tilt_deg=bad)
