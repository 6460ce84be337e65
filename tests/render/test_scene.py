"""Synthetic samples: seeded specs, clean and dirty renders, the generator behind data=synthetic."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuropbr.render.lights import procedural_sky
from neuropbr.render.scene import SyntheticGenerator, build_lights, draw_sample, render_sample


def test_spec_is_deterministic_and_json_serialisable() -> None:
    spec = draw_sample(123, num_views=3, camera="perspective")
    assert spec == draw_sample(123, num_views=3, camera="perspective")
    assert spec != draw_sample(124, num_views=3, camera="perspective")
    assert json.loads(json.dumps(spec)) == spec
    assert len(spec["views"]) == 3
    for view in spec["views"]:
        camera = view["camera"]
        assert camera["kind"] == "perspective" and 0 <= camera["tilt_deg"] <= 40 and camera["tiling"] >= 1
        assert view["lights"] and view["setup"] in ("flash", "point", "sun")
        assert view["artifacts"], "every dirty view shows at least one capture artifact"


def test_views_are_lit_alike_whatever_the_setup() -> None:
    """Key light plus fill put the same order of irradiance on the sample's centre in every view."""
    for seed in range(10):
        for view in draw_sample(seed, num_views=3)["views"]:
            received = sum(light.irradiance(torch.zeros(3)) for light in build_lights(view["lights"]))
            luminance = received[0] @ torch.tensor([0.2126, 0.7152, 0.0722])
            assert 0.5 * math.pi < luminance < 1.4 * math.pi, view["setup"]


def test_zero_artifact_strength_makes_dirty_equal_clean() -> None:
    spec = draw_sample(5, num_views=2, artifact_strength=0.0)
    assert spec["surface_artifacts"] == [] and all(v["artifacts"] == [] for v in spec["views"])
    maps = SyntheticGenerator(resolution=16, num_views=2).material(0).maps
    renders = render_sample(maps, spec)
    assert torch.equal(renders["clean"], renders["dirty"])


@pytest.mark.parametrize("camera", ["aligned", "perspective"])
def test_samples_render_clean_and_dirty_views(camera: str) -> None:
    generator = SyntheticGenerator(resolution=24, num_views=3, camera=camera, seed=2)
    material, spec, renders = generator.render(4)
    assert set(renders) == {"clean", "dirty"}
    for views in renders.values():
        assert views.shape == (3, 3, 24, 24) and views.dtype == torch.float32
        assert views.min() >= 0 and views.max() <= 1
    for view in range(3):  # dirt shows in every view
        assert (renders["clean"][view] - renders["dirty"][view]).abs().max() > 1e-3
    _, again_spec, again = generator.render(4)
    assert again_spec == spec and torch.equal(again["dirty"], renders["dirty"])
    clean_only = generator.render(4, variants=("clean",))[2]
    assert set(clean_only) == {"clean"} and torch.equal(clean_only["clean"], renders["clean"])
    assert material.maps["albedo"].shape == (3, 24, 24)


def test_generator_maps_samples_to_materials() -> None:
    generator = SyntheticGenerator(resolution=16, num_views=1, samples_per_material=3, seed=1)
    assert [generator.material_index(i) for i in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    first, second = generator.render(0)[0], generator.render(2)[0]
    assert torch.equal(first.maps["normal"], second.maps["normal"])  # one material, several scenes
    assert generator.spec(0) != generator.spec(2)
    other_seed = SyntheticGenerator(resolution=16, num_views=1, samples_per_material=3, seed=2)
    assert not torch.equal(other_seed.material(0).maps["albedo"], first.maps["albedo"])


def test_an_environment_map_lights_the_scenes() -> None:
    sky = procedural_sky(
        torch.tensor([0.2, 0.5, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=2.0
    )[0]
    generator = SyntheticGenerator(resolution=16, num_views=3, environment=sky * 7.0, seed=3)
    kinds = {
        light["kind"] for i in range(6) for view in generator.spec(i)["views"] for light in view["lights"]
    }
    assert "hdr" in kinds and "sky" not in kinds
    _, _, renders = generator.render(0)
    assert torch.isfinite(renders["clean"]).all() and renders["clean"].std() > 0.01


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match=r"camera='fisheye'; choose one of \['aligned', 'perspective'\]"):
        SyntheticGenerator(resolution=16, num_views=1, camera="fisheye")
    with pytest.raises(ValueError, match=r"artifact_strength=-1\.0: expected >= 0"):
        SyntheticGenerator(resolution=16, num_views=1, artifact_strength=-1.0)
    generator = SyntheticGenerator(resolution=16, num_views=1)
    with pytest.raises(ValueError, match=r"variants=\['muddy'\]; choose from \['clean', 'dirty'\]"):
        generator.render(0, variants=("muddy",))
    spec = draw_sample(0, num_views=1, hdr=True)
    with pytest.raises(ValueError, match="no environment map was given"):
        render_sample(generator.material(0).maps, spec)


def test_light_setup_weights_choose_what_lights_the_views() -> None:
    """The default weights are the usual mix (the same specs as before the option existed);
    ``{point: 1}`` lights every view by one lamp; a setup with weight 0 never appears."""
    from neuropbr.render.scene import LIGHT_SETUPS

    for seed in range(20):
        assert draw_sample(seed, num_views=3) == draw_sample(seed, num_views=3, light_setups=LIGHT_SETUPS)
    lamps = [
        v["setup"] for s in range(20) for v in draw_sample(s, num_views=3, light_setups={"point": 1})["views"]
    ]
    assert set(lamps) == {"point"}
    no_flash = {**LIGHT_SETUPS, "flash": 0.0}
    setups = {
        v["setup"] for s in range(40) for v in draw_sample(s, num_views=3, light_setups=no_flash)["views"]
    }
    assert "flash" not in setups and len(setups) == 4


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"point": -1.0}, "expected weights >= 0"),
        ({"flash": 0.0}, "not all 0"),
        ({"laser": 1.0}, "unknown: \\['laser'\\]"),
    ],
)
def test_bad_light_setup_weights_name_the_key(weights: dict[str, float], message: str) -> None:
    from neuropbr.data.synthetic import SyntheticDataModule

    with pytest.raises(ValueError, match=rf"data.light_setups=.*{message}"):
        SyntheticDataModule(resolution=32, num_samples=8, light_setups=weights)


def test_exposure_shift_moves_every_view_of_a_sample_by_one_draw() -> None:
    """No shift is the spec as before the option; a shift range moves all views of a sample by
    the same stops (one draw per sample, within the range), nothing else in the spec changes."""
    for seed in range(10):
        plain = draw_sample(seed, num_views=3)
        assert draw_sample(seed, num_views=3, exposure_shift_ev=(0.0, 0.0)) == plain
        fixed = draw_sample(seed, num_views=3, exposure_shift_ev=(2.0, 2.0))
        assert [
            round(v["exposure_ev"] - p["exposure_ev"], 3) for v, p in zip(fixed["views"], plain["views"])
        ] == [2.0] * 3
        assert [{**v, "exposure_ev": 0} for v in fixed["views"]] == [
            {**p, "exposure_ev": 0} for p in plain["views"]
        ]
    shifts = []
    for seed in range(40):
        plain, moved = (
            draw_sample(seed, num_views=3),
            draw_sample(seed, num_views=3, exposure_shift_ev=(-1.5, 1.0)),
        )
        per_view = {
            round(m["exposure_ev"] - p["exposure_ev"], 2) for m, p in zip(moved["views"], plain["views"])
        }
        assert len(per_view) == 1  # the same shift for every view (up to the spec's rounding)
        shifts.append(per_view.pop())
    assert -1.5 <= min(shifts) < -0.5 and 0.0 < max(shifts) <= 1.0  # drawn across the range
    # and the render follows: one stop brighter doubles the linear radiance before the tone curve
    generator = SyntheticGenerator(
        resolution=16, num_views=2, artifact_strength=0.0, exposure_shift_ev=(3.0, 3.0)
    )
    base = SyntheticGenerator(resolution=16, num_views=2, artifact_strength=0.0)
    assert (
        generator.render(0, variants=("clean",))[2]["clean"].mean()
        > base.render(0, variants=("clean",))[2]["clean"].mean()
    )


@pytest.mark.parametrize("bad", [[1.0], [1.0, -1.0], [-9.0, 0.0], [0.0, float("nan")]])
def test_bad_exposure_shift_names_the_key(bad: list[float]) -> None:
    from neuropbr.data.synthetic import SyntheticDataModule

    with pytest.raises(
        ValueError, match=r"data.exposure_shift_ev=.*expected \[low, high\] exposure shift in stops"
    ):
        SyntheticDataModule(resolution=32, num_samples=8, exposure_shift_ev=bad)
