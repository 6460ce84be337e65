"""The folder dataset (``data=folder``): the original stack's layout, validated at start-up.

``root/input/{clean,dirty}/<sample>/{0..V-1}.png``, ``root/input/render_metadata.json``
(``{"<sample>": "<material>"}``) and ``root/output/<material>/{albedo,roughness,metallic,
normal}.png``; see :mod:`neuropbr.data.index` for what is validated and docs/architecture.md
("What flows between the parts") for the value conventions.

Start-up (:meth:`FolderDataModule.setup`) scans every file: header, size rules, and an
integrity read (PNG chunk CRCs up to IEND, JPEG end marker) that catches truncated and corrupted
files without decoding them. With ``data.cache=true`` the cache build then decodes every image
once, and files the cache already decoded at the same size and mtime skip the integrity read.
``python -m neuropbr.check`` decodes everything. Problems are collected into one
:class:`~neuropbr.data.index.DatasetError` (``data.on_error=raise``) or logged and their samples
skipped (``data.on_error=skip``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from neuropbr.data.cache import DecodedCache, cache_set_dir
from neuropbr.data.datamodule import PBRDataModule, SampleKey, unpack_key
from neuropbr.data.index import RENDERS_CHOICES, DatasetError, Problem, SampleEntry, scan_folder_dataset
from neuropbr.data.io import ImageReadError, load_maps, load_views
from neuropbr.data.split import split_samples
from neuropbr.utils.choices import choice

log = logging.getLogger(__name__)

#: ``(views (V, 3, H, W), maps, sample_seed) -> (views, maps)``, e.g. :class:`~neuropbr.data.transforms.Augmentation`.
AugmentFn = Callable[[Tensor, dict[str, Tensor], int], tuple[Tensor, dict[str, Tensor]]]

ON_ERROR_CHOICES = ("raise", "skip")
NORMAL_CONVENTIONS = ("opengl", "directx")


class FolderDataset(Dataset):
    """Samples of validated folder entries, decoded from the image files or from the cache.

    Args:
        entries: validated samples (:func:`~neuropbr.data.index.scan_folder_dataset`).
        resolution: side of the square views served.
        map_resolution: side of the maps served (``resolution`` unless the decoder super-resolves).
        normal_convention: ``opengl`` or ``directx`` (G flipped on load).
        cache: serve decoded arrays from this cache (built for ``entries``) instead of the files.
        augment: applied to every sample with its sample seed (None for validation).
        on_error: ``skip``: a sample whose files fail to decode while loading (start-up only
            reads headers and checks integrity) is skipped from then on, with a warning naming
            the file, and the next loadable sample is served in its place; ``raise``: fail.
    """

    def __init__(
        self,
        entries: Sequence[SampleEntry],
        *,
        resolution: int,
        map_resolution: int | None = None,
        normal_convention: str = "opengl",
        cache: DecodedCache | None = None,
        augment: AugmentFn | None = None,
        on_error: str = "raise",
    ) -> None:
        self.entries = list(entries)
        self.resolution = resolution
        self.map_resolution = map_resolution or resolution
        self.normal_convention = normal_convention
        self.cache = cache
        self.augment = augment
        self.on_error = on_error
        # Which entries failed while loading; in shared memory, so that the loader's worker
        # processes (forked after this) mark them and the main process can report them.
        self._failed = torch.zeros(len(self.entries), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        """The sample dict of :mod:`neuropbr.data.datamodule` for ``index`` or ``(index, seed)``.

        Returns:
            ``{"views": (V, 3, R, R) in [0, 1], "maps": {...}, "sample": "<variant>/<name>",
            "material": str}``.

        Raises:
            DatasetError: a file became unreadable after start-up validation (names sample + path),
                with ``on_error=raise``; with ``skip``, only when no sample can be loaded.
        """
        index, sample_seed = unpack_key(key)
        entry = self.entries[index]
        if self.cache is not None:
            views, maps = self.cache.load(entry)
        else:
            views, maps, entry = self._decode(index)
        if self.augment is not None:
            views, maps = self.augment(views, maps, sample_seed)
        return {"views": views, "maps": maps, "sample": entry.id, "material": entry.material}

    def _decode(self, index: int) -> tuple[Tensor, dict[str, Tensor], SampleEntry]:
        """Decode entry ``index``, or with ``on_error=skip`` the first loadable one after it."""
        count = len(self.entries)
        for candidate in (index + offset for offset in range(count)):
            entry = self.entries[candidate % count]
            if self._failed[candidate % count]:
                continue
            try:
                views = load_views(entry.views, self.resolution)
                return views, load_maps(entry.maps, self.map_resolution, self.normal_convention), entry
            except ImageReadError as err:
                # Validated at start-up: the file changed since, or it is broken in a way only a
                # full decode reveals. Name it instead of surfacing a PIL traceback.
                problem = f"{entry.id} | {err.path} | {err.reason} (found while loading"
                if self.on_error != "skip":
                    raise DatasetError(
                        f"{problem}; run `python -m neuropbr.check` to decode and list every "
                        "bad file, or set data.on_error=skip)"
                    ) from err
                self._failed[candidate % count] = True
                log.warning("data.on_error=skip: %s; skipped from now on)", problem)
        raise DatasetError(
            f"data.on_error=skip: none of the {count} samples can be loaded (see the warnings)"
        )

    def failed_while_loading(self) -> list[str]:
        """Ids of the samples skipped because their files failed to decode while loading."""
        return [self.entries[i].id for i in torch.nonzero(self._failed).flatten().tolist()]


class FolderDataModule(PBRDataModule):
    """The guide's folder dataset: scan, validate, split by material, optional decoded cache.

    Args:
        root: dataset root (holds ``input/`` and ``output/``).
        resolution: side of the square views served (images are resized to it).
        num_views: V, views per sample (``0 .. V-1`` must exist; extra views are ignored).
        renders: ``clean``, ``dirty`` or ``both``; with ``both`` every sample folder of
            ``clean/`` and of ``dirty/`` is a sample, and a name present in both gives two samples
            (same material, so always on the same side of the split).
        val_ratio: share of MATERIALS held out for validation.
        batch_size, num_workers, pin_memory, persistent_workers, seed: see
            :class:`~neuropbr.data.datamodule.PBRDataModule`.
        aligned: views are rectified to texture space (the augmentation's paired transforms need it).
        augment: training augmentation (validation is never augmented); None for none.
        cache: decode every image once into memory-mapped uint8 arrays (:mod:`neuropbr.data.cache`).
        cache_dir: where the cache lives (default ``<root>/.neuropbr_cache``, or the user cache
            folder when the root is read-only).
        on_error: ``raise`` one :class:`~neuropbr.data.index.DatasetError` listing every problem,
            or ``skip`` the samples with problems, logging each problem.
        normal_convention: ``opengl`` (+Y up) or ``directx`` (G flipped on load).
        map_resolution: side of the target maps (build-time: ``data.resolution * decoder.sr_scale``).
        split: ``material`` or ``family``; families come from ``input/material_families.json``
            (``{"<material>": "<family>"}``) or else the ``materials`` entry of
            ``input/render_params.json`` that ``python -m neuropbr.synth`` writes.
        val_families: with ``split=family``, the families to hold out (default: seeded draw).
    """

    def __init__(
        self,
        *,
        root: str,
        resolution: int = 256,
        num_views: int = 3,
        renders: str = "clean",
        val_ratio: float = 0.1,
        batch_size: int = 4,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        aligned: bool = True,
        augment: AugmentFn | None = None,
        seed: int = 0,
        cache: bool = False,
        cache_dir: str | None = None,
        on_error: str = "raise",
        normal_convention: str = "opengl",
        map_resolution: int | None = None,
        split: str = "material",
        val_families: Sequence[str] | None = None,
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
            split=choice(split),
            val_families=val_families,
        )
        renders, on_error, normal_convention = choice(renders), choice(on_error), choice(normal_convention)
        for key, value, choices in (
            ("renders", renders, tuple(RENDERS_CHOICES)),
            ("on_error", on_error, ON_ERROR_CHOICES),
            ("normal_convention", normal_convention, NORMAL_CONVENTIONS),
        ):
            if value not in choices:
                raise ValueError(f"data.{key}={value!r}; choose one of {sorted(choices)}")
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"data.val_ratio={val_ratio}: expected a value in [0, 1)")
        if augment is not None and not callable(augment):
            raise TypeError(
                f"data.augment: expected a callable (views, maps, seed), got {type(augment).__name__}"
            )
        self.root = Path(root).expanduser()
        self.renders = renders
        self.val_ratio = val_ratio
        self.aligned = aligned
        self.augment = augment
        self.cache = cache
        self.cache_dir = cache_dir
        self.on_error = on_error
        self.normal_convention = normal_convention
        self.index: list[SampleEntry] = []
        self.problems: list[Problem] = []
        self.decoded_cache: DecodedCache | None = None
        self._counts: dict[str, int] = {}

    def setup(self) -> None:
        """Scan and validate the dataset, build the cache if asked, split by material.

        Raises:
            DatasetError: problems were found and ``on_error=raise``; or a problem makes the whole
                dataset unusable; or no sample is left after skipping.
        """
        self.problems = []
        decoded_cache = None
        if self.cache:
            directory = cache_set_dir(
                self.root,
                resolution=self.resolution,
                map_resolution=self.map_resolution,
                num_views=self.num_views,
                renders=self.renders,
                normal_convention=self.normal_convention,
                cache_dir=self.cache_dir,
            )
            decoded_cache = DecodedCache(
                directory,
                root=self.root,
                resolution=self.resolution,
                map_resolution=self.map_resolution,
                num_views=self.num_views,
                normal_convention=self.normal_convention,
            )
        scan = scan_folder_dataset(
            self.root,
            self.num_views,
            self.renders,
            trusted=decoded_cache.trusted_sources() if decoded_cache is not None else (),
        )
        entries = self._handle_problems(scan.problems, scan.entries, scan.candidates)
        if decoded_cache is not None:
            decode_problems = decoded_cache.build(entries, scan.images)
            entries = self._handle_problems(decode_problems, entries, [e.id for e in entries])
        self.index = entries
        self.decoded_cache = decoded_cache
        self._warn_upsampling(scan.images.values())

        materials = [e.material for e in entries]
        families = None
        if self.split == "family":
            family_of = read_material_families(self.root)
            if family_of is None:
                why = "neither input/material_families.json nor input/render_params.json names the families"
                raise DatasetError.from_problems(
                    self.root, [Problem("-", self.root / "input", why, fatal=True)]
                )
            missing = sorted({m for m in materials if m not in family_of})
            if missing:
                why = f"no family for materials {missing[:10]} (add them to input/material_families.json)"
                raise DatasetError.from_problems(
                    self.root, [Problem("-", self.root / "input", why, fatal=True)]
                )
            families = [family_of[m] for m in materials]
        train_idx, val_idx = split_samples(
            self.split, materials, families, self.val_ratio, self.seed, self.val_families
        )

        def dataset(indices: list[int], augment: AugmentFn | None) -> FolderDataset:
            return FolderDataset(
                [entries[i] for i in indices],
                resolution=self.resolution,
                map_resolution=self.map_resolution,
                normal_convention=self.normal_convention,
                cache=decoded_cache,
                augment=augment,
                on_error=self.on_error,
            )

        self.train_set = dataset(train_idx, self.augment)
        self.val_set = dataset(val_idx, None)  # validation is never augmented
        self._counts = {
            **scan.counts(),
            "usable": len(entries),
            "skipped": len(scan.candidates) - len(entries),
            "materials": len({e.material for e in entries}),
            "problems": len(self.problems),
            "train_samples": len(train_idx),
            "val_samples": len(val_idx),
            "train_materials": len({entries[i].material for i in train_idx}),
            "val_materials": len({entries[i].material for i in val_idx}),
        }
        log.info(
            "folder dataset %s (renders=%s, V=%d, %d px%s): %d samples of %d materials "
            "(clean/ %d, dirty/ %d, in both %d; skipped %d); train %d samples / %d materials, "
            "val %d samples / %d materials",
            self.root, self.renders, self.num_views, self.resolution,
            f", cache {decoded_cache.directory}" if decoded_cache is not None else "",
            len(entries), self._counts["materials"], self._counts["clean"], self._counts["dirty"],
            self._counts["in_both"], self._counts["skipped"], self._counts["train_samples"],
            self._counts["train_materials"], self._counts["val_samples"], self._counts["val_materials"],
        )  # fmt: skip
        if not val_idx and self.val_ratio > 0:
            log.warning(
                "validation set is empty: %d material(s) cannot be split with data.val_ratio=%s",
                self._counts["materials"], self.val_ratio,
            )  # fmt: skip

    def summary(self) -> dict[str, int]:
        """Counts for logging: samples on disk per variant, usable, skipped, split sizes.

        Returns:
            ``{"clean", "dirty", "in_both", "selected", "usable", "skipped", "unselected",
            "materials", "problems", "train_samples", "val_samples", "train_materials",
            "val_materials"}`` (empty before :meth:`setup`).
        """
        return dict(self._counts)

    def skipped_while_loading(self) -> list[str]:
        """Samples skipped so far because their files failed to decode while loading
        (``data.on_error=skip``; start-up problems are counted in :meth:`summary`)."""
        sets = (self.train_set, self.val_set)
        return sorted(
            sample for s in sets if isinstance(s, FolderDataset) for sample in s.failed_while_loading()
        )

    def _handle_problems(
        self, problems: Sequence[Problem], entries: list[SampleEntry], considered: Sequence[str]
    ) -> list[SampleEntry]:
        """Raise or skip per ``on_error``; return the entries no problem touches.

        Args:
            problems: what was found.
            entries: the entries to filter.
            considered: ids of every sample the problems may concern (for the skip log).
        """
        if not problems:
            return entries
        self.problems.extend(problems)
        if self.on_error == "raise" or any(p.fatal for p in problems):
            raise DatasetError.from_problems(self.root, self.problems)
        for problem in problems:
            log.warning("data.on_error=skip: %s", problem)
        bad = {sample for p in problems for sample in p.affected}
        kept = [e for e in entries if e.id not in bad]
        skipped = [sample for sample in considered if sample in bad]
        log.warning(
            "data.on_error=skip: %d problem(s); skipped %d sample(s): %s",
            len(problems), len(skipped), ", ".join(skipped) or "none",
        )  # fmt: skip
        if not kept:
            raise DatasetError.from_problems(
                self.root, self.problems, hint="Every sample has a problem: nothing is left to train on."
            )
        return kept

    def _warn_upsampling(self, images: Any) -> None:
        small = sum(1 for info in images if max(info.width, info.height) < self.resolution)
        if small:
            log.warning(
                "%d image(s) are smaller than data.resolution=%d and are upsampled (bicubic)",
                small,
                self.resolution,
            )


def read_material_families(root: Path) -> dict[str, str] | None:
    """``{material: family}`` of a folder dataset, or None when it names no families.

    ``input/material_families.json`` (``{"<material>": "<family>"}``) wins; otherwise the
    ``materials`` entry of ``input/render_params.json`` (``{"<material>": {"family": ...}}``)
    that ``python -m neuropbr.synth`` writes.

    Raises:
        DatasetError: a file exists but is not valid JSON of that shape.
    """
    explicit, params = root / "input" / "material_families.json", root / "input" / "render_params.json"
    for path in (explicit, params):
        if not path.is_file():
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            problem = Problem("-", path, f"not valid JSON ({err})", fatal=True)
            raise DatasetError.from_problems(root, [problem]) from err
        if path == params:
            entries = raw.get("materials", {}) if isinstance(raw, dict) else {}
            raw = {m: e.get("family") for m, e in entries.items() if isinstance(e, dict)}
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            problem = Problem(
                "-", path, 'expected {"<material>": "<family>"} with string families', fatal=True
            )
            raise DatasetError.from_problems(root, [problem])
        return dict(raw)
    return None
