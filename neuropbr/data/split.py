"""Seeded, reproducible train/val split by MATERIAL (DESIGN section 3)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from neuropbr.utils.seeding import derive_seed

log = logging.getLogger(__name__)


def split_by_material(materials: Sequence[str], val_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Split sample indices so that no material appears in both train and val.

    Args:
        materials: the material name of each sample (several samples may share one).
        val_ratio: share of MATERIALS that go to validation, in [0, 1).
        seed: the run's seed; the same seed and materials always give the same split.

    Returns:
        ``(train_indices, val_indices)``, each sorted. With a positive ratio and at least two
        materials, validation gets at least one material and train keeps at least one.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"data.val_ratio={val_ratio}: expected a value in [0, 1)")
    unique = sorted(set(materials))
    rng = random.Random(derive_seed(seed, "material-split"))
    rng.shuffle(unique)
    n_val = round(len(unique) * val_ratio)
    if val_ratio > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    val_materials = set(unique[:n_val])
    train_idx = [i for i, m in enumerate(materials) if m not in val_materials]
    val_idx = [i for i, m in enumerate(materials) if m in val_materials]
    log.info(
        "split by material (seed %d, val_ratio %.3f): train %d samples / %d materials, "
        "val %d samples / %d materials",
        seed,
        val_ratio,
        len(train_idx),
        len(unique) - n_val,
        len(val_idx),
        n_val,
    )
    return train_idx, val_idx
