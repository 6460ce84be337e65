"""Augmentation: determinism per seed, photometric on views only, paired geometry, normal vectors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from neuropbr.data.transforms import Augmentation, flip_rot90, transform_normals
from neuropbr.render.geometry import height_to_normal

SIZE = 16
STRENGTH = 4.0


def smooth_tileable_height(size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """(1, 1, size, size) random height field, smooth and periodic (blurred with wrap-around)."""
    gen = torch.Generator().manual_seed(seed)
    height = torch.randn(1, 1, size, size, generator=gen)
    for _ in range(2):
        height = F.avg_pool2d(F.pad(height, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    return height


def sample(seed: int = 0, num_views: int = 3) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Views equal to the albedo (so alignment is visible); roughness holds the height field the
    normal map derives from (so the vector transform can be checked after augmentation)."""
    gen = torch.Generator().manual_seed(seed)
    albedo = torch.rand(3, SIZE, SIZE, generator=gen)
    height = smooth_tileable_height(seed=seed)
    lo, hi = height.min(), height.max()
    rough = (height - lo) / (hi - lo)
    maps = {
        "albedo": albedo,
        "roughness": rough[0],
        "metallic": torch.rand(1, SIZE, SIZE, generator=gen),
        "normal": height_to_normal(rough * STRENGTH)[0],
    }
    return albedo.expand(num_views, -1, -1, -1).clone(), maps


@pytest.mark.parametrize(
    ("hflip", "vflip", "k"), list(itertools.product([False, True], [False, True], range(4)))
)
def test_transformed_normal_map_is_the_normal_map_of_the_transformed_height(
    hflip: bool, vflip: bool, k: int
) -> None:
    height = smooth_tileable_height()
    normal = height_to_normal(height, strength=STRENGTH)
    moved = transform_normals(normal, hflip=hflip, vflip=vflip, k=k)
    expected = height_to_normal(flip_rot90(height, hflip=hflip, vflip=vflip, k=k), strength=STRENGTH)
    # Periodic central differences commute exactly with flips and quarter turns: compare everywhere.
    torch.testing.assert_close(moved, expected, atol=1e-6, rtol=0)


def test_quarter_turn_direction_is_counter_clockwise_on_screen() -> None:
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert flip_rot90(image, hflip=False, vflip=False, k=1).tolist() == [[2.0, 4.0], [1.0, 3.0]]
    # A normal tilted right (+x) points up the image (+y) after a counter-clockwise quarter turn.
    right = torch.tensor([0.6, 0.0, 0.8]).view(3, 1, 1)
    torch.testing.assert_close(
        transform_normals(right, hflip=False, vflip=False, k=1).flatten(), torch.tensor([0.0, 0.6, 0.8])
    )


@pytest.mark.parametrize("seed", range(8))
def test_augmented_sample_keeps_views_maps_and_normals_aligned(seed: int) -> None:
    views, maps = sample(seed)
    aug = Augmentation(photometric=False)
    out_views, out_maps = aug(views, maps, seed)
    for view in out_views:
        torch.testing.assert_close(view, out_maps["albedo"])  # views moved with the maps
    expected_normal = height_to_normal(out_maps["roughness"][None] * STRENGTH)[0]
    torch.testing.assert_close(out_maps["normal"], expected_normal, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_maps["normal"].norm(dim=0), torch.ones(SIZE, SIZE))


def test_every_geometric_transform_is_drawn() -> None:
    views, maps = sample()
    aug = Augmentation(photometric=False)
    seen = set()
    for seed in range(64):
        out = aug(views, maps, seed)[1]["albedo"]
        for hflip, vflip, k in itertools.product([False, True], [False, True], range(4)):
            if torch.equal(out, flip_rot90(maps["albedo"], hflip=hflip, vflip=vflip, k=k)):
                seen.add(
                    tuple(
                        flip_rot90(torch.arange(4.0).view(2, 2), hflip=hflip, vflip=vflip, k=k)
                        .flatten()
                        .tolist()
                    )
                )
    assert len(seen) == 8  # the dihedral group of the square: every orientation occurs


def test_same_seed_same_output_different_seed_different_output() -> None:
    views, maps = sample()
    aug = Augmentation()
    first, second = aug(views, maps, 123), aug(views, maps, 123)
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    for name in maps:
        torch.testing.assert_close(first[1][name], second[1][name], rtol=0, atol=0)
    assert not torch.equal(aug(views, maps, 124)[0], first[0])
    # Drawing never touches the global RNG.
    state = torch.get_rng_state()
    aug(views, maps, 5)
    assert torch.equal(state, torch.get_rng_state())


def test_photometric_jitter_is_per_view_and_leaves_maps_alone() -> None:
    views, maps = sample()
    aug = Augmentation(flips=False, rot90=False, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)
    out_views, out_maps = aug(views, maps, 7)
    for name in maps:
        assert torch.equal(out_maps[name], maps[name]), name
    assert out_views.shape == views.shape
    assert 0.0 <= out_views.min() and out_views.max() <= 1.0
    # The input views are identical: different outputs prove per-view parameters.
    assert not torch.equal(out_views[0], out_views[1]) and not torch.equal(out_views[1], out_views[2])
    assert not torch.equal(out_views[0], views[0])


def test_geometry_is_skipped_for_unaligned_views_and_disabled_is_identity() -> None:
    views, maps = sample()
    unaligned = Augmentation(photometric=False, aligned=False)
    for seed in range(8):
        out_views, out_maps = unaligned(views, maps, seed)
        assert torch.equal(out_views, views) and all(torch.equal(out_maps[n], maps[n]) for n in maps)
    out_views, out_maps = Augmentation(enabled=False)(views, maps, 3)
    assert out_views is views and out_maps is maps


def test_switching_photometric_off_keeps_the_geometric_draws() -> None:
    views, maps = sample()
    with_jitter = Augmentation()(views, maps, 11)[1]
    without = Augmentation(photometric=False)(views, maps, 11)[1]
    for name in maps:
        assert torch.equal(with_jitter[name], without[name])


def test_bad_ranges_and_shapes_fail_with_the_key() -> None:
    with pytest.raises(ValueError, match=r"data.augment.hue=0.7: expected a value in \[0, 0.5\]"):
        Augmentation(hue=0.7)
    with pytest.raises(ValueError, match="views: expected"):
        Augmentation()(torch.rand(3, SIZE, SIZE), {}, 0)
