"""Dirty-capture artifacts: seeded, strength-scaled, valid outputs, differentiable where they can be."""

from __future__ import annotations

import pytest
import torch

from neuropbr.render.artifacts import ARTIFACTS, STAGES, apply_artifacts
from neuropbr.render.materials import generate_material

SURFACE = sorted(name for name, a in ARTIFACTS.items() if a.stage == "surface")
SCREEN = sorted(name for name, a in ARTIFACTS.items() if a.stage != "surface")


def _maps(batch: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    maps = generate_material(seed=1, resolution=size, family="plastic").maps
    return {k: v.unsqueeze(0).repeat(batch, 1, 1, 1) for k, v in maps.items()}


def _image(batch: int = 2, size: int = 32, stage: str = "linear") -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, size, size, generator=gen)
    return image * 2.0 if stage == "linear" else image  # radiance may exceed 1; display images may not


def _apply(name: str, strength: float, seed: int, device: torch.device | str = "cpu"):
    stage = ARTIFACTS[name].stage
    x = _maps() if stage == "surface" else _image(stage=stage)
    x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
    return x, ARTIFACTS[name].apply(x, strength, seed)


def _changed(a, b) -> float:
    if isinstance(a, dict):
        return max((a[k] - b[k]).abs().max().item() for k in a)
    return (a - b).abs().max().item()


def test_registry_covers_every_stage() -> None:
    assert {a.stage for a in ARTIFACTS.values()} == set(STAGES)
    assert set(SURFACE) == {"smudges", "fingerprints", "scratches", "dust"}
    assert {"glare", "defocus", "vignetting", "exposure", "white_balance", "sensor_noise", "jpeg"} == set(
        SCREEN
    )


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_zero_strength_is_the_identity(name: str) -> None:
    x, y = _apply(name, 0.0, seed=3)
    assert _changed(x, y) == 0.0


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_artifact_changes_the_input_deterministically_per_seed(name: str) -> None:
    x, y = _apply(name, 1.0, seed=3)
    _, again = _apply(name, 1.0, seed=3)
    _, other = _apply(name, 1.0, seed=4)
    assert _changed(x, y) > 0.01
    assert _changed(y, again) == 0.0
    assert _changed(y, other) > 0.0


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_batch_elements_get_their_own_draw(name: str) -> None:
    _, y = _apply(name, 1.0, seed=5)
    first = {k: v[0] for k, v in y.items()} if isinstance(y, dict) else y[0]
    second = {k: v[1] for k, v in y.items()} if isinstance(y, dict) else y[1]
    assert _changed(first, second) > 0.0  # same input, different dirt


@pytest.mark.parametrize("name", SURFACE)
def test_surface_artifacts_keep_maps_valid(name: str) -> None:
    _, y = _apply(name, 1.0, seed=7)
    for key in ("albedo", "roughness", "metallic"):
        assert y[key].min() >= 0 and y[key].max() <= 1, key
    torch.testing.assert_close(y["normal"].norm(dim=1), torch.ones_like(y["normal"][:, 0]))


@pytest.mark.parametrize("name", SCREEN)
def test_screen_artifacts_keep_images_valid(name: str) -> None:
    x, y = _apply(name, 1.0, seed=7)
    assert y.shape == x.shape and torch.isfinite(y).all() and y.min() >= 0
    if ARTIFACTS[name].stage == "display":
        assert y.max() <= 1


def test_strength_scales_the_effect() -> None:
    for name in ("smudges", "vignetting", "white_balance", "sensor_noise", "defocus"):
        x, weak = _apply(name, 0.2, seed=2)
        _, strong = _apply(name, 1.0, seed=2)
        weak_change = (
            _changed(x, weak)
            if not isinstance(x, dict)
            else (x["roughness"] - weak["roughness"]).abs().mean()
        )
        strong_change = (
            _changed(x, strong)
            if not isinstance(x, dict)
            else (x["roughness"] - strong["roughness"]).abs().mean()
        )
        assert strong_change > weak_change, name


@pytest.mark.parametrize("name", sorted(n for n in ARTIFACTS if n != "jpeg"))
def test_artifacts_are_differentiable(name: str) -> None:
    stage = ARTIFACTS[name].stage
    if stage == "surface":
        maps = {k: v.clone().requires_grad_(True) for k, v in _maps().items()}
        out = ARTIFACTS[name].apply(maps, 1.0, 1)
        loss = sum(v.sum() for v in out.values())
        loss.backward()
        assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in maps.values())
    else:
        image = _image().requires_grad_(True)
        ARTIFACTS[name].apply(image, 1.0, 1).sum().backward()
        assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_apply_artifacts_picks_its_stage_in_pipeline_order() -> None:
    image = _image()
    chosen = [{"name": "jpeg", "strength": 1.0, "seed": 1}, {"name": "exposure", "strength": 1.0, "seed": 2}]
    linear = apply_artifacts(image, "linear", chosen)
    torch.testing.assert_close(linear, ARTIFACTS["exposure"].apply(image, 1.0, 2))
    maps = _maps()
    assert apply_artifacts(maps, "surface", chosen) is maps
    with pytest.raises(ValueError, match=r"artifact 'rust'; choose one of \['defocus'"):
        apply_artifacts(image, "linear", [{"name": "rust", "strength": 1.0, "seed": 0}])
    with pytest.raises(ValueError, match=r"stage='optics'; choose one of \['surface', 'linear', 'display'\]"):
        apply_artifacts(image, "optics", chosen)


@pytest.mark.parametrize("name", sorted(ARTIFACTS))
def test_artifacts_run_on_the_requested_device(name: str, device: torch.device) -> None:
    _, y = _apply(name, 1.0, seed=3, device=device)
    _, on_cpu = _apply(name, 1.0, seed=3)
    if not isinstance(y, dict):
        y, on_cpu = {"image": y}, {"image": on_cpu}
    assert all(v.device.type == device.type for v in y.values())
    assert _changed({k: v.cpu() for k, v in y.items()}, on_cpu) < 1e-3  # random draws are device-independent
