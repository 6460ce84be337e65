"""``python -m neuropbr.infer``: photos of a flat material -> albedo, roughness, metallic, normal PNGs.

::

    python -m neuropbr.infer checkpoint=best_model.pth views=[a.png,b.png,c.png] out=maps/
    python -m neuropbr.infer checkpoint=best_model.pth views=[...] size=[2048,1024] bit_depth=16
    python -m neuropbr.infer checkpoint=best_model.pth views=[...] tiled=true preview=true
    python -m neuropbr.infer checkpoint=best_model.pth input_dir=DATASET_ROOT out=maps/
    python -m neuropbr.infer model=runs:/<run id>/model views=[...]     # the MLflow model of a run
    python -m neuropbr.infer model=models:/<name>/<version> views=[...]   # a registered version
    python -m neuropbr.infer checkpoint=best_model.pth photos=[a.jpg,b.jpg,c.jpg] align=true out=maps/

The generator is rebuilt from the checkpoint's stored config (EMA weights when present). Views of
any size and aspect ratio are resized to the training resolution (or, with ``tiled=true``, run
as overlapping tiles at their own scale) and the maps are written at the views' size or at
``size=[W,H]``: ``albedo.png`` (sRGB), ``roughness.png``, ``metallic.png`` (grayscale) and
``normal.png`` (``(n + 1) / 2``, OpenGL +Y up unless ``normal_convention=directx``), 8-bit or
``bit_depth=16``; ``preview=true`` adds ``preview.png``, the material rendered under a point
light. Batch mode (``input_dir=``) reads a dataset root in the folder layout and writes
``out/<material>/`` (one sample per material in ``input/render_metadata.json``, so the maps pair
with ``output/<material>/``), ``out/<material>/<sample>/`` (several) or ``out/<sample>/``
(``naming=sample``, or no metadata): see :func:`~neuropbr.inference.output_folders`.

``photos=[...] align=true`` takes handheld photos instead of aligned views: :mod:`neuropbr.align`
rectifies the first photo (``corners=[[x,y],...]``, or found on a plain background) and aligns the
others to it, then the rectified views are predicted as above; ``aligned/`` (the rectified views)
and ``align_report.json`` (inliers and reprojection error per photo) are written beside the maps.
A photo that fails a quality gate stops the run with a message naming it and why, and no maps are
written. In batch mode ``align=true`` aligns each sample's views, with the corners of a view taken
from ``<sample folder>/corners.json`` (``{"0": [[x, y], ...]}``) when present. Nothing else is
written (no run directory, no log file).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from neuropbr.align import (
    ALIGNED_DIR,
    REPORT_FILE,
    AlignmentError,
    CornerError,
    align_photos,
    order_corners,
    read_photos,
    write_alignment,
)
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
    given = [key for key in ("views", "photos", "input_dir") if cfg.get(key) is not None]
    if len(given) != 1:
        raise ValueError(
            "views / input_dir: give exactly one of views, photos and input_dir: views=[a.png,b.png,c.png] (aligned views of "
            "one sample), photos=[a.jpg,b.jpg,c.jpg] align=true (handheld photos of one sample), or "
            f"input_dir=DATASET_ROOT for every sample of a dataset (got views={cfg.views}, "
            f"photos={cfg.get('photos')}, input_dir={cfg.input_dir})"
        )
    _check_align_config(cfg)
    if cfg.bit_depth not in (8, 16):
        raise ValueError(f"bit_depth={cfg.bit_depth}: choose 8 or 16")
    if not 0.0 <= cfg.tile_overlap <= 0.9:
        raise ValueError(f"tile_overlap={cfg.tile_overlap}: expected a value in [0, 0.9]")
    if cfg.tile_batch_size < 1:
        raise ValueError(f"tile_batch_size={cfg.tile_batch_size}: expected >= 1")
    if cfg.preview_max_size < 8:
        raise ValueError(f"preview_max_size={cfg.preview_max_size}: expected >= 8")
    parse_size(cfg.size)


def _check_align_config(cfg: DictConfig) -> None:
    """The alignment keys: which inputs they go with, ranges, and the corners' shapes."""
    if cfg.align and cfg.views is not None:
        raise ValueError(
            "align=true: views= are already rectified, aligned views; pass handheld photos as "
            "photos=[a.jpg,b.jpg,c.jpg] align=true"
        )
    if cfg.photos is not None and not cfg.align:
        raise ValueError(
            "photos: raw photos need align=true (they are rectified and aligned first); already "
            "aligned views go to views=[...]"
        )
    for key in ("corners", "photo_corners"):
        if cfg[key] is not None and cfg.photos is None:
            raise ValueError(
                f"{key}: applies to photos=[...] align=true only (in batch mode put a sample's corners in "
                '<sample folder>/corners.json as {"0": [[x,y],[x,y],[x,y],[x,y]]})'
            )
    limits = {"align_resolution": 16, "align_feature_size": 128, "align_min_inliers": 8}
    for key, low in limits.items():
        if cfg[key] is not None and cfg[key] < low:
            raise ValueError(f"{key}={cfg[key]}: expected >= {low}")
    if cfg.corners is not None:
        _check_corners(list(cfg.corners), "corners")
    if cfg.photo_corners is not None:
        if len(cfg.photo_corners) != len(cfg.photos):
            raise ValueError(
                f"photo_corners: {len(cfg.photo_corners)} entries for {len(cfg.photos)} photos (expected one "
                "per photo: its four corners, or null to align it by features)"
            )
        for i, entry in enumerate(cfg.photo_corners):
            if entry is not None:
                _check_corners(list(entry), f"photo_corners[{i}]")


def _check_corners(corners: Sequence[Sequence[float]], key: str) -> None:
    try:
        order_corners([list(point) for point in corners])
    except CornerError as err:
        raise ValueError(f"{key}={[list(p) for p in corners]}: {err}") from None


def _read_corner_file(sample_dir: Path, count: int) -> list[list[list[float]] | None] | None:
    """A batch sample's ``corners.json`` (``{"<view index>": [[x, y] x 4]}``) as per-photo corners."""
    path = sample_dir / "corners.json"
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read corners ({err})") from err
    expected = f'expected {{"<view index 0..{count - 1}>": [[x,y],[x,y],[x,y],[x,y]]}}'
    if not isinstance(content, dict):
        raise ValueError(f"{path}: {expected}, got {type(content).__name__}")
    per_photo: list[list[list[float]] | None] = [None] * count
    for index, corners in content.items():
        if not (isinstance(index, str) and index.isdigit() and int(index) < count):
            raise ValueError(f"{path}: key {index!r}: {expected}")
        _check_corners(corners, f"{path}[{index}]")
        per_photo[int(index)] = corners
    return per_photo


def align_sample(
    cfg: DictConfig,
    paths: Sequence[str | Path],
    out_dir: Path,
    key: str,
    photo_corners: Sequence[Sequence[Sequence[float]] | None] | None = None,
    batch: bool = False,
) -> Tensor:
    """Rectify and align one sample's photos; write ``aligned/`` and ``align_report.json``.

    Args:
        cfg: the ``infer`` config (``corners``, ``align_*``).
        paths: the photos, reference first.
        out_dir: the sample's output folder.
        key: config key of the paths, for messages.
        photo_corners: per photo, its corners or None (``cfg.photo_corners`` when not given).
        batch: batch mode (failure hints point at ``corners.json``).

    Returns:
        (V, 3, H, W) rectified views.

    Raises:
        AlignmentError: a photo failed a quality gate (the report is written all the same).
    """
    photos = read_photos(paths, key)
    resolution = cfg.align_resolution
    try:
        aligned = align_photos(
            photos,
            [str(p) for p in paths],
            corners=None if cfg.corners is None else [list(p) for p in cfg.corners],
            photo_corners=photo_corners if photo_corners is not None else _plain(cfg.photo_corners),
            size=None if resolution is None else (resolution, resolution),
            feature_size=cfg.align_feature_size,
            min_inliers=cfg.align_min_inliers,
            key=key,
            corner_file=Path(paths[0]).parent / "corners.json" if batch else None,
        )
    except AlignmentError as err:
        write_alignment(out_dir, err.report)
        raise
    write_alignment(out_dir, aligned.report, aligned.views)
    return aligned.views


def _plain(value: ListConfig | None) -> list[Any] | None:
    """``cfg.photo_corners`` as plain lists (its schema makes it a list or None)."""
    if value is None:
        return None
    plain = OmegaConf.to_container(value)
    assert isinstance(plain, list)
    return plain


def predict_views(model: LoadedGenerator, cfg: DictConfig, views: Tensor) -> dict[str, Tensor]:
    """Predict one sample's maps from its (V, 3, H, W) views as ``cfg`` asks (resized or tiled)."""
    size = parse_size(cfg.size)
    if cfg.tiled:
        return predict_tiled(model, views, size, cfg.tile_size, cfg.tile_overlap, cfg.tile_batch_size)
    return predict_resized(model, views, size)


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
    model_uri = cfg.get("model")
    if OmegaConf.is_missing(cfg, "checkpoint") == (model_uri is None):
        raise ValueError(
            "checkpoint / model: give exactly one: checkpoint=PATH (a .pth written by neuropbr.train) or "
            "model=runs:/<run id>/model | models:/<name>/<version> (an MLflow model a training run logged)"
            + (f"; got both (model={model_uri})" if model_uri is not None else "")
        )
    _check_config(cfg)
    if model_uri is not None:
        from neuropbr.mlflow_model import load_model

        model = load_model(str(model_uri), resolve_device(choice(cfg.device)))
    else:
        model = load_generator(cfg.checkpoint, resolve_device(choice(cfg.device)), prefer_ema=cfg.ema)
    if cfg.tiled and not model.config.data.get("aligned", True):
        log.warning(
            "tiled=true with a model trained on unaligned views (data.aligned=false): a tile of one "
            "view shows other texels than the same tile of another view"
        )
    out = Path(cfg.out).expanduser()
    if cfg.photos is not None:
        if len(cfg.photos) != model.num_views:
            raise ValueError(
                f"photos: the checkpoint's model takes data.num_views={model.num_views} views, got "
                f"{len(cfg.photos)}: {list(cfg.photos)}"
            )
        views = align_sample(cfg, list(cfg.photos), out, "photos")
        maps = predict_views(model, cfg, views)
        written = _write_sample(maps, out, cfg)
        log.info(
            "wrote %s, %s/ and %s to %s", ", ".join(p.name for p in written), ALIGNED_DIR, REPORT_FILE, out
        )
        return [out]
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
    folders, failed = [], []
    for index, (sample, rel) in enumerate(zip(samples, relative), 1):
        folder = out / rel
        key = f"input_dir ({sample.variant}/{sample.name})"
        if cfg.align:
            try:
                corners = _read_corner_file(sample.views[0].parent, len(sample.views))
                views = align_sample(cfg, sample.views, folder, key, photo_corners=corners, batch=True)
            except AlignmentError as err:
                log.error("[%d/%d] %s/%s: %s", index, len(samples), sample.variant, sample.name, err)
                failed.append(f"  {sample.variant}/{sample.name}: see {folder / REPORT_FILE}")
                continue
            maps = predict_views(model, cfg, views)
        else:
            maps = predict_sample(model, cfg, sample.views, key)
        _write_sample(maps, folder, cfg)
        folders.append(folder)
        log.info("[%d/%d] %s/%s -> %s", index, len(samples), sample.variant, sample.name, folder)
    if failed:
        raise ValueError(
            f"align: {len(failed)} of {len(samples)} sample(s) failed alignment and got no maps (the "
            f"other {len(folders)} did):\n" + "\n".join(failed)
        )
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
