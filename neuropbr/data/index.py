"""Scan and validate a dataset in the folder layout (pure functions).

Layout::

    root/input/{clean,dirty}/<sample>/{0..V-1}.png      (or .jpg/.jpeg; extra views are ignored)
    root/input/render_metadata.json                      {"<sample>": "<material>", ...}
    root/output/<material>/{albedo,roughness,metallic,normal}.png

Used by the folder dataset at start-up (``deep=False``) and by ``python -m neuropbr.check``
(``deep=True``). Every problem is collected, never raised one at a time, so a user fixes a
dataset in one pass. What is checked:

- structure: root, ``input/``, ``output/``, the metadata file (a flat JSON object of strings) and
  the selected render folders exist; some sample exists;
- samples: a sample folder absent from the metadata; a metadata entry with no folder in
  ``input/clean/`` nor ``input/dirty/`` (a sample that exists only in the render folder not
  selected by ``data.renders`` is simply not used); a missing view ``i < num_views``;
- materials: an invalid material name, a missing ``output/<material>/`` folder, a missing map;
- files: every image's header, and its integrity (PNG chunk CRCs up to IEND, JPEG end marker:
  one read of the file, no decoding); ``deep=True`` also decodes every pixel;
- sizes: every image must be square; the V views of a sample share one size; the four maps of a
  material share one size; normal maps have colour channels. Sizes may differ between samples,
  between materials, and between views and maps: everything is resized to ``data.resolution``.

``renders=both`` uses every sample of ``clean/`` and of ``dirty/``; a sample present in both
gives two entries (``clean/<name>`` and ``dirty/<name>``), which share a material and so always
land on the same side of the split.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from neuropbr.data.io import IMAGE_EXTENSIONS, ImageInfo, ImageReadError, find_image, inspect_image
from neuropbr.maps import PBR_MAPS

log = logging.getLogger(__name__)

RENDER_VARIANTS: tuple[str, ...] = ("clean", "dirty")
RENDERS_CHOICES: dict[str, tuple[str, ...]] = {
    "clean": ("clean",),
    "dirty": ("dirty",),
    "both": RENDER_VARIANTS,
}
METADATA_FILE = "render_metadata.json"
#: Image modes that carry no colour: not acceptable for a normal map.
_SINGLE_CHANNEL_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleEntry:
    """One usable training sample: V view files of one render variant and its material's maps.

    Attributes:
        name: the sample folder name (free string: ``sample_0``, ``sample_0000``, ...).
        variant: ``clean`` or ``dirty``.
        material: the material name from the metadata (the folder under ``output/``).
        views: the first V view files, in order.
        maps: ``{"albedo", "roughness", "metallic", "normal"} -> file``.
    """

    name: str
    variant: str
    material: str
    views: tuple[Path, ...]
    maps: Mapping[str, Path]

    @property
    def id(self) -> str:
        """``<variant>/<name>``: unique across variants, and the folder's path under ``input/``."""
        return f"{self.variant}/{self.name}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset, printed as ``sample | path | problem``.

    Attributes:
        sample: the sample id(s) concerned (``clean/sample_3``), the sample name for metadata
            entries, or ``-`` for the dataset as a whole.
        path: the file or folder at fault (or the one that should exist).
        problem: what is wrong, and what was expected.
        affected: ids of the sample entries this problem makes unusable (skipped with
            ``data.on_error=skip``).
        fatal: the dataset cannot be used at all (``on_error=skip`` cannot help).
    """

    sample: str
    path: Path
    problem: str
    affected: tuple[str, ...] = ()
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.sample} | {self.path} | {self.problem}"


class DatasetError(ValueError):
    """The dataset has problems; the message lists each as ``sample | path | problem``.

    Args:
        message: the full message.
        problems: the problems listed (empty when re-raised from a loader worker).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(
        cls, root: str | Path, problems: Sequence[Problem], hint: str | None = None
    ) -> DatasetError:
        """One error listing every problem, with a count and what to do next."""
        lines = [f"dataset {root}: {len(problems)} problem(s) (sample | path | problem):"]
        lines += [f"  {problem}" for problem in problems]
        lines.append(
            hint
            or f"Run `python -m neuropbr.check data.root={root}` for a full report, or set "
            "data.on_error=skip to train on the samples without problems."
        )
        return cls("\n".join(lines), problems)


@dataclass
class ScanResult:
    """Everything a scan found: the usable entries, every problem, and what is on disk.

    Attributes:
        root: the dataset root.
        num_views: V asked for.
        renders: ``clean``, ``dirty`` or ``both``.
        entries: the sample entries without problems, in natural order of name, then variant.
        problems: every problem found, sorted by path.
        images: every image inspected, by path.
        on_disk: sample folder names per render variant (``None``: the folder does not exist).
        metadata: the sample -> material mapping read from ``render_metadata.json``.
        candidates: ids of the selected sample folders (with or without problems).
        view_files: per selected sample id, how many view images (``<int>.<ext>``) its folder holds.
    """

    root: Path
    num_views: int
    renders: str
    entries: list[SampleEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    images: dict[Path, ImageInfo] = field(default_factory=dict)
    on_disk: dict[str, set[str] | None] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    candidates: list[str] = field(default_factory=list)
    view_files: dict[str, int] = field(default_factory=dict)

    @property
    def fatal(self) -> bool:
        """Whether a problem makes the whole dataset unusable."""
        return any(p.fatal for p in self.problems)

    def skipped(self) -> set[str]:
        """Ids of the selected samples that a problem makes unusable."""
        return {sample for p in self.problems for sample in p.affected}

    def counts(self) -> dict[str, int]:
        """Sample and material counts for logs and reports.

        Returns:
            ``clean``/``dirty``: sample folders on disk per variant; ``in_both``: names present in
            both; ``selected``: sample folders the renders choice selects; ``usable``: entries
            without problems; ``skipped``: selected samples with a problem; ``unselected``:
            metadata samples that exist only in the variant not selected; ``materials``: distinct
            materials of the usable entries; ``problems``: number of problems.
        """
        clean = self.on_disk.get("clean") or set()
        dirty = self.on_disk.get("dirty") or set()
        selected_variants = RENDERS_CHOICES.get(self.renders, ())
        present = set().union(*(self.on_disk.get(v) or set() for v in selected_variants))
        unselected = {
            name for name in self.metadata if (name in clean or name in dirty) and name not in present
        }
        return {
            "clean": len(clean),
            "dirty": len(dirty),
            "in_both": len(clean & dirty),
            "selected": len(self.candidates),
            "usable": len(self.entries),
            "skipped": len(self.skipped()),
            "unselected": len(unselected),
            "materials": len({e.material for e in self.entries}),
            "problems": len(self.problems),
        }

    def size_histogram(self, kind: str) -> Counter[str]:
        """``"WxH" -> count`` over the view files (``kind="views"``) or map files (``"maps"``)."""
        if kind not in ("views", "maps"):
            raise ValueError(f"kind={kind!r}; choose 'views' or 'maps'")
        input_dir = self.root / "input"
        hist: Counter[str] = Counter()
        for path, info in self.images.items():
            if path.is_relative_to(input_dir) == (kind == "views"):
                hist[f"{info.width}x{info.height}"] += 1
        return hist

    def format_histogram(self) -> Counter[str]:
        """``"PNG RGBA" -> count`` over every image inspected."""
        return Counter(f"{info.format} {info.mode}" for info in self.images.values())


# --- scanning -----------------------------------------------------------------------------------


def natural_key(name: str) -> tuple[str | int, ...]:
    """Sort key that orders ``sample_2`` before ``sample_10`` (digit runs compare as numbers)."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def scan_folder_dataset(
    root: str | Path,
    num_views: int,
    renders: str,
    *,
    deep: bool = False,
    trusted: Collection[tuple[str, int, int]] = (),
    workers: int | None = None,
) -> ScanResult:
    """Scan ``root`` in the folder layout and validate every sample, collecting all problems.

    Args:
        root: dataset root (holds ``input/`` and ``output/``).
        num_views: V, views each sample must have (``0 .. V-1``; more on disk are ignored).
        renders: ``clean``, ``dirty`` or ``both`` (the union of both folders).
        deep: fully decode every image (the check CLI); otherwise headers + integrity only.
        trusted: ``(path, size_bytes, mtime_ns)`` of files already fully decoded at this
            version (the decoded cache's sources): their integrity read is skipped.
        workers: threads that inspect files (default: 2 per CPU, at most 16).

    Returns:
        A :class:`ScanResult`; ``entries`` holds only samples without problems.
    """
    if renders not in RENDERS_CHOICES:
        raise ValueError(f"data.renders={renders!r}; choose one of {sorted(RENDERS_CHOICES)}")
    if num_views < 1:
        raise ValueError(f"data.num_views={num_views}: expected >= 1")
    root = Path(root)
    result = ScanResult(root=root, num_views=num_views, renders=renders)
    problems = result.problems
    input_dir, output_dir = root / "input", root / "output"

    if not root.is_dir():
        problems.append(Problem("-", root, "dataset root does not exist or is not a folder", fatal=True))
        return result
    for folder, what in ((input_dir, "renders and render_metadata.json"), (output_dir, "ground-truth maps")):
        if not folder.is_dir():
            problems.append(Problem("-", folder, f"folder missing (expected the {what} here)", fatal=True))
    metadata_path = input_dir / METADATA_FILE
    if input_dir.is_dir():
        result.metadata, bad_values = _read_metadata(metadata_path, problems)
    else:
        bad_values = {}
    for variant in RENDER_VARIANTS:
        result.on_disk[variant] = _list_sample_dirs(input_dir / variant)
    selected = RENDERS_CHOICES[renders]
    present = [v for v in selected if result.on_disk[v] is not None]
    if input_dir.is_dir() and not present:
        wanted = " nor ".join(f"input/{v}/" for v in selected)
        problems.append(
            Problem("-", input_dir / selected[0], f"no {wanted} folder (data.renders={renders})", fatal=True)
        )
    if result.fatal:
        problems.sort(key=lambda p: str(p.path))
        return result

    # Selected sample folders, and where their metadata is wrong.
    candidates: list[tuple[str, str]] = sorted(
        ((variant, name) for variant in present for name in result.on_disk[variant] or ()),
        key=lambda vn: (natural_key(vn[1]), vn[0]),
    )
    if not candidates:
        where = " and ".join(f"input/{v}/" for v in present)
        problems.append(Problem("-", input_dir / present[0], f"no sample folders in {where}", fatal=True))
        return result
    result.candidates = [f"{v}/{n}" for v, n in candidates]
    material_of: dict[tuple[str, str], str] = {}
    for variant, name in candidates:
        sample_id, folder = f"{variant}/{name}", input_dir / variant / name
        if name in bad_values:
            problems.append(Problem(sample_id, metadata_path, bad_values[name], (sample_id,)))
        elif name not in result.metadata:
            problems.append(
                Problem(sample_id, folder, f"sample folder not listed in {METADATA_FILE}", (sample_id,))
            )
        else:
            material_of[(variant, name)] = result.metadata[name]
    on_any = set().union(*(result.on_disk[v] or set() for v in RENDER_VARIANTS))
    for name in sorted(result.metadata, key=natural_key):
        if name not in on_any:
            problems.append(
                Problem(
                    name,
                    input_dir / selected[0] / name,
                    f"listed in {METADATA_FILE} but there is no input/clean/{name}/ nor input/dirty/{name}/",
                )
            )

    # Views of each sample, maps of each material.
    view_paths: dict[tuple[str, str], list[Path]] = {}
    for variant, name in candidates:
        sample_id, folder = f"{variant}/{name}", input_dir / variant / name
        names = _list_files(folder)
        result.view_files[sample_id] = sum(
            1 for n in names if Path(n).stem.isdigit() and Path(n).suffix.lower() in IMAGE_EXTENSIONS
        )
        paths: list[Path] = []
        for i in range(num_views):
            found = find_image(folder, str(i), names)
            if found is None:
                problems.append(
                    Problem(
                        sample_id,
                        folder / f"{i}.png",
                        f"missing view {i} (no {i}{'/'.join(IMAGE_EXTENSIONS)}; data.num_views={num_views})",
                        (sample_id,),
                    )
                )
            else:
                paths.append(found)
        view_paths[(variant, name)] = paths
    samples_of: dict[str, list[str]] = defaultdict(list)
    for (variant, name), material in material_of.items():
        samples_of[material].append(f"{variant}/{name}")
    map_paths: dict[str, dict[str, Path]] = {}
    for material in sorted(samples_of, key=natural_key):
        ids = tuple(samples_of[material])
        map_paths[material] = _find_maps(output_dir, material, ids, problems)

    # Every file once: header + integrity (+ full decode when deep), in parallel (I/O bound).
    files = sorted(
        {p for ps in view_paths.values() for p in ps} | {p for ms in map_paths.values() for p in ms.values()}
    )
    infos, errors = _inspect_all(files, deep=deep, trusted=set(trusted), workers=workers)
    result.images = infos
    for (variant, name), paths in view_paths.items():
        sample_id = f"{variant}/{name}"
        for path in paths:
            if path in errors:
                problems.append(Problem(sample_id, path, errors[path], (sample_id,)))
        _check_sizes(
            [infos[p] for p in paths if p in infos], sample_id, (sample_id,), "views of one sample", problems
        )
    for material, maps in map_paths.items():
        ids = tuple(samples_of[material])
        label = describe_samples(ids)
        for path in maps.values():
            if path in errors:
                problems.append(Problem(label, path, errors[path], ids))
        _check_sizes(
            [infos[p] for p in maps.values() if p in infos], label, ids, "maps of one material", problems
        )
        normal = maps.get("normal")
        if normal in infos and infos[normal].mode in _SINGLE_CHANNEL_MODES:
            problems.append(
                Problem(
                    label,
                    normal,
                    f"normal map has one channel (mode {infos[normal].mode}); expected RGB",
                    ids,
                )
            )

    # Entries: the selected samples no problem touches.
    bad = result.skipped()
    for variant, name in candidates:
        sample_id = f"{variant}/{name}"
        if sample_id in bad:
            continue
        material = material_of[(variant, name)]
        result.entries.append(
            SampleEntry(
                name, variant, material, tuple(view_paths[(variant, name)]), dict(map_paths[material])
            )
        )
    problems.sort(key=lambda p: (str(p.path), p.problem))
    log.debug("scanned %s: %s", root, result.counts())
    return result


def read_metadata(path: str | Path, hint: str | None = None) -> dict[str, str]:
    """The ``{"<sample>": "<material>"}`` mapping of a ``render_metadata.json`` on its own (batch
    inference names its outputs by material with it).

    Args:
        path: the metadata file.
        hint: the error message's last line (what to do).

    Raises:
        DatasetError: the file is missing, not a JSON object, or maps a sample to an invalid
            material name (every problem listed).
    """
    path = Path(path)
    problems: list[Problem] = []
    metadata, bad_values = _read_metadata(path, problems)
    problems += [Problem(name, path, reason) for name, reason in sorted(bad_values.items())]
    if problems:
        raise DatasetError.from_problems(path, problems, hint=hint or f"Fix {path}.")
    return metadata


def _read_metadata(path: Path, problems: list[Problem]) -> tuple[dict[str, str], dict[str, str]]:
    """``(sample -> material, sample -> why its value is invalid)``; file-level problems are fatal."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(
            Problem("-", path, 'metadata file missing (expected {"<sample>": "<material>"})', fatal=True)
        )
        return {}, {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(Problem("-", path, f"metadata file is not valid JSON ({err})", fatal=True))
        return {}, {}
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                "-",
                path,
                f'metadata must be a JSON object {{"<sample>": "<material>"}}, got {type(raw).__name__}',
                fatal=True,
            )
        )
        return {}, {}
    metadata: dict[str, str] = {}
    bad: dict[str, str] = {}
    for name, material in raw.items():
        if not isinstance(material, str):
            bad[name] = f"metadata value for {name!r} must be a material name (string), got {material!r}"
        elif not _valid_material_name(material):
            bad[name] = (
                f"invalid material name {material!r} for {name!r} (must be a folder name under output/)"
            )
        else:
            metadata[name] = material
    return metadata, bad


def _valid_material_name(name: str) -> bool:
    return (
        bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
    )


def _list_sample_dirs(folder: Path) -> set[str] | None:
    """Names of the non-hidden sub-folders, or None when ``folder`` does not exist."""
    try:
        return {e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")}
    except (FileNotFoundError, NotADirectoryError):
        return None


def _list_files(folder: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(folder) if e.is_file()}
    except OSError:
        return set()


def _find_maps(
    output_dir: Path, material: str, ids: tuple[str, ...], problems: list[Problem]
) -> dict[str, Path]:
    folder = output_dir / material
    label = describe_samples(ids)
    if not folder.is_dir():
        problems.append(
            Problem(
                label, folder, f"material folder missing (material {material!r} from {METADATA_FILE})", ids
            )
        )
        return {}
    names = _list_files(folder)
    maps: dict[str, Path] = {}
    for map_name in PBR_MAPS:
        found = find_image(folder, map_name, names)
        if found is None:
            problems.append(
                Problem(
                    label,
                    folder / f"{map_name}.png",
                    f"missing map {map_name!r} of material {material!r} (no {map_name}{'/'.join(IMAGE_EXTENSIONS)})",
                    ids,
                )
            )
        else:
            maps[map_name] = found
    return maps


def _inspect_all(
    files: Sequence[Path], *, deep: bool, trusted: set[tuple[str, int, int]], workers: int | None
) -> tuple[dict[Path, ImageInfo], dict[Path, str]]:
    """Inspect every file in a thread pool: ``(infos of good files, reason of bad files)``."""

    def inspect(path: Path) -> ImageInfo | str:
        try:
            info = inspect_image(path, integrity=False)
            if deep or (str(path), info.size_bytes, info.mtime_ns) not in trusted:
                info = inspect_image(path, integrity=True, deep=deep)
            return info
        except ImageReadError as err:
            return err.reason

    workers = workers or min(16, 2 * (os.cpu_count() or 1))
    infos: dict[Path, ImageInfo] = {}
    errors: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, outcome in zip(files, pool.map(inspect, files)):
            if isinstance(outcome, str):
                errors[path] = outcome
            else:
                infos[path] = outcome
    return infos, errors


def _check_sizes(
    infos: Iterable[ImageInfo], label: str, affected: tuple[str, ...], group: str, problems: list[Problem]
) -> None:
    """Every image square, and one size within the group (views of a sample, maps of a material)."""
    infos = list(infos)
    for info in infos:
        if info.width != info.height:
            problems.append(
                Problem(
                    label,
                    info.path,
                    f"not square: {info.width}x{info.height} (views and maps must be square)",
                    affected,
                )
            )
    # Non-square images are reported above; compare the square ones.
    square = [info for info in infos if info.width == info.height]
    if len({info.size for info in square}) > 1:
        listing = ", ".join(f"{info.path.name} {info.width}x{info.height}" for info in square)
        problems.append(
            Problem(
                label,
                square[0].path.parent,
                f"inconsistent sizes: {listing} (the {group} must share one size)",
                affected,
            )
        )


def describe_samples(ids: Sequence[str], limit: int = 3) -> str:
    """``clean/a, clean/b, dirty/c (+4 more)``: the samples a material-level problem touches."""
    if len(ids) <= limit:
        return ", ".join(ids)
    return f"{', '.join(ids[:limit])} (+{len(ids) - limit} more)"
