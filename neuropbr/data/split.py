"""Seeded, reproducible train/val splits: by MATERIAL (default) or by whole FAMILY.

A material-disjoint split keeps every validation material unseen, but its family (wood, tiles,
brushed metal ...) is still in training: a model can score well by recognising the family's
typical maps without learning to read them from the views. ``data.split=family`` holds out whole
families, which is the question users ask: what does the model do on kinds of material it never saw?
"""

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


def family_draw(family: str, seed: int) -> float:
    """A family's uniform draw in [0, 1), fixed by (seed, family name) alone."""
    return derive_seed(seed, "family-split", family) / 2.0**63


def held_out_families(
    families: Sequence[str], val_ratio: float, seed: int, val_families: Sequence[str] | None = None
) -> set[str]:
    """The families a family split validates on.

    Args:
        families: every family present (duplicates allowed).
        val_ratio: expected share of FAMILIES held out when ``val_families`` is not given; with a
            positive ratio and at least two families, at least one is held out and one trains.
        seed: the run's seed.
        val_families: an explicit list instead of the seeded draw; each must be present.

    Raises:
        ValueError: no explicit family is in the data (absent ones are only warned about: a
            small dataset may hold no sample of some family), or the list holds out every family.
    """
    present = sorted(set(families))
    if val_families is not None:
        chosen = set(val_families) & set(present)
        absent = sorted(set(val_families) - set(present))
        if not chosen:
            raise ValueError(
                f"data.val_families={sorted(val_families)}: none is among the data's families {present}"
            )
        if absent:  # e.g. a small dataset that happens to hold no sample of some family
            log.warning(
                "data.val_families: %s not in the data's families %s; holding out %s",
                absent,
                present,
                sorted(chosen),
            )
        if present and chosen == set(present):
            raise ValueError(
                f"data.val_families={sorted(chosen)} holds out every family; keep one to train on"
            )
        return chosen
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"data.val_ratio={val_ratio}: expected a value in [0, 1)")
    draws = {f: family_draw(f, seed) for f in present}
    chosen = {f for f, u in draws.items() if u < val_ratio}
    if val_ratio > 0 and len(present) >= 2:
        ranked = sorted(present, key=lambda f: (draws[f], f))
        if not chosen:
            chosen = {ranked[0]}
        elif len(chosen) == len(present):
            chosen.discard(ranked[-1])
    return chosen


def split_by_family(
    materials: Sequence[str],
    families: Sequence[str],
    val_ratio: float,
    seed: int,
    val_families: Sequence[str] | None = None,
) -> tuple[list[int], list[int]]:
    """Split sample indices so that no FAMILY appears in both train and val.

    Args:
        materials: the material of each sample (for the log's counts).
        families: the family of each sample (same length).
        val_ratio, seed, val_families: see :func:`held_out_families`.

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    if len(materials) != len(families):
        raise ValueError(f"split_by_family: {len(materials)} materials but {len(families)} families")
    held_out = held_out_families(families, val_ratio, seed, val_families)
    train_idx = [i for i, f in enumerate(families) if f not in held_out]
    val_idx = [i for i, f in enumerate(families) if f in held_out]
    log.info(
        "split by family (seed %d): train %d samples / %d materials of %s; val %d samples / %d "
        "materials of %s",
        seed,
        len(train_idx),
        len({materials[i] for i in train_idx}),
        sorted({families[i] for i in train_idx}),
        len(val_idx),
        len({materials[i] for i in val_idx}),
        sorted(held_out),
    )
    return train_idx, val_idx


def split_samples(
    split: str,
    materials: Sequence[str],
    families: Sequence[str] | None,
    val_ratio: float,
    seed: int,
    val_families: Sequence[str] | None = None,
) -> tuple[list[int], list[int]]:
    """``data.split``: ``material`` (:func:`split_by_material`) or ``family`` (:func:`split_by_family`).

    Raises:
        ValueError: an unknown split, or ``family`` without families in the data.
    """
    if split == "material":
        if val_families is not None:
            raise ValueError("data.val_families is only used with data.split=family")
        return split_by_material(materials, val_ratio, seed)
    if split == "family":
        if families is None:
            raise ValueError(
                "data.split=family: this dataset names no families (folder datasets: add "
                "input/render_params.json as neuropbr.synth writes it, or input/material_families.json "
                '= {"<material>": "<family>"})'
            )
        return split_by_family(materials, families, val_ratio, seed, val_families)
    raise ValueError(f"data.split={split!r}: expected 'material' or 'family'")
