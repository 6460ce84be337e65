"""Seeded, reproducible train/val split by MATERIAL (DESIGN section 3)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from neuropbr.utils.seeding import derive_seed

log = logging.getLogger(__name__)


def material_draw(material: str, seed: int) -> float:
    """A material's uniform draw in [0, 1), fixed by (seed, material name) alone."""
    return derive_seed(seed, "material-split", material) / 2.0**63


def split_by_material(materials: Sequence[str], val_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Split sample indices so that no material appears in both train and val.

    Each material goes to validation when its own seeded draw (:func:`material_draw`) is below
    ``val_ratio``. A material's side therefore depends only on the seed and its name: adding,
    removing or skipping other materials never moves it across the split (a shuffled list would
    move many, leaking training materials into validation when a dataset grows). The validation
    share is ``val_ratio`` in expectation; with a positive ratio and at least two materials,
    validation gets at least one material and train keeps at least one.

    Args:
        materials: the material name of each sample (several samples may share one).
        val_ratio: expected share of MATERIALS that go to validation, in [0, 1).
        seed: the run's seed; the same seed and materials always give the same split.

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"data.val_ratio={val_ratio}: expected a value in [0, 1)")
    draws = {m: material_draw(m, seed) for m in set(materials)}
    val_materials = {m for m, u in draws.items() if u < val_ratio}
    if val_ratio > 0 and len(draws) >= 2:
        ranked = sorted(draws, key=lambda m: (draws[m], m))
        if not val_materials:  # too few materials for the ratio: the lowest draw validates
            val_materials = {ranked[0]}
        elif len(val_materials) == len(draws):  # keep something to train on
            val_materials.discard(ranked[-1])
    train_idx = [i for i, m in enumerate(materials) if m not in val_materials]
    val_idx = [i for i, m in enumerate(materials) if m in val_materials]
    log.info(
        "split by material (seed %d, val_ratio %.3f): train %d samples / %d materials, "
        "val %d samples / %d materials",
        seed,
        val_ratio,
        len(train_idx),
        len(draws) - len(val_materials),
        len(val_idx),
        len(val_materials),
    )
    return train_idx, val_idx
