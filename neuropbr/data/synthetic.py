"""``data=synthetic``: procedural materials rendered on the fly, nothing read from or written to disk.

Sample ``i`` shows material ``i // samples_per_material`` (named as in docs/architecture.md:
``sample_0007``, ``material_0003``); its material, cameras, lights and artifacts depend only on
``(seed, i)`` (see :class:`~neuropbr.render.scene.SyntheticGenerator`), so ``python -m
neuropbr.synth`` with the same seed, resolution, views and camera writes the same data to disk.
The per-epoch ``sample_seed`` only drives augmentation and, with ``renders=both``, whether the
clean or the dirty render is served. Train and validation are split by material.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from neuropbr.data.datamodule import PBRDataModule, SampleKey, unpack_key
from neuropbr.data.split import split_samples
from neuropbr.render.materials import check_relief_range
from neuropbr.render.scene import (
    CAMERAS,
    VARIANTS,
    SyntheticGenerator,
    check_exposure_shift,
    check_light_setups,
    key_light_directions,
    upsample_light_directions,
)
from neuropbr.utils.seeding import derive_seed
from neuropbr.utils.system import available_cores

log = logging.getLogger(__name__)

RENDERS = ("clean", "dirty", "both")
Augment = Callable[[Tensor, dict[str, Tensor], int], tuple[Tensor, dict[str, Tensor]]]


def sample_names(count: int, prefix: str) -> list[str]:
    """``prefix_0000`` ... zero-padded to at least 4 digits (wider for 10000+ entries)."""
    width = max(4, len(str(max(count - 1, 0))))
    return [f"{prefix}_{i:0{width}d}" for i in range(count)]


class RenderedSamples:
    """Every sample rendered once, held in memory: ``data.cache=true`` for synthetic data.

    Rendering dominates the cost of synthetic data on a CPU (a 3-view sample takes longer than a
    small model's training step), and the renders of sample ``i`` never change between epochs.
    Views are stored as uint8 (as photos are), maps as float16 (well below the metrics'
    resolution); augmentation still draws fresh flips, rotations and colour jitter every epoch.

    Args:
        generator: renders the samples.
        indices: generator indices to render.
        variants: ``clean`` and/or ``dirty`` renders to keep.
        view_resolution: side of the stored views (box-filtered from the generator's resolution).
        workers: processes rendering in parallel (default: every available core).
        light_targets: also keep each view's key-light direction map (a small float16 map,
            :data:`~neuropbr.render.scene.LIGHT_MAP_RESOLUTION` px a side).
    """

    def __init__(
        self,
        generator: SyntheticGenerator,
        indices: Sequence[int],
        variants: Sequence[str],
        view_resolution: int,
        workers: int | None = None,
        light_targets: bool = False,
    ) -> None:
        self.variants = tuple(variants)
        self.position = {index: i for i, index in enumerate(indices)}
        start = time.perf_counter()
        jobs = [(index, self.variants, view_resolution, light_targets) for index in indices]
        workers = max(1, min(workers or available_cores(), len(jobs)))
        if workers == 1:
            _RENDER_WORKER["generator"] = generator
            try:
                results = [_render_one(job) for job in jobs]
            finally:
                _RENDER_WORKER.clear()
        else:
            # spawn: workers start without the parent's thread pools; each renders on one thread.
            with multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_render_worker, initargs=(generator,)
            ) as pool:
                arrays = pool.map(_render_one_as_arrays, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
            results = [
                (torch.from_numpy(views), {name: torch.from_numpy(value) for name, value in maps.items()})
                for views, maps in arrays
            ]
        self.views = torch.stack([views for views, _ in results])  # (N, variants, V, 3, h, w) uint8
        self.maps = {
            name: torch.stack([maps[name] for _, maps in results]) for name in results[0][1]
        }  # (N, C, H, W) float16 each; "light": (N, V, 3, r, r)
        size = self.views.nbytes + sum(m.nbytes for m in self.maps.values())
        log.info(
            "rendered %d synthetic samples (%s) into memory in %.1f s with %d process(es): %.0f MB",
            len(jobs), "+".join(self.variants), time.perf_counter() - start, workers, size / 2**20,
        )  # fmt: skip

    def get(self, index: int, variant: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Views (V, 3, h, w) float in [0, 1] and maps (C, H, W) float32 of generator sample ``index``
        (with ``light_targets``, also ``"light"``: (V, 3, r, r) key-light directions)."""
        row = self.position[index]
        views = self.views[row, self.variants.index(variant)].float() / 255.0
        return views, {name: value[row].float() for name, value in self.maps.items()}


_RENDER_WORKER: dict[str, Any] = {}


def _init_render_worker(generator: SyntheticGenerator) -> None:
    torch.set_num_threads(1)
    _RENDER_WORKER["generator"] = generator


def _render_one(job: tuple[int, tuple[str, ...], int, bool]) -> tuple[Tensor, dict[str, Tensor]]:
    index, variants, view_resolution, light_targets = job
    with torch.no_grad():
        material, spec, renders = _RENDER_WORKER["generator"].render(index, variants=variants)
    views = torch.stack([renders[v] for v in variants])  # (variants, V, 3, H, W)
    if views.shape[-1] != view_resolution:
        views = F.interpolate(views.flatten(0, 1), size=(view_resolution,) * 2, mode="area").unflatten(
            0, views.shape[:2]
        )
    quantised = (views.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    maps = {name: value.to(torch.float16) for name, value in material.maps.items()}
    if "normal" in maps:  # float16 rounding must not leave the unit sphere
        maps["normal"] = F.normalize(material.maps["normal"], dim=0).to(torch.float16)
    if light_targets:
        maps["light"] = light_directions(spec).to(torch.float16)
    return quantised, maps


def _render_one_as_arrays(job: tuple[int, tuple[str, ...], int, bool]) -> tuple[Any, dict[str, Any]]:
    """:func:`_render_one` for a worker process: numpy arrays travel in the result pipe itself.
    Tensors would travel as shared-memory file descriptors, and thousands of them in flight can
    fail to arrive ("received 0 items of ancdata"), leaving the pool waiting forever."""
    views, maps = _render_one(job)
    return views.numpy(), {name: value.numpy() for name, value in maps.items()}


def light_directions(spec: dict[str, Any]) -> Tensor:
    """(V, 3, r, r): each view's key-light direction map (see :func:`key_light_directions`)."""
    return torch.stack([key_light_directions(view["lights"]) for view in spec["views"]])


class SyntheticDataset(Dataset):
    """Samples rendered on demand (see the module docstring).

    Args:
        generator: draws and renders sample ``i``.
        indices: the generator's sample indices this dataset serves (e.g. the train split).
        sample_names: name of every generator sample (indexed by generator index).
        material_names: name of every generator material (indexed by material index).
        renders: ``clean``, ``dirty`` or ``both`` (one of the two per sample, from its seed).
        augment: called as ``augment(views, maps, sample_seed)`` on each sample, or None.
        view_resolution: side of the views served when smaller than the generator's (maps keep
            the generator's resolution); None serves both at the generator's resolution.
        rendered: samples rendered in advance (:class:`RenderedSamples`), or None to render each
            sample when it is asked for.
        light_targets: add ``maps["light"]``, (V, 3, h, w): each view's key-light direction per
            pixel (aligned views), the target of the generator's light estimator.
    """

    def __init__(
        self,
        generator: SyntheticGenerator,
        indices: Sequence[int],
        *,
        sample_names: Sequence[str],
        material_names: Sequence[str],
        renders: str = "clean",
        augment: Augment | None = None,
        view_resolution: int | None = None,
        rendered: RenderedSamples | None = None,
        light_targets: bool = False,
    ) -> None:
        if renders not in RENDERS:
            raise ValueError(f"data.renders={renders!r}: expected one of {list(RENDERS)}")
        self.rendered = rendered
        self.light_targets = light_targets
        self.view_resolution = view_resolution
        self.generator = generator
        self.indices = list(indices)
        self.sample_names = list(sample_names)
        self.material_names = list(material_names)
        self.renders = renders
        self.augment = augment

    def __len__(self) -> int:
        return len(self.indices)

    def variant(self, sample_seed: int) -> str:
        """Which render a sample serves: fixed, or drawn from its seed for ``renders=both``."""
        if self.renders != "both":
            return self.renders
        return "dirty" if derive_seed(sample_seed, "renders") % 2 else "clean"

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        position, sample_seed = unpack_key(key)
        index = self.indices[position]
        variant = self.variant(sample_seed)
        if self.rendered is not None:
            views, maps = self.rendered.get(index, variant)
        else:
            # no_grad, not inference_mode: the tensors may later meet autograd in the training step.
            with torch.no_grad():
                material, spec, renders = self.generator.render(index, variants=(variant,))
            views, maps = renders[variant], dict(material.maps)  # (V, 3, H, W); (C, H, W) each
            if self.light_targets:
                maps["light"] = light_directions(spec)
        if self.view_resolution is not None and views.shape[-1] != self.view_resolution:
            # A super-resolving decoder: the camera sees the material at a lower resolution
            # than the maps (box filter = pixels integrating over several texels).
            views = F.interpolate(views, size=(self.view_resolution,) * 2, mode="area")
        if "light" in maps:
            if self.light_targets:  # at the views' resolution: the estimator sees the views
                maps["light"] = upsample_light_directions(maps["light"], views.shape[-1])
            else:
                del maps["light"]
        if self.augment is not None:
            views, maps = self.augment(views, maps, sample_seed)
        return {
            "views": views,
            "maps": maps,
            "sample": self.sample_names[index],
            "material": self.material_names[self.generator.material_index(index)],
        }


class SyntheticDataModule(PBRDataModule):
    """Built-in synthetic data: runs on a fresh machine with no dataset.

    Args:
        resolution: side of the views and maps.
        num_views: V.
        renders: ``clean``, ``dirty`` or ``both`` (clean or dirty chosen per sample and epoch).
        val_ratio: share of materials held out for validation.
        batch_size, num_workers, pin_memory, persistent_workers: loader settings (see
            :class:`~neuropbr.data.datamodule.PBRDataModule`); each worker renders with one thread.
        aligned: views are rectified to texture space; must be false with ``camera=perspective``.
        augment: ``neuropbr.data.transforms.Augmentation`` (or any callable
            ``(views, maps, sample_seed) -> (views, maps)``) applied to training samples, or None.
        seed: the run's seed (materials, scenes, split).
        num_samples: samples in train + val together.
        samples_per_material: samples sharing one material (different lights, cameras, dirt).
        camera: ``aligned`` or ``perspective`` (tilted, rotated, tiled views).
        artifact_strength: scale of the dirty artifacts (0 disables them).
        map_resolution: side of the target maps (build-time: ``data.resolution * decoder.sr_scale``);
            materials are rendered at this size and the views box-filtered down to ``resolution``.
        cache: render every sample once at :meth:`setup` (all cores) and serve it from memory
            (:class:`RenderedSamples`); without it every epoch renders every sample again.
        split: ``material`` or ``family`` (hold out whole procedural families).
        val_families: with ``split=family``, the families to hold out (default: seeded draw).
        exposure_shift_ev: ``[low, high]`` stops every view of a sample is shifted by, one draw per
            sample (see :func:`~neuropbr.render.scene.draw_sample`); None: no shift.
        recolour: materials may re-tint their dielectric colour to a random hue.
        weathering: materials may carry weathering layers (paint over, dirt, edge wear, coat).
    """

    #: Set by :meth:`setup` (None before it).
    train_set: SyntheticDataset | None

    def __init__(
        self,
        *,
        resolution: int = 256,
        num_views: int = 3,
        renders: str = "clean",
        val_ratio: float = 0.1,
        batch_size: int = 4,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        aligned: bool = True,
        augment: Augment | None = None,
        seed: int = 42,
        num_samples: int = 512,
        samples_per_material: int = 1,
        camera: str = "aligned",
        artifact_strength: float = 1.0,
        map_resolution: int | None = None,
        cache: bool = False,
        split: str = "material",
        val_families: Sequence[str] | None = None,
        relief_tilt_deg: Sequence[float] | None = None,
        light_setups: Mapping[str, float] | None = None,
        light_targets: bool = False,
        exposure_shift_ev: Sequence[float] | None = None,
        recolour: bool = True,
        weathering: bool = True,
    ) -> None:
        super().__init__(
            resolution=resolution,
            map_resolution=map_resolution,
            num_views=num_views,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            seed=seed,
            split=split,
            val_families=val_families,
        )
        if renders not in RENDERS:
            raise ValueError(f"data.renders={renders!r}: expected one of {list(RENDERS)}")
        if camera not in CAMERAS:
            raise ValueError(f"data.camera={camera!r}: expected one of {list(CAMERAS)}")
        if camera == "perspective" and aligned:
            raise ValueError(
                "data.camera=perspective with data.aligned=true: perspective views are not aligned "
                "with the maps; set data.aligned=false (so augmentation does not flip views and maps together)"
            )
        if num_samples < 1:
            raise ValueError(f"data.num_samples={num_samples}: expected >= 1")
        if samples_per_material < 1:
            raise ValueError(f"data.samples_per_material={samples_per_material}: expected >= 1")
        if artifact_strength < 0:
            raise ValueError(f"data.artifact_strength={artifact_strength}: expected >= 0")
        check_relief_range(relief_tilt_deg, "data.relief_tilt_deg")
        check_light_setups(light_setups, "data.light_setups")
        check_exposure_shift(exposure_shift_ev, "data.exposure_shift_ev")
        if light_targets and camera != "aligned":
            raise ValueError(
                f"data.light_targets=true with data.camera={camera}: the key-light direction maps are "
                "given per texel of aligned views; use data.camera=aligned or data.light_targets=false"
            )
        self.light_targets = light_targets
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"data.val_ratio={val_ratio}: expected a value in [0, 1)")
        num_materials = -(-num_samples // samples_per_material)
        if val_ratio > 0 and num_materials < 2:
            raise ValueError(
                f"data.num_samples={num_samples} with data.samples_per_material={samples_per_material} "
                f"gives {num_materials} material; a validation split (data.val_ratio={val_ratio}) needs "
                "at least 2 (raise data.num_samples or set data.val_ratio=0)"
            )
        self.renders = renders
        self.val_ratio = val_ratio
        self.aligned = aligned
        self.augment = augment
        self.num_samples = num_samples
        self.samples_per_material = samples_per_material
        self.camera = camera
        self.artifact_strength = artifact_strength
        self.cache = cache
        self.families: dict[str, list[str]] = {}  # train/val families, set by setup()
        self.generator = SyntheticGenerator(
            resolution=self.map_resolution,
            num_views=num_views,
            camera=camera,
            artifact_strength=artifact_strength,
            seed=seed,
            samples_per_material=samples_per_material,
            relief_tilt_deg=relief_tilt_deg,
            light_setups=light_setups,
            exposure_shift_ev=exposure_shift_ev,
            recolour=recolour,
            weathering=weathering,
        )

    def training_maps(self, max_samples: int = 64) -> list[dict[str, Tensor]]:
        """Like the base class, but straight from the procedural materials (nothing rendered)."""
        if self.train_set is None:
            raise RuntimeError("SyntheticDataModule.setup() must run before training_maps()")
        indices = self.train_set.indices
        picks = sorted({indices[round(i * (len(indices) - 1) / max(max_samples - 1, 1))]
                        for i in range(min(max_samples, len(indices)))})  # fmt: skip
        if self.train_set.rendered is not None:
            return [
                self.train_set.rendered.get(index, self.train_set.rendered.variants[0])[1] for index in picks
            ]
        materials = sorted({self.generator.material_index(index) for index in picks})
        return [self.generator.material(m).maps for m in materials]

    def setup(self) -> None:
        samples = sample_names(self.num_samples, "sample")
        materials = sample_names(self.generator.material_index(self.num_samples - 1) + 1, "material")
        material_of = [self.generator.material_index(i) for i in range(self.num_samples)]
        sample_materials = [materials[m] for m in material_of]
        families = [self.generator.material_family(m) for m in material_of]
        train_idx, val_idx = split_samples(
            self.split, sample_materials, families, self.val_ratio, self.seed, self.val_families
        )
        self.families = {
            "train": sorted({families[i] for i in train_idx}),
            "val": sorted({families[i] for i in val_idx}),
        }

        rendered = None
        if self.cache:
            variants = VARIANTS if self.renders == "both" else (self.renders,)
            rendered = RenderedSamples(
                self.generator,
                range(self.num_samples),
                variants,
                self.resolution,
                light_targets=self.light_targets,
            )

        def dataset(indices: list[int], augment: Augment | None, light_targets: bool) -> SyntheticDataset:
            return SyntheticDataset(
                self.generator, indices, sample_names=samples, material_names=materials, renders=self.renders,
                augment=augment, view_resolution=self.resolution, rendered=rendered, light_targets=light_targets,
            )  # fmt: skip

        # Light targets teach the training step only (validation scores the maps).
        self.train_set = dataset(train_idx, self.augment, self.light_targets)
        self.val_set = dataset(val_idx, None, False)  # validation is never augmented
        log.info(
            "synthetic data: %d samples of %d materials, %s renders, %s camera, %d views at %d px, %s",
            self.num_samples,
            len(materials),
            self.renders,
            self.camera,
            self.num_views,
            self.resolution,
            "rendered once, served from memory" if rendered is not None else "rendered on the fly",
        )
