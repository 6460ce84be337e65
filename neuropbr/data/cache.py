"""Decoded cache: images decoded once at the target resolution into memory-mapped uint8 arrays.

PNG decoding dominates data loading; with ``data.cache=true`` the folder dataset decodes every
image once (at start-up, with a progress bar) and then reads ``.npy`` files through ``np.load(...,
mmap_mode="r")``, which costs a page-cache copy and a uint8 -> float conversion. Arrays are 8-bit:
16-bit sources are decoded and resized at full depth, then rounded once (``data.cache=false``
keeps 16 bits end to end).

Layout of one cache set (one per dataset root, resolution, V, renders and normal convention)::

    <set>/manifest.json                   resolution, ... and the sources of every array
    <set>/views/<variant>/<sample>.npy    (V, 3, R, R) uint8, sRGB as on disk
    <set>/maps/<material>.npy             (8, R, R) uint8: albedo 3, roughness 1, metallic 1,
                                          normal 3 stored as (n + 1) / 2 in the OpenGL convention

``<set>`` is ``<root>/.neuropbr_cache/r<R>_v<V>_<renders>_<convention>`` by default, or
``<cache_dir or ~/.cache/neuropbr>/<root name>-<hash>/r<R>_...`` when ``cache_dir`` is given or
the root is read-only. The manifest records each source file's size and ``mtime_ns``: an array
whose sources changed (or that is missing) is rebuilt; a manifest of another resolution or format
version discards the whole set. Arrays and the manifest are written atomically (temporary file,
then rename), so a build killed at any point leaves a cache that the next build completes; a lock
file keeps concurrent builders (e.g. DDP ranks) from duplicating work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from neuropbr.data.index import DatasetError, Problem, SampleEntry, describe_samples
from neuropbr.data.io import ImageInfo, ImageReadError, decode_normal, encode_normal, load_maps, load_views
from neuropbr.maps import PBR_CHANNELS
from neuropbr.utils.files import atomic_write, exclusive_lock

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 3  # 2: JPEG views are EXIF-rotated on decode; 3: 16-bit RGB PNGs resized at full depth
MANIFEST_FILE = "manifest.json"
DEFAULT_CACHE_FOLDER = ".neuropbr_cache"
#: Seconds between manifest saves during a build (progress survives a kill).
_MANIFEST_SAVE_INTERVAL = 2.0


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/neuropbr`` (default ``~/.cache/neuropbr``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neuropbr"


def _is_writable(folder: Path) -> bool:
    """Whether a cache folder can be created and written at ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / ".write_probe"):
            pass
        (folder / ".write_probe").unlink()
    except OSError:
        return False
    return True


def cache_set_dir(
    root: str | Path,
    *,
    resolution: int,
    num_views: int,
    renders: str,
    normal_convention: str,
    cache_dir: str | Path | None = None,
    map_resolution: int | None = None,
) -> Path:
    """The folder of the cache set for these settings (see the module docstring).

    Args:
        root: dataset root.
        resolution, num_views, renders, normal_convention: the data settings the arrays depend on.
        map_resolution: side of the stored maps when it differs from ``resolution``.
        cache_dir: explicit parent folder; None uses ``<root>/.neuropbr_cache`` when the root is
            writable, else the user cache folder.

    Returns:
        The set folder (not created).
    """
    root = Path(root)
    set_name = f"r{resolution}_v{num_views}_{renders}_{normal_convention}"
    if map_resolution not in (None, resolution):
        set_name += f"_maps{map_resolution}"
    # root.is_dir() first: probing must never create a mistyped root (the scan reports it).
    if cache_dir is None and root.is_dir() and _is_writable(root / DEFAULT_CACHE_FOLDER):
        return root / DEFAULT_CACHE_FOLDER / set_name
    parent = Path(cache_dir) if cache_dir is not None else user_cache_root()
    if cache_dir is None and root.is_dir():
        log.info("dataset root %s is read-only: the decoded cache goes to %s", root, parent)
    # Several datasets may share a parent: key the set by the dataset's absolute path.
    digest = hashlib.blake2b(str(root.resolve()).encode(), digest_size=6).hexdigest()
    return parent / f"{root.resolve().name}-{digest}" / set_name


class DecodedCache:
    """Memory-mapped uint8 arrays of the folder dataset's images at one resolution.

    Args:
        directory: the cache set folder (:func:`cache_set_dir`).
        root: dataset root; sources are recorded relative to it.
        resolution: side of the stored views.
        num_views: V, views per stored sample.
        normal_convention: how the normal maps on disk are encoded (stored arrays are OpenGL).
        map_resolution: side of the stored maps (default ``resolution``).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        root: str | Path,
        resolution: int,
        num_views: int,
        normal_convention: str,
        map_resolution: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.root = Path(root)
        self.resolution = resolution
        self.map_resolution = map_resolution or resolution
        self.num_views = num_views
        self.normal_convention = normal_convention
        self._files: dict[str, dict] = self._read_manifest()

    # --- manifest -------------------------------------------------------------------------------

    def _settings(self) -> dict[str, int | str]:
        return {
            "version": CACHE_FORMAT_VERSION,
            "resolution": self.resolution,
            "map_resolution": self.map_resolution,
            "num_views": self.num_views,
            "normal_convention": self.normal_convention,
        }

    def _read_manifest(self) -> dict[str, dict]:
        """The manifest's file records, or {} when missing, unreadable or of other settings."""
        path = self.directory / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("decoded cache manifest %s is unreadable (%s): rebuilding the cache", path, err)
            return {}
        settings = {key: manifest.get(key) for key in self._settings()}
        if settings != self._settings():
            log.info(
                "decoded cache %s was built with %s, now %s: rebuilding it",
                self.directory,
                settings,
                self._settings(),
            )
            return {}
        return dict(manifest.get("files", {}))

    def _save_manifest(self) -> None:
        with atomic_write(self.directory / MANIFEST_FILE, "w") as handle:
            json.dump({**self._settings(), "files": self._files}, handle, indent=0, sort_keys=True)

    def _sources(self, paths: Sequence[Path], images: Mapping[Path, ImageInfo]) -> list[list]:
        """``[relative path, size_bytes, mtime_ns]`` of each source file (what a record keys on)."""
        out: list[list] = []
        for path in paths:
            info = images[path] if path in images else _stat_info(path)
            out.append([self._relative(path), info.size_bytes, info.mtime_ns])
        return out

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def trusted_sources(self) -> set[tuple[str, int, int]]:
        """``(path, size_bytes, mtime_ns)`` of every source this cache fully decoded at that version.

        The start-up scan skips their integrity read: a successful decode already proved them whole.
        """
        trusted: set[tuple[str, int, int]] = set()
        for record in self._files.values():
            for rel, size, mtime in record.get("sources", ()):
                trusted.add((str(self.root / rel), int(size), int(mtime)))
        return trusted

    # --- file names -----------------------------------------------------------------------------

    def views_file(self, entry: SampleEntry) -> Path:
        """``<set>/views/<variant>/<sample>.npy``."""
        return self.directory / "views" / entry.variant / f"{entry.name}.npy"

    def maps_file(self, material: str) -> Path:
        """``<set>/maps/<material>.npy``."""
        return self.directory / "maps" / f"{material}.npy"

    def _key(self, path: Path) -> str:
        return path.relative_to(self.directory).as_posix()

    def _fresh(self, path: Path, sources: list[list]) -> bool:
        record = self._files.get(self._key(path))
        return record is not None and record.get("sources") == sources and path.is_file()

    # --- build ----------------------------------------------------------------------------------

    def build(
        self,
        entries: Sequence[SampleEntry],
        images: Mapping[Path, ImageInfo] | None = None,
        *,
        progress: bool = True,
        workers: int | None = None,
    ) -> list[Problem]:
        """Decode every array that is missing or stale; keep the fresh ones.

        Args:
            entries: the sample entries to cache (validated by the scan).
            images: the scan's :class:`ImageInfo` per file (size and mtime; stat'ed when absent).
            progress: show a tqdm bar.
            workers: decoding threads (default: the CPU count; Pillow decodes without the GIL).

        Returns:
            A problem for every file that failed to decode (its samples are not cached).
        """
        images = images or {}
        self.directory.mkdir(parents=True, exist_ok=True)
        with _build_lock(self.directory):
            # Another process may have built while this one waited for the lock.
            self._files = self._read_manifest()
            if not self._files:
                self._discard_arrays()
            _remove_temporaries(self.directory)
            jobs = self._stale_jobs(entries, images)
            if jobs:
                log.info(
                    "decoded cache %s: decoding %d arrays at %d px",
                    self.directory,
                    len(jobs),
                    self.resolution,
                )
            problems = self._run_jobs(jobs, progress=progress, workers=workers)
        return problems

    def _stale_jobs(self, entries: Sequence[SampleEntry], images: Mapping[Path, ImageInfo]) -> list[tuple]:
        """``(kind, target file, sources, entry or material paths, sample ids)`` to (re)build."""
        jobs: list[tuple] = []
        by_material: dict[str, list[SampleEntry]] = {}
        for entry in entries:
            by_material.setdefault(entry.material, []).append(entry)
            target = self.views_file(entry)
            sources = self._sources(entry.views, images)
            if not self._fresh(target, sources):
                jobs.append(("views", target, sources, entry.views, (entry.id,)))
        for material, group in by_material.items():
            maps = group[0].maps
            target = self.maps_file(material)
            sources = self._sources([maps[name] for name in PBR_CHANNELS], images)
            if not self._fresh(target, sources):
                jobs.append(("maps", target, sources, maps, tuple(e.id for e in group)))
        return jobs

    def _run_jobs(self, jobs: list[tuple], *, progress: bool, workers: int | None) -> list[Problem]:
        problems: list[Problem] = []
        last_save = time.monotonic()
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(jobs), desc="decoded cache", unit="array", disable=not progress or not jobs)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(self._build_one, job): job for job in jobs}
                for future in as_completed(futures):
                    kind, target, sources, _, ids = futures[future]
                    bar.update(1)
                    try:
                        future.result()
                    except ImageReadError as err:
                        label = ids[0] if kind == "views" else describe_samples(ids)
                        problems.append(Problem(label, err.path or target, err.reason, ids))
                        self._files.pop(self._key(target), None)
                        continue
                    self._files[self._key(target)] = {"sources": sources}
                    if time.monotonic() - last_save > _MANIFEST_SAVE_INTERVAL:
                        self._save_manifest()
                        last_save = time.monotonic()
        finally:
            # Also on Ctrl-C: keep what was built.
            bar.close()
            self._save_manifest()
        problems.sort(key=lambda p: (str(p.path), p.problem))
        return problems

    def _build_one(self, job: tuple) -> None:
        kind, target, _, paths, _ = job
        if kind == "views":
            array = _quantise(load_views(paths, self.resolution))  # (V, 3, R, R)
        else:
            maps = load_maps(paths, self.map_resolution, self.normal_convention)
            maps["normal"] = encode_normal(maps["normal"], "opengl")
            array = _quantise(torch.cat([maps[name] for name in PBR_CHANNELS]))  # (8, R, R)
        target.parent.mkdir(parents=True, exist_ok=True)
        _save_array(target, array)

    def _discard_arrays(self) -> None:
        """Delete the arrays of a cache whose manifest is missing or of other settings."""
        for sub in ("views", "maps"):
            for path in (self.directory / sub).rglob("*.npy"):
                path.unlink(missing_ok=True)

    def __getstate__(self) -> dict:
        # Loader workers only load: leave the (possibly large) manifest records behind.
        return {**self.__dict__, "_files": {}}

    # --- load -----------------------------------------------------------------------------------

    def load(self, entry: SampleEntry) -> tuple[Tensor, dict[str, Tensor]]:
        """The cached views and maps of ``entry``.

        Returns:
            ``(views (V, 3, R, R) in [0, 1], maps)`` in the dataset's sample format; normals are
            decoded and renormalised.

        Raises:
            DatasetError: an array is missing or unreadable (the cache changed after the build).
        """
        views = self._read(self.views_file(entry), entry)
        stack = self._read(self.maps_file(entry.material), entry)
        maps: dict[str, Tensor] = {}
        start = 0
        for name, channels in PBR_CHANNELS.items():
            maps[name] = stack[start : start + channels]
            start += channels
        maps["normal"] = decode_normal(maps["normal"], "opengl")
        return views, maps

    def _read(self, path: Path, entry: SampleEntry) -> Tensor:
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DatasetError(
                f"{entry.id} | {path} | decoded cache array unreadable ({err}); rebuild it by running "
                "again with data.cache=true (or delete the cache folder)"
            ) from err
        # astype copies out of the mapping, so the tensor owns writable memory.
        return torch.from_numpy(array.astype(np.float32)).mul_(1.0 / 255.0)


def _quantise(x: Tensor) -> np.ndarray:
    """[0, 1] float -> uint8 (round to nearest)."""
    return np.ascontiguousarray((x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy())


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as handle:
        np.save(handle, array, allow_pickle=False)


def _stat_info(path: Path) -> ImageInfo:
    stat = path.stat()
    return ImageInfo(path, 0, 0, "", "", stat.st_size, stat.st_mtime_ns)


def _remove_temporaries(directory: Path) -> None:
    """Temporary files left by a killed build (``atomic_write`` names them ``.<name>.*.tmp``)."""
    for path in directory.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


def _build_lock(directory: Path) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock on ``<set>/.lock`` while building (without fcntl, on Windows, concurrent
    builders only duplicate work: writes are atomic)."""
    return exclusive_lock(directory / ".lock")
