"""data=synthetic: on-the-fly samples, deterministic by index and seed, split by material."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from neuropbr.build import instantiate
from neuropbr.config import SyntheticDataConfig
from neuropbr.data.synthetic import SyntheticDataModule, SyntheticDataset
from neuropbr.data.transforms import Augmentation

SIZE = 24


def _module(**overrides: object) -> SyntheticDataModule:
    settings: dict[str, object] = {
        "resolution": SIZE, "num_views": 2, "num_samples": 8, "batch_size": 2, "num_workers": 0,
        "val_ratio": 0.25, "seed": 7, "augment": None,
    }  # fmt: skip
    settings.update(overrides)
    module = SyntheticDataModule(**settings)  # type: ignore[arg-type]
    module.setup()
    return module


def _sets(module: SyntheticDataModule) -> tuple[SyntheticDataset, SyntheticDataset]:
    assert isinstance(module.train_set, SyntheticDataset) and isinstance(module.val_set, SyntheticDataset)
    return module.train_set, module.val_set


def test_samples_have_the_documented_shapes_and_ranges() -> None:
    train, _ = _sets(_module())
    sample = train[0]
    assert sample["views"].shape == (2, 3, SIZE, SIZE) and sample["views"].dtype == torch.float32
    assert 0 <= sample["views"].min() and sample["views"].max() <= 1
    shapes = {"albedo": 3, "roughness": 1, "metallic": 1, "normal": 3}
    for name, channels in shapes.items():
        assert sample["maps"][name].shape == (channels, SIZE, SIZE), name
    for name in ("albedo", "roughness", "metallic"):
        assert 0 <= sample["maps"][name].min() and sample["maps"][name].max() <= 1, name
    torch.testing.assert_close(sample["maps"]["normal"].norm(dim=0), torch.ones(SIZE, SIZE))
    assert sample["sample"].startswith("sample_") and sample["material"].startswith("material_")


def test_samples_depend_only_on_index_and_seed() -> None:
    train, _ = _sets(_module())
    again_train, _ = _sets(_module())
    for key in (0, 3):
        assert torch.equal(train[key]["views"], again_train[key]["views"])
    # The per-epoch sample seed does not change material, lights or cameras.
    assert torch.equal(train[(1, 11)]["views"], train[(1, 99)]["views"])
    assert torch.equal(train[(1, 11)]["maps"]["albedo"], train[1]["maps"]["albedo"])
    other, _ = _sets(_module(seed=8))
    assert not torch.equal(train[0]["maps"]["albedo"], other[0]["maps"]["albedo"])


def test_split_is_by_material_and_covers_every_sample() -> None:
    module = _module(num_samples=12, samples_per_material=3, val_ratio=0.25)
    train, val = _sets(module)
    assert len(train) + len(val) == 12 and len(val) == 3
    train_materials = {train[i]["material"] for i in range(len(train))}
    val_materials = {val[i]["material"] for i in range(len(val))}
    assert train_materials.isdisjoint(val_materials)
    assert len(train_materials) == 3 and len(val_materials) == 1
    assert sorted(train.indices + val.indices) == list(range(12))


def test_renders_both_picks_clean_or_dirty_from_the_sample_seed() -> None:
    clean, _ = _sets(_module(renders="clean"))
    dirty, _ = _sets(_module(renders="dirty"))
    both, _ = _sets(_module(renders="both"))
    assert not torch.equal(clean[0]["views"], dirty[0]["views"])
    picks = {both.variant(seed) for seed in range(20)}
    assert picks == {"clean", "dirty"}
    for seed in range(6):
        expected = clean if both.variant(seed) == "clean" else dirty
        assert torch.equal(both[(0, seed)]["views"], expected[(0, seed)]["views"])


def test_augmentation_runs_on_training_samples_only() -> None:
    calls: list[int] = []

    def spy(views: torch.Tensor, maps: dict[str, torch.Tensor], seed: int):
        calls.append(seed)
        return views.flip(-1), {k: v.flip(-1) for k, v in maps.items()}

    train, val = _sets(_module(augment=spy))
    plain_train, plain_val = _sets(_module())
    assert torch.equal(train[(0, 5)]["views"], plain_train[0]["views"].flip(-1))
    assert calls == [5]
    assert torch.equal(val[0]["views"], plain_val[0]["views"]) and calls == [5]


def test_with_the_real_augmentation() -> None:
    train, _ = _sets(_module(augment=Augmentation(aligned=True)))
    plain, _ = _sets(_module())
    assert torch.equal(train[(0, 3)]["views"], train[(0, 3)]["views"])  # seeded
    assert not torch.equal(train[(0, 3)]["views"], plain[0]["views"])
    torch.testing.assert_close(train[(0, 3)]["maps"]["normal"].norm(dim=0), torch.ones(SIZE, SIZE))


def test_loader_batches_samples() -> None:
    module = _module(camera="perspective", aligned=False)
    loader = module.train_dataloader()
    loader.sampler.set_epoch(0)
    batch = next(iter(loader))
    assert batch["views"].shape == (2, 2, 3, SIZE, SIZE)
    assert batch["maps"]["normal"].shape == (2, 3, SIZE, SIZE)
    assert len(batch["sample"]) == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"camera": "perspective", "aligned": True}, r"data\.camera=perspective with data\.aligned=true"),
        ({"camera": "fisheye"}, r"data\.camera='fisheye': expected one of \['aligned', 'perspective'\]"),
        ({"renders": "muddy"}, r"data\.renders='muddy': expected one of \['clean', 'dirty', 'both'\]"),
        ({"num_samples": 0}, r"data\.num_samples=0: expected >= 1"),
        ({"samples_per_material": 0}, r"data\.samples_per_material=0: expected >= 1"),
        ({"artifact_strength": -0.5}, r"data\.artifact_strength=-0\.5: expected >= 0"),
        ({"val_ratio": 1.0}, r"data\.val_ratio=1\.0: expected a value in \[0, 1\)"),
        ({"num_samples": 3, "samples_per_material": 3}, r"gives 1 material; a validation split"),
        ({"resolution": 4}, r"data\.resolution=4: expected >= 8"),
    ],
)
def test_bad_settings_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _module(**overrides)


def test_schema_fields_are_the_constructor_arguments() -> None:
    fields = {f.name for f in dataclasses.fields(SyntheticDataConfig)} - {"_target_"}
    build_time = {"map_resolution"}  # passed by neuropbr.build from decoder.sr_scale
    parameters = set(inspect.signature(SyntheticDataModule.__init__).parameters) - {"self"} - build_time
    assert fields == parameters


def test_super_resolution_targets_are_served_at_map_resolution() -> None:
    module = _module(resolution=16, map_resolution=32)
    module.setup()
    sample = module.train_set[0]
    assert sample["views"].shape[-2:] == (16, 16)
    assert all(m.shape[-2:] == (32, 32) for m in sample["maps"].values())


def test_composed_config_builds_the_module(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("data=synthetic", "data.resolution=32", "data.num_samples=4", "data.num_workers=0")
    module = instantiate(cfg.data)
    assert isinstance(module, SyntheticDataModule) and isinstance(module.augment, Augmentation)
    cfg = compose_cfg("data=synthetic", "data.camera=perspective")
    with pytest.raises(Exception, match=r"data\.camera=perspective with data\.aligned=true"):
        instantiate(cfg.data)
    shifted = instantiate(compose_cfg("data=synthetic", "data.exposure_shift_ev=[-1.5,0.5]").data)
    assert shifted.generator.exposure_shift_ev == (-1.5, 0.5) and module.generator.exposure_shift_ev is None


def test_cache_serves_the_renders_of_every_sample_from_memory() -> None:
    fresh = _module(renders="both")
    cached = _module(renders="both", cache=True)
    for a, b in zip(_sets(fresh), _sets(cached)):
        assert b.rendered is not None and a.rendered is None
        for position in range(len(a)):
            for sample_seed in (0, 1):  # renders=both: both variants come from the cache
                x, y = a[(position, sample_seed)], b[(position, sample_seed)]
                assert x["sample"] == y["sample"]
                assert (x["views"] - y["views"]).abs().max() <= 0.5 / 255 + 1e-6  # stored as uint8
                for name, value in x["maps"].items():
                    torch.testing.assert_close(y["maps"][name], value, atol=2e-3, rtol=0, msg=name)
    assert cached.training_maps(4)[0]["albedo"].shape == (3, SIZE, SIZE)
