"""``python -m neuropbr.infer``: photos of a flat material -> albedo, roughness, metallic, normal PNGs.

::

    python -m neuropbr.infer checkpoint=best_model.pth views=[a.png,b.png,c.png] out=maps/
    python -m neuropbr.infer checkpoint=best_model.pth views=[...] size=[2048,1024] bit_depth=16
    python -m neuropbr.infer checkpoint=best_model.pth views=[...] tiled=true preview=true
    python -m neuropbr.infer checkpoint=best_model.pth input_dir=DATASET_ROOT out=maps/

The generator is rebuilt from the checkpoint's stored config (EMA weights when present). Views of
any size and aspect ratio are resized to the training resolution (or, with ``tiled=true``, run
as overlapping tiles at their own scale) and the maps are written at the views' size or at
``size=[W,H]``: ``albedo.png`` (sRGB), ``roughness.png``, ``metallic.png`` (grayscale) and
``normal.png`` (``(n + 1) / 2``, OpenGL +Y up unless ``normal_convention=directx``), 8-bit or
``bit_depth=16``; ``preview=true`` adds ``preview.png``, the material rendered under a point
light. Batch mode (``input_dir=``) reads a dataset root in the folder layout and writes
``out/<material>/`` (one sample per material in ``input/render_metadata.json``, so the maps pair
with ``output/<material>/``), ``out/<material>/<sample>/`` (several) or ``out/<sample>/``
(``naming=sample``, or no metadata): see :func:`~neuropbr.inference.output_folders`. Nothing else
is written (no run directory, no log file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from neuropbr.config import config_dir, register_configs
from neuropbr.data.io import save_image
from neuropbr.inference import (
    MAP_FILES,
    PREVIEW_FILE,
    LoadedGenerator,
    find_samples,
    load_generator,
    output_folders,
    parse_size,
    predict_resized,
    predict_tiled,
    read_views,
    render_preview,
    write_maps,
)
from neuropbr.training.precision import resolve_device
from neuropbr.utils.choices import choice

log = logging.getLogger(__name__)


def _check_config(cfg: DictConfig) -> None:
    """Single-key and cross-key checks that need no checkpoint (fail before loading one)."""
    has_views, has_dir = cfg.views is not None, cfg.input_dir is not None
    if has_views == has_dir:
        raise ValueError(
            "views / input_dir: give exactly one: views=[a.png,b.png,c.png] for one sample, or "
            f"input_dir=DATASET_ROOT for every sample of a dataset (got views={cfg.views}, "
            f"input_dir={cfg.input_dir})"
        )
    if cfg.bit_depth not in (8, 16):
        raise ValueError(f"bit_depth={cfg.bit_depth}: choose 8 or 16")
    if not 0.0 <= cfg.tile_overlap <= 0.9:
        raise ValueError(f"tile_overlap={cfg.tile_overlap}: expected a value in [0, 0.9]")
    if cfg.tile_batch_size < 1:
        raise ValueError(f"tile_batch_size={cfg.tile_batch_size}: expected >= 1")
    if cfg.preview_max_size < 8:
        raise ValueError(f"preview_max_size={cfg.preview_max_size}: expected >= 8")
    parse_size(cfg.size)


def predict_sample(
    model: LoadedGenerator, cfg: DictConfig, view_paths: Sequence[str | Path], key: str
) -> dict[str, Tensor]:
    """Read one sample's views and predict its maps as ``cfg`` asks (resized or tiled).

    Args:
        model: the loaded generator.
        cfg: the ``infer`` config (``size``, ``tiled``, ``tile_*``).
        view_paths: the sample's V view files.
        key: config key of the paths, for messages (``views`` or ``input_dir``).

    Returns:
        ``{name: (C, H_out, W_out)}`` on the CPU.
    """
    views = read_views(view_paths, model.num_views, key)  # (V, 3, H, W)
    size = parse_size(cfg.size)
    if cfg.tiled:
        return predict_tiled(model, views, size, cfg.tile_size, cfg.tile_overlap, cfg.tile_batch_size)
    return predict_resized(model, views, size)


def _write_sample(maps: dict[str, Tensor], out_dir: Path, cfg: DictConfig) -> list[Path]:
    written = write_maps(maps, out_dir, cfg.bit_depth, choice(cfg.normal_convention))
    if cfg.preview:
        path = out_dir / PREVIEW_FILE
        save_image(path, render_preview(maps, cfg.preview_max_size))
        written.append(path)
    return written


def infer(cfg: DictConfig) -> list[Path]:
    """Run inference as the ``infer`` config says.

    Args:
        cfg: the composed ``conf/infer.yaml``.

    Returns:
        Every folder maps were written to (``out``, or one per sample in batch mode).

    Raises:
        ValueError: bad keys or inputs (the message names the key, what was expected and got).
        CheckpointError: a missing, unreadable or incompatible checkpoint.
    """
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ValueError("checkpoint: missing; pass checkpoint=PATH (a .pth written by neuropbr.train)")
    _check_config(cfg)
    model = load_generator(cfg.checkpoint, resolve_device(choice(cfg.device)), prefer_ema=cfg.ema)
    if cfg.tiled and not model.config.data.get("aligned", True):
        log.warning(
            "tiled=true with a model trained on unaligned views (data.aligned=false): a tile of one "
            "view shows other texels than the same tile of another view"
        )
    out = Path(cfg.out).expanduser()
    if cfg.views is not None:
        maps = predict_sample(model, cfg, list(cfg.views), "views")
        written = _write_sample(maps, out, cfg)
        height, width = maps["albedo"].shape[-2:]
        log.info(
            "wrote %s (%dx%d, %d-bit) to %s",
            ", ".join(p.name for p in written),
            width,
            height,
            cfg.bit_depth,
            out,
        )
        return [out]
    renders = choice(cfg.renders)
    samples = find_samples(cfg.input_dir, model.num_views, renders)
    # With renders=both a name may exist in clean/ and dirty/: output_folders keeps them apart.
    relative = output_folders(samples, cfg.input_dir, choice(cfg.naming), renders)
    folders = []
    for index, (sample, rel) in enumerate(zip(samples, relative), 1):
        folder = out / rel
        maps = predict_sample(model, cfg, sample.views, f"input_dir ({sample.variant}/{sample.name})")
        _write_sample(maps, folder, cfg)
        folders.append(folder)
        log.info("[%d/%d] %s/%s -> %s", index, len(samples), sample.variant, sample.name, folder)
    return folders


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="infer")
def _main(cfg: DictConfig) -> None:
    """Entry point: predict, write, print where the maps went."""
    folders = infer(cfg)
    print(  # noqa: T201 - the CLI's one human-readable result line
        f"wrote {', '.join(MAP_FILES)}{' and ' + PREVIEW_FILE if cfg.preview else ''} for "
        f"{len(folders)} sample(s) under {Path(cfg.out).expanduser()}"
    )


def main() -> None:
    """Console entry point: register the config schemas, then run the Hydra app."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
