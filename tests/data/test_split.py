"""Train/val splits by MATERIAL and by FAMILY: disjoint, reproducible per seed, counts logged."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
from folder_datasets import WrittenDataset, train_set, val_set

from neuropbr.data.folder import FolderDataModule
from neuropbr.data.index import DatasetError
from neuropbr.data.split import held_out_families, split_by_family, split_by_material, split_samples
from neuropbr.data.synthetic import SyntheticDataModule, SyntheticDataset

MATERIALS = [f"m{i % 20}" for i in range(60)]  # 20 materials, 3 samples each


def test_split_shares_no_material_and_covers_every_sample() -> None:
    train, val = split_by_material(MATERIALS, 0.25, seed=1)
    assert sorted(train + val) == list(range(len(MATERIALS)))
    train_materials = {MATERIALS[i] for i in train}
    val_materials = {MATERIALS[i] for i in val}
    assert train_materials.isdisjoint(val_materials)
    assert val_materials and train_materials and len(val_materials | train_materials) == 20


def test_validation_share_follows_val_ratio() -> None:
    many = [f"material_{i}" for i in range(4000)]
    _, val = split_by_material(many, 0.1, seed=5)
    assert abs(len(val) / len(many) - 0.1) < 0.015  # binomial: 4 standard deviations


def test_adding_materials_never_moves_existing_ones() -> None:
    base = [f"material_{i}" for i in range(200)]
    grown = base + [f"new_{i}" for i in range(50)]
    _, val = split_by_material(base, 0.2, seed=3)
    _, val_grown = split_by_material(grown, 0.2, seed=3)
    before = {base[i] for i in val}
    after = {grown[i] for i in val_grown}
    assert before == after & set(base)  # no training material became a validation one, nor back


def test_split_is_identical_for_a_seed_and_differs_for_another() -> None:
    assert split_by_material(MATERIALS, 0.25, seed=1) == split_by_material(list(MATERIALS), 0.25, seed=1)
    assert split_by_material(MATERIALS, 0.25, seed=1) != split_by_material(MATERIALS, 0.25, seed=2)


def test_split_keeps_one_material_on_each_side_when_possible() -> None:
    train, val = split_by_material(["a", "a", "b"], 0.01, seed=0)
    assert train and val
    with pytest.raises(ValueError, match=r"data.val_ratio=1.0: expected a value in \[0, 1\)"):
        split_by_material(MATERIALS, 1.0, seed=0)


def _split_ids(root: str, seed: int) -> tuple[list[str], list[str]]:
    dm = FolderDataModule(root=root, resolution=16, renders="both", val_ratio=0.3, seed=seed, num_workers=0)
    dm.setup()
    return [e.id for e in train_set(dm).entries], [e.id for e in val_set(dm).entries]


def test_datamodule_split_is_by_material_and_reproducible(
    make_dataset: Callable[..., WrittenDataset], caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_dataset(num_samples=20, num_materials=10, layout="both", size=8)
    with caplog.at_level(logging.INFO, logger="neuropbr.data"):
        train, val = _split_ids(str(ds.root), seed=3)
    material = {f"{v}/{s}": m for s, m in ds.metadata.items() for v in ("clean", "dirty")}
    assert {material[i] for i in train}.isdisjoint({material[i] for i in val})
    assert 1 <= len({material[i] for i in val}) <= 9
    # The clean and dirty renders of a sample share its material, hence its side.
    for sample_id in val:
        other = (
            sample_id.replace("clean/", "dirty/")
            if sample_id.startswith("clean/")
            else sample_id.replace("dirty/", "clean/")
        )
        assert other in val
    assert (train, val) == _split_ids(str(ds.root), seed=3)
    assert (train, val) != _split_ids(str(ds.root), seed=4)
    n_val = len({material[i] for i in val})
    expected = (
        f"train {len(train)} samples / {10 - n_val} materials, val {len(val)} samples / {n_val} materials"
    )
    assert expected in caplog.text


# --- by family ------------------------------------------------------------------------------------

FAMILY_OF = {f"m{i}": ("wood", "tiles", "metal", "fabric", "stone")[i % 5] for i in range(20)}


def test_family_split_shares_no_family_and_no_material() -> None:
    families = [FAMILY_OF[m] for m in MATERIALS]
    train, val = split_by_family(MATERIALS, families, 0.3, seed=2)
    assert sorted(train + val) == list(range(len(MATERIALS)))
    assert {families[i] for i in train}.isdisjoint({families[i] for i in val})
    assert {MATERIALS[i] for i in train}.isdisjoint({MATERIALS[i] for i in val})
    assert val and train
    assert split_by_family(MATERIALS, families, 0.3, seed=2) == (train, val)


def test_explicit_val_families_are_held_out_exactly() -> None:
    families = [FAMILY_OF[m] for m in MATERIALS]
    _, val = split_by_family(MATERIALS, families, 0.0, seed=0, val_families=["wood", "metal"])
    assert {families[i] for i in val} == {"wood", "metal"}
    assert held_out_families(families, 0.0, 0, ["stone"]) == {"stone"}
    assert held_out_families(families, 0.0, 0, ["stone", "velvet"]) == {"stone"}  # absent: warned


@pytest.mark.parametrize(
    ("val_families", "message"),
    [
        (["velvet"], "none is among the data's families"),
        (sorted(set(FAMILY_OF.values())), "every family"),
    ],
)
def test_bad_val_families_name_the_key(val_families: list[str], message: str) -> None:
    families = [FAMILY_OF[m] for m in MATERIALS]
    with pytest.raises(ValueError, match=message):
        split_by_family(MATERIALS, families, 0.2, seed=0, val_families=val_families)


def test_split_samples_needs_families_for_a_family_split() -> None:
    with pytest.raises(ValueError, match="names no families"):
        split_samples("family", MATERIALS, None, 0.2, seed=0)
    with pytest.raises(ValueError, match=r"only used with data\.split=family"):
        split_samples("material", MATERIALS, None, 0.2, seed=0, val_families=["wood"])


def test_synthetic_family_split_holds_out_whole_families() -> None:
    module = SyntheticDataModule(
        resolution=16, num_views=1, num_samples=60, batch_size=2, num_workers=0, seed=3, augment=None,
        split="family", val_families=["wood", "leather"],
    )  # fmt: skip
    module.setup()
    assert module.families["val"] == ["leather", "wood"]
    assert not set(module.families["train"]) & {"leather", "wood"}
    generator = module.generator
    for dataset, allowed in (
        (module.train_set, set(module.families["train"])),
        (module.val_set, {"leather", "wood"}),
    ):
        assert isinstance(dataset, SyntheticDataset)
        assert {generator.material_family(generator.material_index(i)) for i in dataset.indices} <= allowed
    # the family a split assumes is the family the generated material really has
    index = module.val_set.indices[0]
    assert generator.material(generator.material_index(index)).family in {"leather", "wood"}


def test_folder_family_split_reads_material_families(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=12, num_materials=6, layout="clean", size=8)
    materials = sorted(set(ds.metadata.values()))
    family = {m: ("brick" if i % 2 else "wood") for i, m in enumerate(materials)}
    dm = FolderDataModule(
        root=str(ds.root), resolution=8, split="family", val_families=["wood"], num_workers=0
    )
    with pytest.raises(DatasetError, match="names the families"):
        dm.setup()
    (ds.root / "input" / "material_families.json").write_text(json.dumps(family))
    dm.setup()
    val_materials = {e.material for e in val_set(dm).entries}
    assert val_materials == {m for m, f in family.items() if f == "wood"}
    assert {e.material for e in train_set(dm).entries}.isdisjoint(val_materials)
