"""From a checkpoint to predicted maps: loading, resizing, tiling, writing (shared by the CLIs).

``neuropbr.infer``, ``neuropbr.evaluate`` and ``neuropbr.export`` all load the generator through
:func:`load_generator`: the generator is rebuilt from the training config stored in the
checkpoint, then given its EMA weights (when present) or its plain weights, strictly.

Two ways to run photos of any size and aspect ratio (views must be aligned to each other, as the
training views are):

- :func:`predict_resized`: the views are resized to the training resolution (square), the
  model runs once, and the maps are resized to the requested size.
- :func:`predict_tiled`: the views are cut into overlapping tiles at their own scale (the tile
  size chosen from the model and the memory it may use, :func:`auto_tile_size`); each tile is
  predicted, and the tiles are blended with a raised-cosine window (zero weight at a tile's edge,
  where zero padding makes predictions least reliable), normalised by the summed weights.
  Blended normals are renormalised.

Resized normals are renormalised too (:func:`~neuropbr.utils.tensors.unit_vectors`), and the
other maps stay in [0, 1] (bilinear resampling never overshoots).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm

from neuropbr.build import UnregisteredTargetError, build_generator, check_registered_targets
from neuropbr.data.index import METADATA_FILE, read_metadata
from neuropbr.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    encode_normal,
    find_image,
    read_image,
    save_image,
    to_chw,
)
from neuropbr.maps import PBR_MAPS
from neuropbr.models.fusion.vit import ViTFusion
from neuropbr.models.generator import PBRGenerator
from neuropbr.training.checkpoint import CheckpointError, load_checkpoint, load_module_state
from neuropbr.utils.tensors import unit_vectors

log = logging.getLogger(__name__)

#: Config groups the generator is rebuilt from; a checkpoint's stored config must have them.
_MODEL_GROUPS = ("encoder", "fusion", "decoder", "data")
#: Automatic tile size (:func:`auto_tile_size`): memory the tiles of one forward pass may take,
#: by device type (CUDA: this share of the free memory), and the largest tile.
TILE_MEMORY_BUDGET_CPU = 2 * 2**30
TILE_MEMORY_SHARE_CUDA = 0.5
MAX_AUTO_TILE = 2048
#: More tiles than this get a warning (a photo far larger than the model's tiles).
MANY_TILES = 1000
#: Names of the written map files (``<name>.png``) and of the preview.
MAP_FILES: tuple[str, ...] = tuple(f"{name}.png" for name in PBR_MAPS)
PREVIEW_FILE = "preview.png"


# --- loading ------------------------------------------------------------------------------------


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, in eval mode, and what it was trained with.

    Attributes:
        generator: the network, on its device, eval mode, no gradients.
        config: the training config stored in the checkpoint.
        checkpoint: the file it came from.
        weights: ``"ema"`` or ``"generator"`` (which weights were loaded).
        epoch, step: training progress when the checkpoint was written.
        mlflow_run_id: the training run's MLflow id (None when it ran with ``tracking=none``).
        baseline_maps: the training maps' means the run scored its constant baseline with (None in
            checkpoints written before baselines existed, or without a validation set).
    """

    generator: PBRGenerator
    config: DictConfig
    checkpoint: Path
    weights: str
    epoch: int
    step: int
    mlflow_run_id: str | None
    baseline_maps: dict[str, Any] | None = None

    @property
    def resolution(self) -> int:
        """The training resolution ``data.resolution`` (side of the square views)."""
        return int(self.config.data.resolution)

    @property
    def num_views(self) -> int:
        """V, the training run's ``data.num_views``."""
        return int(self.config.data.num_views)

    @property
    def sr_scale(self) -> int:
        """Output size / input size of the decoder."""
        return int(self.generator.decoder.sr_scale)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (the encoder's bottleneck reduction)."""
        return int(self.generator.encoder.reductions[-1])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device


def load_generator(
    checkpoint: str | Path, device: str | torch.device = "cpu", prefer_ema: bool = True
) -> LoadedGenerator:
    """Rebuild the generator of a training checkpoint and load its weights strictly.

    Works for every checkpoint ``neuropbr.train`` writes: EMA weights are used when present (and
    ``prefer_ema``), and key prefixes of compiled or DDP-wrapped models (``_orig_mod.``,
    ``module.``) are stripped.

    Args:
        checkpoint: path of a ``.pth`` checkpoint holding ``generator`` (+ ``ema``) weights and
            the resolved training ``config``.
        device: where the generator runs.
        prefer_ema: load the EMA weights when the checkpoint has them.

    Returns:
        The :class:`LoadedGenerator`.

    Raises:
        CheckpointError: missing/unreadable file, no stored config, a config naming a component
            that is not the project's own (nothing is built then), a config that cannot be built,
            or weights that do not match the generator of the stored config (every missing,
            unexpected and mis-shaped key is listed).
    """
    path = Path(checkpoint).expanduser()
    state = load_checkpoint(path, map_location="cpu")
    config = state.get("config")
    if not isinstance(config, Mapping) or not config:
        raise CheckpointError(
            f"checkpoint={path}: holds no training config (the 'config' entry is "
            f"{'missing' if config is None else 'empty'}), so its generator cannot be rebuilt; "
            "checkpoints written by `python -m neuropbr.train` store it"
        )
    missing = [group for group in _MODEL_GROUPS if group not in config]
    if missing:
        raise CheckpointError(
            f"checkpoint={path}: its stored config lacks {missing} (expected the groups "
            f"{list(_MODEL_GROUPS)}; found {sorted(config)})"
        )
    try:
        # Before anything is built: the stored config is data from a file, and instantiate
        # would construct whatever it names.
        check_registered_targets(config)
    except UnregisteredTargetError as err:
        raise CheckpointError(f"checkpoint={path}: its stored config {err}") from None
    train_cfg = OmegaConf.create(dict(config))
    if "pretrained" in train_cfg.encoder:
        # The checkpoint's weights replace the backbone's anyway: never fetch pretrained ones.
        train_cfg.encoder.pretrained = False
    try:
        generator = build_generator(train_cfg)
    except Exception as err:  # any build error: say which checkpoint and which components
        names = {group: train_cfg[group].get("_target_") for group in ("encoder", "fusion", "decoder")}
        raise CheckpointError(
            f"checkpoint={path}: cannot rebuild the generator from its stored config {names}: "
            f"{type(err).__name__}: {err}"
        ) from err
    use_ema = prefer_ema and state.get("ema") is not None
    weights = "ema" if use_ema else "generator"
    load_module_state(generator, state[weights], "EMA generator" if use_ema else "generator", path)
    generator.to(device).eval().requires_grad_(False)
    log.info(
        "loaded %s (%s weights, epoch %d, step %d): V=%d, %d px, sr_scale %d",
        path,
        weights,
        state["epoch"],
        state["step"],
        int(train_cfg.data.num_views),
        int(train_cfg.data.resolution),
        generator.decoder.sr_scale,
    )
    return LoadedGenerator(
        generator=generator,
        config=train_cfg,
        checkpoint=path,
        weights=weights,
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        mlflow_run_id=state.get("mlflow_run_id"),
        baseline_maps=state.get("baseline_maps"),
    )


# --- inputs -------------------------------------------------------------------------------------


def read_views(paths: Sequence[str | Path], num_views: int, key: str = "views") -> Tensor:
    """Read the V aligned views of one sample.

    Args:
        paths: the view files.
        num_views: V the model was trained with.
        key: the config key the paths came from (for messages).

    Returns:
        (V, 3, H, W) float32 in [0, 1] (sRGB as on disk), at the files' own size.

    Raises:
        ValueError: wrong number of views, unreadable files (all listed), or views of
            different sizes.
    """
    if len(paths) != num_views:
        raise ValueError(
            f"{key}: the checkpoint's model takes data.num_views={num_views} views, got {len(paths)}: "
            f"{[str(p) for p in paths]}"
        )
    images, problems = [], []
    for i, path in enumerate(paths):
        try:
            images.append(to_chw(read_image(path), 3))  # (3, H, W)
        except ImageReadError as err:
            problems.append(f"  {key}[{i}]={path}: {err.reason}")
    if problems:
        raise ValueError(f"{key}: {len(problems)} view(s) cannot be read:\n" + "\n".join(problems))
    sizes = [tuple(image.shape[-2:]) for image in images]
    if len(set(sizes)) > 1:
        listed = ", ".join(f"{path} {w}x{h}" for path, (h, w) in zip(paths, sizes))
        raise ValueError(
            f"{key}: the views of one sample must have the same size (aligned photos of one "
            f"material); got {listed}"
        )
    return torch.stack(images)  # (V, 3, H, W)


@dataclass(frozen=True)
class SampleViews:
    """One sample of a batch-mode input folder: its name and its view files."""

    name: str
    variant: str
    views: tuple[Path, ...]


def find_samples(root: str | Path, num_views: int, renders: str = "clean") -> list[SampleViews]:
    """The samples of a dataset root in the folder layout, for batch inference.

    Args:
        root: dataset root holding ``input/{clean,dirty}/<sample>/{0..V-1}.png``.
        num_views: V; views ``0 .. V-1`` must exist (extra views are ignored).
        renders: ``clean``, ``dirty`` or ``both``.

    Returns:
        The samples, sorted by variant then name.

    Raises:
        ValueError: the layout is missing, or samples lack views (every one is listed).
    """
    root = Path(root).expanduser()
    variants = ("clean", "dirty") if renders == "both" else (renders,)
    folders = [root / "input" / variant for variant in variants]
    if not any(folder.is_dir() for folder in folders):
        raise ValueError(
            f"input_dir={root}: expected the dataset layout {root}/input/{{clean,dirty}}/<sample>/"
            f"{{0..{num_views - 1}}}.png; none of {[str(f) for f in folders]} exists"
        )
    samples, problems = [], []
    for variant, folder in zip(variants, folders):
        if not folder.is_dir():
            continue
        for sample_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            names = {p.name for p in sample_dir.iterdir() if p.is_file()}
            views = [find_image(sample_dir, str(i), names) for i in range(num_views)]
            absent = [i for i, view in enumerate(views) if view is None]
            if absent:
                files = ", ".join(f"{i}{{{','.join(IMAGE_EXTENSIONS)}}}" for i in absent)
                problems.append(f"  {sample_dir}: no view {', '.join(map(str, absent))} ({files})")
                continue
            samples.append(SampleViews(sample_dir.name, variant, tuple(v for v in views if v is not None)))
    if problems:
        raise ValueError(
            f"input_dir={root}: {len(problems)} sample(s) lack views of the checkpoint's "
            f"data.num_views={num_views}:\n" + "\n".join(problems)
        )
    if not samples:
        raise ValueError(f"input_dir={root}: no sample folders under {[str(f) for f in folders]}")
    return samples


def output_folders(
    samples: Sequence[SampleViews], root: str | Path, naming: str = "auto", renders: str = "clean"
) -> list[Path]:
    """Where batch inference writes each sample's maps, relative to ``out``.

    ``naming=material`` names folders after the materials of ``root/input/render_metadata.json``:
    ``<material>/`` when every material has one sample (the layout of ``root/output/``, so
    predictions and ground truth pair by name), ``<material>/<sample>/`` for every sample when
    some material has several. ``sample`` gives ``<sample>/``; ``auto`` is ``material`` when the
    metadata exists and lists every sample, else ``sample``. ``renders=both`` puts each variant
    in its own ``clean/`` or ``dirty/`` folder first.

    Args:
        samples: from :func:`find_samples`.
        root: the dataset root (``input_dir``).
        naming: ``auto``, ``material`` or ``sample``.
        renders: ``clean``, ``dirty`` or ``both``.

    Returns:
        One relative folder per sample, in the order of ``samples``.

    Raises:
        ValueError: ``naming=material`` without the metadata file, or with samples it does not list.
        DatasetError: an unreadable metadata file or an invalid material name.
    """
    if naming not in ("auto", "material", "sample"):
        raise ValueError(f"naming={naming!r}: choose auto, material or sample")
    prefix = [Path(s.variant) if renders == "both" else Path() for s in samples]
    by_sample = [p / s.name for p, s in zip(prefix, samples)]
    if naming == "sample":
        return by_sample
    path = Path(root).expanduser() / "input" / METADATA_FILE
    if not path.is_file():
        if naming == "material":
            raise ValueError(
                f"naming=material: {path} is missing (it maps each sample to its material, "
                '{"<sample>": "<material>"}); use naming=sample'
            )
        log.info("naming=auto: no %s, so one folder per sample (out/<sample>/)", path)
        return by_sample
    metadata = read_metadata(path, hint="Fix it, or pass naming=sample to name the outputs by sample.")
    unlisted = sorted({s.name for s in samples if s.name not in metadata})
    if unlisted:
        listing = ", ".join(unlisted[:5]) + (f" (+{len(unlisted) - 5} more)" if len(unlisted) > 5 else "")
        if naming == "material":
            raise ValueError(
                f"naming=material: {len(unlisted)} sample(s) are not in {path}: {listing}; add them "
                "or use naming=sample"
            )
        log.warning("naming=auto: %s does not list %s; one folder per sample instead", path, listing)
        return by_sample
    per_material = Counter((s.variant, metadata[s.name]) for s in samples)
    several = any(count > 1 for count in per_material.values())
    log.info(
        "naming=%s: %s (materials from %s)",
        naming,
        "out/<material>/<sample>/ (some materials have several samples)" if several else "out/<material>/",
        path,
    )
    return [
        p / metadata[s.name] / s.name if several else p / metadata[s.name] for p, s in zip(prefix, samples)
    ]


def parse_size(size: Sequence[int] | None, key: str = "size") -> tuple[int, int] | None:
    """``[W, H]`` from the config -> ``(H, W)``, or None.

    Raises:
        ValueError: not two positive integers.
    """
    if size is None:
        return None
    values = list(size)
    if len(values) != 2 or any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{key}={values}: expected [W, H], two positive integers")
    return values[1], values[0]


# --- resizing -----------------------------------------------------------------------------------


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (N, C, H, W) images to ``size`` = (H, W): antialiased bilinear (no overshoot).

    Returns:
        (N, C, size[0], size[1]); ``images`` itself when the size already matches.
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_maps(maps: Mapping[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
    """Resize a map dict (each (B, C, H, W)) to ``size`` = (H, W), normals renormalised.

    Returns:
        The maps at ``size``: [0, 1] maps stay in range, normals stay unit vectors.
    """
    out = {name: resize_images(value, size) for name, value in maps.items()}
    if "normal" in out and out["normal"] is not maps["normal"]:
        out["normal"] = unit_vectors(out["normal"], dim=1)
    return out


# --- prediction ---------------------------------------------------------------------------------


@torch.inference_mode()
def predict_resized(
    model: LoadedGenerator, views: Tensor, size: tuple[int, int] | None = None
) -> dict[str, Tensor]:
    """Predict one sample by resizing its views to the training resolution.

    Args:
        model: the loaded generator.
        views: (V, 3, H, W) in [0, 1], any H, W.
        size: (H_out, W_out) of the maps (default: (H, W), the views' own size and aspect ratio).

    Returns:
        ``{name: (C, H_out, W_out)}`` on the CPU: albedo/roughness/metallic in [0, 1], unit normals.
    """
    height, width = views.shape[-2:]
    size = size or (height, width)
    side = model.resolution
    x = resize_images(views.to(model.device), (side, side))[None]  # (1, V, 3, R, R)
    maps = model.generator(x)  # {name: (1, C, R * sr, R * sr)}
    maps = {k: v.float() for k, v in maps.items()}
    if height != width:
        maps["normal"] = unsquash_normals(maps["normal"], height, width)
    maps = resize_maps(maps, size)
    return {name: value[0].cpu() for name, value in maps.items()}


def unsquash_normals(normal: Tensor, height: int, width: int) -> Tensor:
    """Undo the slope distortion of squashing an H x W photo into a square.

    Squashing scales x by R / W and y by R / H: the model sees x-slopes steepened by W / H
    relative to y-slopes. Stretching the map back scales the slopes ``-dh/dx`` and ``-dh/dy``
    (the normal's x and y over z) by the inverse factors; a common factor (the geometric mean,
    so a uniform resize changes nothing, as for any normal map) cancels in the renormalisation.

    Args:
        normal: (B, 3, h, w) unit normals predicted on the square input.
        height, width: the photo's size.

    Returns:
        (B, 3, h, w) unit normals of the surface in the photo's proportions.
    """
    aspect = (height / width) ** 0.5
    scale = torch.tensor([aspect, 1.0 / aspect, 1.0], dtype=normal.dtype, device=normal.device)
    return unit_vectors(normal * scale.view(1, 3, 1, 1), dim=1)


def tile_starts(length: int, tile: int, overlap: float, align: int = 1) -> list[int]:
    """Start offsets of overlapping tiles covering ``[0, length)``.

    Tiles advance by ``tile * (1 - overlap)`` rounded down to a multiple of ``align`` (so every
    tile but the last sees the same pooling grid as a whole-image forward); the last tile ends
    exactly at ``length``.

    Args:
        length: image side (>= ``tile``).
        tile: tile side, a multiple of ``align``.
        overlap: share of a tile overlapping the next one, in [0, 1).
        align: offsets are multiples of this (except possibly the last).

    Returns:
        Sorted offsets; consecutive tiles overlap by at least ``overlap * tile`` pixels.
    """
    if length <= tile:
        return [0]
    step = max(align, int(tile * (1.0 - overlap)) // align * align)
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(min(starts[-1] + step, length - tile))
    return starts


def blend_window(tile: int, device: torch.device | str | None = None, width: int | None = None) -> Tensor:
    """Raised-cosine (Hann) weights of a ``tile x tile`` (or ``tile x width``) tile: (tile, width).

    ``sin^2(pi (i + 0.5) / n)`` per axis of length n: near 0 at the tile's edges, 1 in its centre,
    positive everywhere (so a pixel only one tile covers keeps that tile's value after
    normalisation). At 50% overlap neighbouring windows sum to exactly 1.
    """

    def ramp(length: int) -> Tensor:
        steps = torch.arange(length, device=device, dtype=torch.float32) + 0.5
        return torch.sin(math.pi * steps / length) ** 2

    return ramp(tile)[:, None] * ramp(width or tile)[None, :]


@torch.inference_mode()
def tiled_forward(
    model: LoadedGenerator,
    views: Tensor,
    tile: int,
    overlap: float,
    batch_size: int = 4,
    progress: bool | None = None,
) -> dict[str, Tensor]:
    """Run the generator on overlapping tiles of the views at their own scale and blend them.

    Args:
        model: the loaded generator.
        views: (V, 3, H, W) in [0, 1]. Along a side shorter than ``tile`` the tiles are as long as
            the side, rounded up to a multiple of ``model.size_multiple`` (the few pixels added
            are edge replicated and cropped from the result), so views that fit in one tile run
            as one forward pass of their own size.
        tile: tile side in input pixels, a multiple of ``model.size_multiple``.
        overlap: share of a tile overlapping its neighbour, in [0, 0.9].
        batch_size: tiles per forward pass.
        progress: a tqdm bar over the tiles on stderr (None: only when stderr is a terminal).

    Returns:
        ``{name: (C, H * sr, W * sr)}`` on the CPU, normals renormalised after blending.

    Raises:
        ValueError: a tile size or overlap the model cannot use.
    """
    multiple = model.size_multiple
    if tile < multiple or tile % multiple:
        raise ValueError(
            f"tile_size={tile}: expected a positive multiple of {multiple} (the encoder's bottleneck reduction)"
        )
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"tile_overlap={overlap}: expected a value in [0, 0.9]")
    if batch_size < 1:
        raise ValueError(f"tile_batch_size={batch_size}: expected >= 1")
    height, width = views.shape[-2:]
    tile_h = min(tile, math.ceil(height / multiple) * multiple)
    tile_w = min(tile, math.ceil(width / multiple) * multiple)
    pad_h, pad_w = max(tile_h - height, 0), max(tile_w - width, 0)
    if pad_h or pad_w:
        log.info(
            "tiled: views of %dx%d padded by %d x %d px to a multiple of %d",
            width,
            height,
            pad_w,
            pad_h,
            multiple,
        )
        views = F.pad(views, (0, pad_w, 0, pad_h), mode="replicate")  # (V, 3, H', W')
    padded_h, padded_w = views.shape[-2:]
    sr = model.sr_scale
    ys = tile_starts(padded_h, tile_h, overlap, multiple)
    xs = tile_starts(padded_w, tile_w, overlap, multiple)
    origins = [(y, x) for y in ys for x in xs]
    log.info(
        "tiled: %d tile(s) (%d x %d) of %dx%d px, overlap %.2f, over %dx%d views",
        len(origins),
        len(ys),
        len(xs),
        tile_w,
        tile_h,
        overlap,
        width,
        height,
    )
    if len(origins) > MANY_TILES:
        log.warning(
            "tiled: %d tiles of %d px will take a while (the progress bar shows it on a terminal); tiled=false "
            "runs the model once on the views resized to its training resolution",
            len(origins),
            tile,
        )
    window = blend_window(tile_h * sr, width=tile_w * sr)  # (T_h*sr, T_w*sr)
    sums: dict[str, Tensor] = {}
    total = torch.zeros(padded_h * sr, padded_w * sr)
    bar = tqdm(
        total=len(origins), desc="tiles", unit="tile", disable=None if progress is None else not progress
    )
    for first in range(0, len(origins), batch_size):
        chunk = origins[first : first + batch_size]
        batch = torch.stack(
            [views[..., y : y + tile_h, x : x + tile_w] for y, x in chunk]
        )  # (n, V, 3, T_h, T_w)
        maps = model.generator(batch.to(model.device))  # {name: (n, C, T_h*sr, T_w*sr)}
        for name, value in maps.items():
            value = value.float().cpu()
            acc = sums.setdefault(name, torch.zeros(value.shape[1], padded_h * sr, padded_w * sr))
            for i, (y, x) in enumerate(chunk):
                rows, cols = slice(y * sr, (y + tile_h) * sr), slice(x * sr, (x + tile_w) * sr)
                acc[:, rows, cols] += value[i] * window
        for y, x in chunk:
            total[y * sr : (y + tile_h) * sr, x * sr : (x + tile_w) * sr] += window
        bar.update(len(chunk))
    bar.close()
    out = {name: (acc / total)[:, : height * sr, : width * sr] for name, acc in sums.items()}
    out["normal"] = unit_vectors(out["normal"], dim=0)
    return out


def global_context(generator: nn.Module) -> str | None:
    """Why ``generator`` cannot take tiles larger than its training resolution, or None.

    A fully convolutional generator (U-Net encoder and heads, mean/max fusion) computes each
    output pixel from a fixed neighbourhood, so a larger tile only moves the padded border
    further away. The ViT fusion attends over every bottleneck token of the tile and numbers
    them from the tile's corner: a larger tile gives it more tokens to attend over and positions
    it never saw in training.
    """
    fusion = getattr(generator, "fusion", None)
    if isinstance(fusion, ViTFusion):
        return (
            "fusion=vit attends over the whole tile and numbers its tokens from the tile's corner, so a "
            "larger tile gives it contexts and token positions it never saw in training"
        )
    return None


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


@torch.inference_mode()
def activation_bytes_per_pixel(model: LoadedGenerator) -> float:
    """Bytes of activations per input pixel of one tile: the outputs of every layer of a probe
    forward (a tile of 4 x ``size_multiple``), summed as if none were freed.

    An upper bound (inference frees most of them as it goes): measured on CPU, the peak RSS
    increase of a forward is about half of it.
    """
    side = 4 * model.size_multiple
    storages: dict[int, int] = {}
    kept: list[Tensor] = []  # alive until the end, so no freed address is reused and missed

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        for tensor in _tensors(output):  # in-place layers return their input: count it once
            storages[tensor.data_ptr()] = tensor.untyped_storage().nbytes()
            kept.append(tensor)

    leaves = [m for m in model.generator.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        model.generator(torch.rand(1, model.num_views, 3, side, side, device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    return sum(storages.values()) / (side * side)


def tile_memory_budget(device: torch.device) -> int:
    """Bytes the tiles of one forward pass may take: :data:`TILE_MEMORY_BUDGET_CPU` on CPU, a
    share (:data:`TILE_MEMORY_SHARE_CUDA`) of the free memory on CUDA."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * TILE_MEMORY_SHARE_CUDA)
    return TILE_MEMORY_BUDGET_CPU


def auto_tile_size(model: LoadedGenerator, height: int, width: int, batch_size: int = 4) -> tuple[int, str]:
    """The tile side ``tile_size=null`` uses for views of ``height`` x ``width``, and why.

    The rule:

    - a generator with a global component (:func:`global_context`, the ViT fusion) gets its
      training resolution ``data.resolution``;
    - a fully convolutional one gets the largest multiple of ``model.size_multiple`` for which
      ``batch_size`` tiles fit :func:`tile_memory_budget` at :func:`activation_bytes_per_pixel`
      (2 GiB on CPU: 472 px for the CPU recipe's U-Net, 688 px for the tiny one, at
      ``tile_batch_size=4``), at most :data:`MAX_AUTO_TILE` and at most the longer side of the
      views (rounded up: one tile when they fit in it), and never below the training
      resolution. A large tile keeps the border that zero padding reaches (the receptive
      field) a small part of each tile and the tile count low; the overlap stays
      ``tile_overlap`` of the tile.

    Returns:
        ``(tile side, a sentence saying why)``.
    """
    multiple, trained = model.size_multiple, model.resolution
    reason = global_context(model.generator)
    if reason is not None:
        return trained, f"the training resolution: {reason}"
    per_pixel = activation_bytes_per_pixel(model)
    budget = tile_memory_budget(model.device)
    fits = int(math.sqrt(budget / (batch_size * per_pixel))) // multiple * multiple
    longest = math.ceil(max(height, width) / multiple) * multiple
    cap = min(MAX_AUTO_TILE // multiple * multiple, longest)
    tile = max(trained, min(fits, cap))
    why = (
        f"fully convolutional; {batch_size} tiles of {fits} px fit {budget / 2**30:.1f} GiB at "
        f"{per_pixel:.0f} B/px; at most {cap} px (the views' longer side, or {MAX_AUTO_TILE}), at least "
        f"the training resolution {trained} px"
    )
    return tile, why


def predict_tiled(
    model: LoadedGenerator,
    views: Tensor,
    size: tuple[int, int] | None = None,
    tile: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    progress: bool | None = None,
) -> dict[str, Tensor]:
    """Predict one sample with :func:`tiled_forward` and resize the maps to ``size``.

    Args:
        model: the loaded generator.
        views: (V, 3, H, W) in [0, 1].
        size: (H_out, W_out) of the maps (default: (H, W)).
        tile: tile side in input pixels (None: :func:`auto_tile_size`).
        overlap: share of a tile overlapping its neighbour.
        batch_size: tiles per forward pass.
        progress: a bar over the tiles on stderr (None: only when stderr is a terminal).

    Returns:
        ``{name: (C, H_out, W_out)}`` on the CPU.
    """
    height, width = views.shape[-2:]
    if tile is None:
        tile, why = auto_tile_size(model, height, width, batch_size)
        log.info("tile_size=null: %d px tiles (%s)", tile, why)
    native = tiled_forward(model, views, tile, overlap, batch_size, progress)
    maps = resize_maps({k: v[None] for k, v in native.items()}, size or (height, width))
    return {name: value[0] for name, value in maps.items()}


def seam_ratio(image: Tensor, borders_y: Sequence[int], borders_x: Sequence[int]) -> float:
    """How much stronger neighbouring-pixel differences are across tile borders than elsewhere.

    For a vertical border at column ``b`` the statistic is the mean of ``|I[:, :, b] - I[:, :,
    b - 1]|``; the same is taken over every other pair of neighbouring columns (and likewise for
    rows). A visible seam is a step at the border, so the ratio of the two means is ~1 without
    seams and grows with them.

    Args:
        image: (C, H, W) map.
        borders_y: rows where a tile starts or ends (0 < b < H).
        borders_x: columns where a tile starts or ends (0 < b < W).

    Returns:
        mean border difference / mean difference elsewhere.
    """
    dy = (image[:, 1:, :] - image[:, :-1, :]).abs().mean(dim=(0, 2))  # (H-1,): row b vs b-1 at b-1
    dx = (image[:, :, 1:] - image[:, :, :-1]).abs().mean(dim=(0, 1))  # (W-1,)
    rows = torch.zeros_like(dy, dtype=torch.bool)
    cols = torch.zeros_like(dx, dtype=torch.bool)
    rows[[b - 1 for b in borders_y if 0 < b < image.shape[1]]] = True
    cols[[b - 1 for b in borders_x if 0 < b < image.shape[2]]] = True
    if not (rows.any() or cols.any()):
        raise ValueError("seam_ratio: no tile border lies inside the image")
    border = torch.cat([dy[rows], dx[cols]]).mean()
    elsewhere = torch.cat([dy[~rows], dx[~cols]]).mean()
    return float(border / elsewhere.clamp_min(1e-12))


def tile_borders(length: int, tile: int, overlap: float, align: int = 1, scale: int = 1) -> list[int]:
    """Positions (in output pixels) where the tiles of :func:`tile_starts` start or end."""
    starts = tile_starts(length, tile, overlap, align)
    edges = {s * scale for s in starts} | {(s + tile) * scale for s in starts}
    return sorted(e for e in edges if 0 < e < length * scale)


# --- outputs ------------------------------------------------------------------------------------


def write_maps(
    maps: Mapping[str, Tensor], out_dir: str | Path, bit_depth: int = 8, normal_convention: str = "opengl"
) -> list[Path]:
    """Write ``albedo.png``, ``roughness.png``, ``metallic.png`` and ``normal.png``.

    Args:
        maps: ``{name: (C, H, W)}``; normals as unit vectors (encoded to ``(n + 1) / 2``).
        out_dir: folder (created).
        bit_depth: 8 or 16.
        normal_convention: ``opengl`` (+Y up) or ``directx`` (G flipped).

    Returns:
        The written paths, in :data:`~neuropbr.models.contracts.PBR_MAPS` order.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth={bit_depth}: choose 8 or 16")
    out_dir = Path(out_dir)
    written = []
    for name in PBR_MAPS:
        image = encode_normal(maps[name], normal_convention) if name == "normal" else maps[name]
        path = out_dir / f"{name}.png"
        save_image(path, image, bit_depth)
        written.append(path)
    return written


def render_preview(maps: Mapping[str, Tensor], max_size: int = 1024) -> Tensor:
    """The predicted material rendered under a point light, as a viewer would check it.

    A fronto-parallel camera 3 units above the [-1, 1]^2 sample and a white point light up and to
    the right of it (raking enough to show the normals, close enough for a highlight), exposed so
    a white diffuse patch at the centre reads 0.8, ACES tone-mapped, sRGB-encoded.

    Args:
        maps: ``{name: (C, H, W)}`` as predicted (albedo sRGB, unit normals).
        max_size: the maps are downscaled first when their longest side is larger.

    Returns:
        (3, H', W') sRGB image in [0, 1].
    """
    from neuropbr.render import AlignedCamera, PointLight, exposure_for, render

    batch = {name: value[None].float() for name, value in maps.items()}  # (1, C, H, W)
    height, width = batch["albedo"].shape[-2:]
    scale = min(1.0, max_size / max(height, width))
    if scale < 1.0:
        batch = resize_maps(batch, (max(1, round(height * scale)), max(1, round(width * scale))))
    light = PointLight(torch.tensor([0.8, 0.8, 1.6]), 1.0)
    exposure = exposure_for(light.irradiance(torch.zeros(3))).view(-1, 1, 1, 1)  # (1, 1, 1, 1)
    camera = AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0]))
    return render(batch, camera, [light], exposure_ev=exposure)[0]
