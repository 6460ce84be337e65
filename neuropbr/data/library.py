"""Material libraries: find the materials in a folder tree and map their files to PBR maps.

A *library* is any folder tree of texture sets: a public library download (ambientCG, Poly
Haven, a scanned set), this project's own ``output/<material>/{albedo,roughness,metallic,
normal}.png`` (or a whole dataset root holding ``output/``), or anything else described by a
``layout.yaml`` mapping file. :func:`scan_library` finds the materials, picks one file per map,
and records every choice it made (defaults, conversions, which of two candidates won) and every
problem (``material | path | problem``, like the folder dataset's check);
:func:`load_material` decodes a material into the maps the renderer and the datasets use.

**File names.** A file name is split into tokens at ``_``, ``-``, spaces and dots; resolution
tokens (``1K``, ``2k``) and format tokens (``PNG``, ``JPG``) are dropped; the last run of tokens
that names a map decides the map, and the tokens before it name the material (so several
materials may share a folder). The vocabulary (case-insensitive):

- albedo: ``albedo``, ``basecolor``/``base_color``, ``color``/``colour``, ``col``, ``diffuse``, ``diff``
- roughness: ``roughness``, ``rough``, ``rgh``; glossiness (``glossiness``, ``gloss``) is inverted
- metallic: ``metallic``, ``metalness``, ``metal``
- normal: ``normalgl``/``nor_gl``/``normal_gl`` (OpenGL), ``normaldx``/``nor_dx``/``normal_dx``
  (DirectX, green flipped on load), plain ``normal``/``nor``/``nrm`` (OpenGL assumed, reported)
- height: ``height``, ``displacement``, ``disp``, ``bump``
- ambient occlusion: ``ambientocclusion``/``ambient_occlusion``, ``ao``, ``occlusion``
- opacity: ``opacity``, ``alpha``
- packed ``arm``/``orm``: ambient occlusion, roughness, metallic in R, G, B

A dedicated file beats a packed channel; roughness beats glossiness; OpenGL beats an unnamed
convention beats DirectX; then the largest resolution token, then PNG over TIFF over JPEG.

**Values.** Albedo is sRGB (a map declared ``linear`` in ``layout.yaml`` is encoded to sRGB);
roughness, metallic, height, AO and opacity are linear, first channel (a map declared ``srgb`` is
decoded to linear); normals are ``(n + 1) / 2``, returned as OpenGL unit vectors. A missing
metallic map is 0 everywhere and a missing roughness map is ``roughness_default`` (0.5 unless
the layout says otherwise), a missing normal map is flat: each is listed as a choice. Maps of
one material with different sizes are resized to the largest (a choice); maps whose aspect
ratios differ are a problem and the material is refused. Any PNG/JPEG/TIFF, 8 or 16 bits, loads
through :mod:`neuropbr.data.io`.

**Families.** A material's family (category) comes from ``input/render_params.json`` for this
project's datasets, else from its parent folder (``Wood/Wood001/...`` -> ``Wood``; the folder
itself when it holds several materials), else from the leading letters of its name
(``Bricks076C`` -> ``bricks``, ``brick_wall_001`` -> ``brick_wall``).

**layout.yaml** (at the library root, or given explicitly)::

    maps:
      albedo: "*_col.jpg"                       # glob on file names, case-insensitive
      roughness: {pattern: "*_gloss.png", invert: true}
      metallic: {pattern: "{material}_orm.png", channel: b}    # {material}: several per folder
      normal: {pattern: "*_nrm.png", convention: directx}
    normal_convention: opengl      # default for normal maps without their own
    colour_space: {albedo: srgb}   # srgb | linear per map
    roughness_default: 0.5
    family: auto                   # auto | folder | prefix | none

Without ``{material}`` every folder holding an albedo match is one material.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from neuropbr.data.index import DatasetError, Problem, natural_key
from neuropbr.data.io import ImageReadError, decode_normal, inspect_image, read_image
from neuropbr.render.color import linear_to_srgb, srgb_to_linear

log = logging.getLogger(__name__)

#: Every map a library material may have; the first four are what the model learns.
MAP_KINDS: tuple[str, ...] = ("albedo", "roughness", "metallic", "normal", "height", "ao", "opacity")
MAP_CHANNELS: dict[str, int] = {
    "albedo": 3, "roughness": 1, "metallic": 1, "normal": 3, "height": 1, "ao": 1, "opacity": 1,
}  # fmt: skip
LIBRARY_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
LAYOUT_FILE = "layout.yaml"
DEFAULT_ROUGHNESS = 0.5
FAMILY_SOURCES = ("auto", "folder", "prefix", "none")
COLOUR_SPACES = ("srgb", "linear")
NORMAL_CONVENTIONS = ("opengl", "directx")
_FORMAT_RANK = {".png": 0, ".tif": 1, ".tiff": 1, ".jpg": 2, ".jpeg": 2}
_CHANNEL_NAMES = {"r": 0, "g": 1, "b": 2, "a": 3, "0": 0, "1": 1, "2": 2, "3": 3}
_RESOLUTION_TOKEN = re.compile(r"^(\d+)k$", re.IGNORECASE)
_FORMAT_TOKENS = frozenset({"png", "jpg", "jpeg", "tif", "tiff", "exr"})
_SPLIT = re.compile(r"[_\-\s.]+")


@dataclass(frozen=True)
class _Term:
    """What a run of name tokens means: a map, or a packed AO/roughness/metallic file."""

    kind: str  # a MAP_KINDS entry, "packed", or "ignored"
    rank: int = 0  # lower wins among candidates of one map
    invert: bool = False
    convention: str | None = None  # normals: the convention the name states (None: unstated)


_VOCABULARY: dict[tuple[str, ...], _Term] = {}
for _words, _term in (
    (["albedo", "basecolor", "base color", "basecolour", "base colour", "color", "colour", "col",
      "diffuse", "diff", "diffuse color"], _Term("albedo")),
    (["roughness", "rough", "rgh"], _Term("roughness")),
    (["glossiness", "gloss"], _Term("roughness", rank=1, invert=True)),
    (["metallic", "metalness", "metal"], _Term("metallic")),
    (["normalgl", "normal gl", "nor gl", "nrm gl"], _Term("normal", convention="opengl")),
    (["normal", "normals", "nor", "nrm"], _Term("normal", rank=1)),
    (["normaldx", "normal dx", "nor dx", "nrm dx"], _Term("normal", rank=2, convention="directx")),
    (["height", "displacement", "disp"], _Term("height")),
    (["bump"], _Term("height", rank=1)),
    (["ambientocclusion", "ambient occlusion", "ao", "occlusion"], _Term("ao")),
    (["opacity", "alpha"], _Term("opacity")),
    (["arm", "orm"], _Term("packed")),
    (["specular", "spec", "emission", "emissive", "translucency", "idmask", "preview", "thumbnail",
      "sphere", "cube", "flat"], _Term("ignored")),
):  # fmt: skip
    for _phrase in _words:
        _VOCABULARY[tuple(_phrase.split())] = _term
_LONGEST_PHRASE = max(len(k) for k in _VOCABULARY)
#: Packed AO/roughness/metallic: which channel holds which map.
_PACKED_CHANNELS = {"ao": 0, "roughness": 1, "metallic": 2}


class LibraryError(DatasetError):
    """A library cannot be used; the message lists every problem as ``material | path | problem``."""

    @classmethod
    def from_problems(
        cls, root: str | Path, problems: Sequence[Problem], hint: str | None = None
    ) -> LibraryError:
        hint = hint or f"Run `python -m neuropbr.check library={root}` for the full report."
        message = str(DatasetError.from_problems(root, problems, hint))
        header = f"material library {root}: {len(problems)} problem(s) (material | path | problem):"
        return cls("\n".join([header, *message.split("\n")[1:]]), problems)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapSource:
    """Where one map of a material comes from.

    Attributes:
        path: the image file.
        channel: the channel to take (packed files), or None for the whole image / first channel.
        invert: ``1 - value`` (glossiness -> roughness).
        convention: normals: ``opengl`` or ``directx`` (green flipped on load).
        colour_space: ``srgb`` or ``linear``, how the file stores the values.
    """

    path: Path
    channel: int | None = None
    invert: bool = False
    convention: str = "opengl"
    colour_space: str = "linear"

    def describe(self, root: Path) -> str:
        parts = [_relative(self.path, root)]
        if self.channel is not None:
            parts.append(f"channel {'RGBA'[self.channel]}")
        if self.invert:
            parts.append("inverted")
        return ", ".join(parts)


@dataclass(frozen=True)
class LibraryMaterial:
    """One usable material of a library.

    Attributes:
        name: unique within the library: its folder relative to the root (``Wood/Wood001``), plus
            ``/<stem>`` when the folder holds several materials.
        slug: ``name`` as one file-name-safe folder name (``Wood--Wood001``).
        family: its category, or None.
        family_source: where the family came from (``metadata``, ``folder``, ``prefix``) or ``none``.
        sources: ``{map kind: MapSource}`` for the maps found.
        defaults: ``{map kind: constant}`` for the required maps that were missing.
        size: ``(width, height)`` the maps are served at (the largest of its files).
        choices: human-readable notes on every decision made for this material.
    """

    name: str
    slug: str
    family: str | None
    family_source: str
    sources: Mapping[str, MapSource]
    defaults: Mapping[str, float]
    size: tuple[int, int]
    choices: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        """The distinct files the material reads."""
        return sorted({source.path for source in self.sources.values()})


@dataclass
class LibraryScan:
    """What :func:`scan_library` found.

    Attributes:
        root: the library root as given.
        layout: the mapping file used, or None (file-name conventions).
        materials: the usable materials, in natural order of name.
        problems: everything that makes a material (or the library) unusable.
        ignored: image files that name no map, or that lost to a better candidate, with why.
        family_counts: materials per family.
    """

    root: Path
    layout: Path | None = None
    materials: list[LibraryMaterial] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    def refused(self) -> set[str]:
        """Names of the materials a problem makes unusable."""
        return {name for p in self.problems for name in p.affected}

    def family_counts(self) -> Counter[str]:
        return Counter(m.family or "(none)" for m in self.materials)

    def by_name(self) -> dict[str, LibraryMaterial]:
        return {m.name: m for m in self.materials}


# --- the mapping file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _PatternRule:
    kind: str
    pattern: str
    regex: re.Pattern[str]
    per_material: bool  # the pattern holds {material}
    channel: int | None
    invert: bool
    convention: str | None
    colour_space: str | None


@dataclass(frozen=True)
class Layout:
    """A parsed ``layout.yaml`` (see the module docstring)."""

    path: Path
    rules: tuple[_PatternRule, ...]
    normal_convention: str = "opengl"
    colour_space: Mapping[str, str] = field(default_factory=dict)
    roughness_default: float = DEFAULT_ROUGHNESS
    family: str = "auto"


def _glob_regex(pattern: str) -> tuple[re.Pattern[str] | None, str | None]:
    """A case-insensitive regex for a file-name glob with an optional ``{material}``; or the error."""
    if not pattern.strip():
        return None, "empty pattern"
    if "/" in pattern or "\\" in pattern:
        return None, "patterns match file names inside a material folder; no '/' allowed"
    if pattern.count("{material}") > 1:
        return None, "'{material}' may appear once"
    stripped = pattern.replace("{material}", "")
    if "{" in stripped or "}" in stripped:
        return None, "unknown placeholder (only '{material}' is allowed)"
    depth = 0
    for char in stripped:  # fnmatch treats an unclosed '[' as a literal: almost always a typo
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        return None, "unclosed '[' in the pattern"
    parts = pattern.split("{material}")
    # fnmatch.translate gives (?s:BODY)\Z (\z from Python 3.14): keep BODY, join at {material}.
    bodies = [re.sub(r"\)\\[zZ]$", "", fnmatch.translate(p).removeprefix("(?s:")) for p in parts]
    body = "(?P<material>.+?)".join(bodies)
    try:
        return re.compile(f"(?s:{body})\\Z", re.IGNORECASE), None
    except re.error as err:
        return None, f"not a valid glob ({err})"


def read_layout(path: str | Path) -> tuple[Layout | None, list[Problem]]:
    """Parse a mapping file; every mistake becomes a fatal problem naming the key.

    Returns:
        ``(layout, problems)``; ``layout`` is None when anything is wrong.
    """
    path = Path(path)
    problems: list[Problem] = []

    def bad(key: str, message: str) -> None:
        problems.append(Problem("layout", path, f"{key}: {message}", fatal=True))

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        bad("file", "not found")
        return None, problems
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        bad("file", f"not valid YAML ({err})")
        return None, problems
    if not isinstance(raw, dict):
        bad("file", f"expected a mapping with a 'maps' key, got {type(raw).__name__}")
        return None, problems
    known = {"maps", "normal_convention", "colour_space", "roughness_default", "family"}
    for key in sorted(set(raw) - known):
        bad(str(key), f"unknown key (expected one of {sorted(known)})")
    convention = raw.get("normal_convention", "opengl")
    if convention not in NORMAL_CONVENTIONS:
        bad("normal_convention", f"{convention!r}; expected one of {list(NORMAL_CONVENTIONS)}")
    family = raw.get("family", "auto")
    if family not in FAMILY_SOURCES:
        bad("family", f"{family!r}; expected one of {list(FAMILY_SOURCES)}")
    roughness_default = raw.get("roughness_default", DEFAULT_ROUGHNESS)
    if (
        isinstance(roughness_default, bool)
        or not isinstance(roughness_default, (int, float))
        or not (0.0 <= roughness_default <= 1.0)
    ):
        bad("roughness_default", f"{roughness_default!r}; expected a number in [0, 1]")
    spaces = raw.get("colour_space") or {}
    if not isinstance(spaces, dict):
        bad("colour_space", f"expected a mapping of map -> srgb|linear, got {spaces!r}")
        spaces = {}
    for kind, space in spaces.items():
        if kind not in MAP_KINDS or kind == "normal":
            bad(
                f"colour_space.{kind}",
                f"unknown map (expected one of {[k for k in MAP_KINDS if k != 'normal']})",
            )
        elif space not in COLOUR_SPACES:
            bad(f"colour_space.{kind}", f"{space!r}; expected one of {list(COLOUR_SPACES)}")
    maps = raw.get("maps")
    rules: list[_PatternRule] = []
    if not isinstance(maps, dict) or not maps:
        bad("maps", "missing or empty; expected e.g. {albedo: '*_col.png', normal: '*_nrm.png'}")
        maps = {}
    for kind, spec in maps.items():
        key = f"maps.{kind}"
        if kind not in MAP_KINDS:
            bad(key, f"unknown map (expected one of {list(MAP_KINDS)})")
            continue
        entries = spec if isinstance(spec, list) else [spec]  # several patterns: first match wins
        for entry in entries:
            if isinstance(entry, str):
                entry = {"pattern": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("pattern"), str):
                bad(
                    key,
                    f"expected a glob string or {{pattern: ..., channel/invert/convention}}, got {entry!r}",
                )
                continue
            extra = set(entry) - {"pattern", "channel", "invert", "convention", "colour_space"}
            if extra:
                bad(key, f"unknown option(s) {sorted(extra)}")
            regex, error = _glob_regex(entry["pattern"])
            if error:
                bad(key, f"pattern {entry['pattern']!r}: {error}")
                continue
            channel = entry.get("channel")
            if channel is not None:
                channel = _CHANNEL_NAMES.get(str(channel).lower())
                if channel is None:
                    bad(key, f"channel {entry['channel']!r}; expected r, g, b, a or 0..3")
                    continue
            entry_convention = entry.get("convention")
            if entry_convention is not None and entry_convention not in NORMAL_CONVENTIONS:
                bad(key, f"convention {entry_convention!r}; expected one of {list(NORMAL_CONVENTIONS)}")
                continue
            entry_space = entry.get("colour_space")
            if entry_space is not None and entry_space not in COLOUR_SPACES:
                bad(key, f"colour_space {entry_space!r}; expected one of {list(COLOUR_SPACES)}")
                continue
            assert regex is not None
            rules.append(
                _PatternRule(
                    kind, entry["pattern"], regex, "{material}" in entry["pattern"], channel,
                    bool(entry.get("invert", False)), entry_convention, entry_space,
                )
            )  # fmt: skip
    if maps and "albedo" not in maps:
        bad("maps.albedo", "missing: every material needs an albedo (base colour) map")
    if problems:
        return None, problems
    return (
        Layout(
            path,
            tuple(rules),
            convention,
            dict(spaces),
            float(roughness_default),
            family,  # type: ignore[arg-type]
        ),
        problems,
    )


# --- scanning -----------------------------------------------------------------------------------


@dataclass
class _Candidate:
    """One file (or one channel of one) that could serve a map of a material."""

    kind: str
    path: Path
    rank: tuple[Any, ...]
    channel: int | None = None
    invert: bool = False
    convention: str | None = None
    colour_space: str | None = None
    why: str = ""


def _tokens(stem: str) -> tuple[list[str], list[str], int]:
    """``(kept tokens as written, lower-case kept tokens, largest resolution in K or 0)``."""
    kept, lower, resolution = [], [], 0
    for token in _SPLIT.split(stem):
        if not token:
            continue
        match = _RESOLUTION_TOKEN.match(token)
        if match:
            resolution = max(resolution, int(match.group(1)))
        elif token.lower() not in _FORMAT_TOKENS:
            kept.append(token)
            lower.append(token.lower())
    return kept, lower, resolution


def parse_file_name(name: str) -> tuple[str, _Term, int] | None:
    """``(material stem, meaning, resolution in K)`` of a texture file name, or None.

    The stem is the text before the last run of tokens that names a map (tokens after it other
    than resolution and format, e.g. a variant suffix, are kept in the stem too).

    >>> parse_file_name("Bricks076C_1K-PNG_NormalDX.png")[:1], parse_file_name("rock_nor_gl_2k.jpg")[0]
    (('Bricks076C',), 'rock')
    """
    stem = name.rsplit(".", 1)[0]
    kept, lower, resolution = _tokens(stem)
    for end in range(len(lower), 0, -1):  # the last phrase wins ("metal_plate_rough": rough)
        for length in range(min(_LONGEST_PHRASE, end), 0, -1):  # the longest phrase ending there
            term = _VOCABULARY.get(tuple(lower[end - length : end]))
            if term is not None:
                material = "_".join(kept[: end - length] + kept[end:])
                return material, term, resolution
    return None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _slug(name: str) -> str:
    """A folder name for ``name``: path separators become ``--``, other odd characters ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.replace("/", "--")).strip(".") or "material"


def _prefix_family(name: str) -> str | None:
    """The leading words of a material name, up to its first digit (``Bricks076C`` -> ``bricks``)."""
    words = []
    for token in _SPLIT.split(name.rsplit("/", 1)[-1]):
        letters = re.match(r"[A-Za-z]+", token)
        if not letters:
            break
        words.append(letters.group(0).lower())
        if letters.group(0) != token:  # digits follow inside the token
            break
    return "_".join(words) or None


def _project_layout(root: Path) -> tuple[Path, dict[str, str]]:
    """For a dataset root of this project (``input/`` + ``output/``): ``output/`` and its families."""
    if not ((root / "output").is_dir() and (root / "input").is_dir()):
        return root, {}
    families: dict[str, str] = {}
    params = root / "input" / "render_params.json"
    try:
        materials = json.loads(params.read_text(encoding="utf-8")).get("materials", {})
        families = {
            str(k): str(v["family"]) for k, v in materials.items() if isinstance(v, dict) and v.get("family")
        }
    except (OSError, ValueError, AttributeError):
        pass  # families are optional; the folder names still give the materials
    return root / "output", families


def _image_folders(root: Path, empty: list[Path]) -> dict[Path, list[str]]:
    """Folder -> image file names under it (hidden folders and the decoded cache skipped); folders
    without images or sub-folders are appended to ``empty``."""
    found: dict[Path, list[str]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = sorted(f for f in files if f.lower().endswith(LIBRARY_SUFFIXES) and not f.startswith("."))
        if names:
            found[Path(folder)] = names
        elif not dirs and folder != str(root):
            empty.append(Path(folder))
    return found


def _group_by_conventions(
    folder: Path, names: Sequence[str], ignored: list[tuple[Path, str]]
) -> dict[str, list[_Candidate]]:
    """Stem -> candidates, from the file-name vocabulary."""
    groups: dict[str, list[_Candidate]] = defaultdict(list)
    for name in names:
        path = folder / name
        parsed = parse_file_name(name)
        if parsed is None:
            ignored.append((path, "the name does not say which map it is"))
            continue
        stem, term, resolution = parsed
        suffix = path.suffix.lower()
        order = (-resolution, _FORMAT_RANK.get(suffix, 9), name)
        if term.kind == "ignored":
            ignored.append((path, "not a map the model uses"))
        elif term.kind == "packed":
            for kind, channel in _PACKED_CHANNELS.items():
                groups[stem].append(
                    _Candidate(kind, path, (1, 0, *order), channel=channel, why=f"packed AO/roughness/metallic, channel {'RGB'[channel]}")
                )  # fmt: skip
        else:
            groups[stem].append(
                _Candidate(
                    term.kind, path, (0, term.rank, *order), invert=term.invert, convention=term.convention
                )
            )
    return groups


def _group_by_layout(
    folder: Path, names: Sequence[str], layout: Layout, ignored: list[tuple[Path, str]]
) -> dict[str, list[_Candidate]]:
    groups: dict[str, list[_Candidate]] = defaultdict(list)
    for name in names:
        matched = False
        for rank, rule in enumerate(layout.rules):
            match = rule.regex.match(name)
            if not match:
                continue
            matched = True
            stem = match.group("material") if rule.per_material else ""
            groups[stem].append(
                _Candidate(
                    rule.kind, folder / name, (rank, name), channel=rule.channel, invert=rule.invert,
                    convention=rule.convention or layout.normal_convention, colour_space=rule.colour_space,
                    why=f"matches {rule.pattern!r}",
                )
            )  # fmt: skip
        if not matched:
            ignored.append((folder / name, f"matches no pattern of {layout.path.name}"))
    return groups


def scan_library(
    root: str | Path,
    *,
    layout: str | Path | None = None,
    roughness_default: float | None = None,
    deep: bool = False,
) -> LibraryScan:
    """Find and validate every material under ``root``, collecting all problems.

    Args:
        root: the library folder (or a dataset root of this project).
        layout: a mapping file; default ``root/layout.yaml`` when it exists, else file-name
            conventions.
        roughness_default: constant for a missing roughness map (default: the layout's, else 0.5).
        deep: decode every file fully (``python -m neuropbr.check``) instead of reading
            headers and checking integrity.

    Returns:
        The :class:`LibraryScan`; problems refuse single materials, or (``fatal``) the library.
    """
    root = Path(root).expanduser()
    scan = LibraryScan(root)
    if not root.is_dir():
        scan.problems.append(Problem("-", root, "library folder not found", fatal=True))
        return scan
    layout_path = (
        Path(layout).expanduser()
        if layout
        else (root / LAYOUT_FILE if (root / LAYOUT_FILE).is_file() else None)
    )
    parsed_layout: Layout | None = None
    if layout_path is not None:
        scan.layout = layout_path
        parsed_layout, layout_problems = read_layout(layout_path)
        if layout_problems:
            scan.problems.extend(layout_problems)
            return scan
    if roughness_default is None:
        roughness_default = parsed_layout.roughness_default if parsed_layout else DEFAULT_ROUGHNESS
    if not 0.0 <= roughness_default <= 1.0:
        raise ValueError(f"roughness_default={roughness_default}: expected a value in [0, 1]")
    family_mode = parsed_layout.family if parsed_layout else "auto"
    base, metadata_families = _project_layout(root)

    empty: list[Path] = []
    folders = _image_folders(base, empty)
    scan.ignored.extend((folder, "empty folder (no PNG/JPEG/TIFF file)") for folder in empty)
    drafts: list[tuple[str, Path, str, list[_Candidate], str | None, str]] = []
    for folder, names in folders.items():
        if parsed_layout is not None:
            groups = _group_by_layout(folder, names, parsed_layout, scan.ignored)
        else:
            groups = _group_by_conventions(folder, names, scan.ignored)
        rel = folder.relative_to(base).parts
        for stem, candidates in sorted(groups.items()):
            several = len(groups) > 1
            name = "/".join([*rel, stem] if (several or not rel) and stem else rel) or (stem or root.name)
            family, source = None, "none"
            if family_mode != "none":
                if name in metadata_families:
                    family, source = metadata_families[name], "metadata"
                elif family_mode in ("auto", "folder") and (len(rel) >= 2 or (several and rel)):
                    family, source = (rel[-1] if several else rel[-2]), "folder"
                elif family_mode in ("auto", "prefix"):
                    family = _prefix_family(stem or name)
                    source = "prefix" if family else "none"
            drafts.append((name, folder, stem, candidates, family, source))

    name_counts = Counter(d[0] for d in drafts)
    for name, folder, stem, candidates, family, source in sorted(drafts, key=lambda d: natural_key(d[0])):
        if name_counts[name] > 1:  # e.g. "wall.png" and "wall_albedo.png" in one folder
            name = f"{name}/{stem or '_'}"
        material = _resolve_material(
            name, folder, candidates, family, source, scan, roughness_default, parsed_layout, deep
        )
        if material is not None:
            scan.materials.append(material)
    if not drafts and not scan.problems:
        what = (
            f"no file matches the patterns of {layout_path}"
            if parsed_layout
            else (
                "no texture set found (expected files such as <name>_Color.png, <name>_Roughness.png, "
                "or albedo.png, roughness.png, metallic.png, normal.png per folder)"
            )
        )
        scan.problems.append(Problem("-", base, f"empty library: {what}", fatal=True))
    slugs = Counter(m.slug for m in scan.materials)
    for material in scan.materials:
        if slugs[material.slug] > 1:
            scan.problems.append(
                Problem(material.name, root, f"folder name {material.slug!r} is shared with another material", (material.name,))
            )  # fmt: skip
    refused = scan.refused()
    scan.materials = [m for m in scan.materials if m.name not in refused]
    scan.problems.sort(key=lambda p: (natural_key(p.sample), str(p.path)))
    return scan


def _resolve_material(
    name: str,
    folder: Path,
    candidates: list[_Candidate],
    family: str | None,
    family_source: str,
    scan: LibraryScan,
    roughness_default: float,
    layout: Layout | None,
    deep: bool,
) -> LibraryMaterial | None:
    """Pick one candidate per map, read the headers, record choices; None when refused."""
    choices: list[str] = []
    sources: dict[str, MapSource] = {}
    losers: list[tuple[Path, str]] = []
    by_kind: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        by_kind[candidate.kind].append(candidate)
    root = scan.root
    for kind in MAP_KINDS:
        options = sorted(by_kind.get(kind, []), key=lambda c: c.rank)
        if not options:
            continue
        best = options[0]
        losers.extend(
            (loser.path, f"{name}: {kind} taken from {best.path.name} instead") for loser in options[1:]
        )
        convention = best.convention or (layout.normal_convention if layout else "opengl")
        space = best.colour_space or (layout.colour_space.get(kind) if layout else None)
        space = space or ("srgb" if kind == "albedo" else "linear")
        sources[kind] = MapSource(best.path, best.channel, best.invert, convention, space)
        note = f"{kind}: {sources[kind].describe(root)}"
        if best.why and best.channel is None:
            note += f" ({best.why})"
        if kind == "normal":
            if convention == "directx":
                note += " - DirectX normal, green flipped to OpenGL"
            elif best.convention is None and layout is None:
                note += " - convention not in the name, OpenGL assumed"
        if kind == "roughness" and best.invert:
            note += " - glossiness, inverted to roughness"
        if space != ("srgb" if kind == "albedo" else "linear"):
            note += f" - stored {space}, converted"
        if len({o.path for o in options}) > 1:
            note += f" (chosen over {', '.join(sorted({o.path.name for o in options[1:] if o.path != best.path}))})"
        choices.append(note)

    used = {source.path for source in sources.values()}
    scan.ignored.extend(sorted({(path, why) for path, why in losers if path not in used}))
    problems: list[Problem] = []
    if "albedo" not in sources:
        found = ", ".join(sorted({c.path.name for c in candidates})) or "nothing"
        problems.append(
            Problem(name, folder, f"no albedo/base colour map (found {found}; expected e.g. *_Color, *_BaseColor, *_diff_, albedo.png)", (name,))
        )  # fmt: skip
    defaults: dict[str, float] = {}
    if "metallic" not in sources:
        defaults["metallic"] = 0.0
        choices.append("metallic: no map, constant 0 (dielectric)")
    if "roughness" not in sources:
        defaults["roughness"] = roughness_default
        choices.append(f"roughness: no map, constant {roughness_default:g}")
    if "normal" not in sources:
        choices.append("normal: no map, flat (0, 0, 1)")
    sizes: dict[Path, tuple[int, int]] = {}
    for kind, source in sources.items():
        if source.path in sizes:
            continue
        try:
            info = inspect_image(source.path, deep=deep)
        except ImageReadError as err:
            problems.append(Problem(name, source.path, f"unreadable {kind} map: {err.reason}", (name,)))
            continue
        sizes[source.path] = info.size
        if info.format == "TIFF" and info.mode == "RGB" and _tiff_bits(source.path) > 8:
            choices.append(f"{kind}: {source.path.name} is a 16-bit RGB TIFF, read at 8 bits (Pillow)")
        channels_needed = 3 if kind == "normal" else (source.channel or 0) + 1
        if info.mode in ("1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "P") and channels_needed > 1:
            if info.mode != "P":
                problems.append(
                    Problem(name, source.path, f"{kind} map needs {'colour' if kind == 'normal' else 'channel ' + 'RGBA'[source.channel or 0]}, the file is single-channel ({info.mode})", (name,))
                )  # fmt: skip
    size = (0, 0)
    if sizes:
        size = max(sizes.values(), key=lambda s: s[0] * s[1])
        aspect = size[0] / size[1]
        for path, (width, height) in sorted(sizes.items()):
            if (width, height) == size:
                continue
            if abs(width / height - aspect) > 0.01 * aspect:
                problems.append(
                    Problem(name, path, f"{width}x{height} has another aspect ratio than the material's {size[0]}x{size[1]} maps; refused", (name,))
                )  # fmt: skip
            else:
                choices.append(
                    f"resized: {_relative(path, root)} is {width}x{height}, resized to {size[0]}x{size[1]}"
                )
    if family_source != "none":
        choices.append(
            f"family: {family} (from the {'parent folder' if family_source == 'folder' else 'name prefix' if family_source == 'prefix' else 'dataset metadata'})"
        )
    if problems:
        scan.problems.extend(problems)
        return None
    return LibraryMaterial(
        name=name, slug=_slug(name), family=family, family_source=family_source, sources=sources,
        defaults=defaults, size=size, choices=tuple(choices),
    )  # fmt: skip


# --- decoding -----------------------------------------------------------------------------------


def _resize(t: Tensor, size: tuple[int, int]) -> Tensor:
    """(C, H, W) -> (C, h, w) given ``size`` = (w, h): area when shrinking, bicubic when enlarging."""
    width, height = size
    if t.shape[-2:] == (height, width):
        return t
    shrinking = t.shape[-1] >= width and t.shape[-2] >= height
    out = F.interpolate(
        t[None],
        size=(height, width),
        mode="area" if shrinking else "bicubic",
        align_corners=None if shrinking else False,
    )
    return out[0].clamp(0.0, 1.0)


def served_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """``size`` (w, h) scaled down so that its shorter side is at most ``max_side``."""
    width, height = size
    if max_side is None or min(width, height) <= max_side:
        return width, height
    scale = max_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_material(material: LibraryMaterial, max_side: int | None = None) -> dict[str, Tensor]:
    """Decode a material's maps (see the module docstring for the value conventions).

    Args:
        material: from :func:`scan_library`.
        max_side: shrink (box filter) so that the shorter side is at most this many texels.

    Returns:
        ``{"albedo": (3, H, W) sRGB, "roughness", "metallic": (1, H, W), "normal": (3, H, W) OpenGL
        unit vectors}`` plus ``height``/``ao``/``opacity`` (1, H, W) when the material has them.

    Raises:
        ImageReadError: a file could not be decoded (names the path).
    """
    size = served_size(material.size, max_side)
    width, height = size
    decoded: dict[Path, Tensor] = {}
    maps: dict[str, Tensor] = {}
    for kind, source in material.sources.items():
        if source.path not in decoded:
            array = read_image(source.path)  # (H, W, C) float32 in [0, 1], alpha dropped
            if source.channel == 3:
                array = _alpha_channel(source.path)
            decoded[source.path] = _resize(
                torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1), size
            )
        image = decoded[source.path]
        if source.channel is not None and source.channel < 3:
            if image.shape[0] < 3:
                raise ImageReadError(
                    source.path,
                    f"{kind}: channel {'RGB'[source.channel]} asked for, the image has one channel",
                )
            image = image[source.channel : source.channel + 1]
        channels = MAP_CHANNELS[kind]
        image = image[:channels] if image.shape[0] >= channels else image[:1].expand(channels, -1, -1)
        if kind == "albedo" and source.colour_space == "linear":
            image = linear_to_srgb(image)
        elif kind not in ("albedo", "normal") and source.colour_space == "srgb":
            image = srgb_to_linear(image)
        if source.invert:
            image = 1.0 - image
        if kind == "normal":
            image = decode_normal(image, source.convention)
        maps[kind] = image.float().contiguous()
    for kind, value in material.defaults.items():
        maps[kind] = torch.full((1, height, width), float(value))
    if "normal" not in maps:
        maps["normal"] = torch.zeros(3, height, width)
        maps["normal"][2] = 1.0
    return maps


def _tiff_bits(path: Path) -> int:
    """Bits per sample of a TIFF (Pillow decodes 16-bit RGB TIFFs to 8 bits)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            bits = img.tag_v2.get(258, (8,))  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return 8
    return int(max(bits) if isinstance(bits, tuple) else bits)


def _alpha_channel(path: Path) -> np.ndarray:
    """(H, W, 1) float32 alpha of an image (read_image drops alpha)."""
    from PIL import Image

    with Image.open(path) as img:
        if "A" not in img.getbands():
            raise ImageReadError(path, "channel A asked for, the image has no alpha")
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32)
    return (alpha / (65535.0 if alpha.max(initial=0) > 255 else 255.0))[..., None]


# --- report -------------------------------------------------------------------------------------


def format_library_report(scan: LibraryScan, verbose: bool = True) -> str:
    """The human-readable report of ``python -m neuropbr.check library=PATH``."""
    families = scan.family_counts()
    sources = Counter(m.family_source for m in scan.materials)
    lines = [
        f"NeuroPBR material library check: {scan.root}",
        f"  mapping: {scan.layout if scan.layout else 'file-name conventions (no layout.yaml)'}",
        f"  materials: usable {len(scan.materials)}, refused {len(scan.refused())}",
        f"  families: {len(families)} ("
        + ", ".join(f"{k} x{v}" for k, v in sorted(families.items(), key=lambda kv: (-kv[1], kv[0])))
        + ") from "
        + (", ".join(f"{k} {v}" for k, v in sorted(sources.items())) or "nothing"),
        "  defaults: "
        + (
            ", ".join(
                f"{kind} constant in {sum(1 for m in scan.materials if kind in m.defaults)}"
                for kind in ("roughness", "metallic")
            )
        )
        + f", flat normal in {sum(1 for m in scan.materials if 'normal' not in m.sources)}",
        "  sizes: "
        + (
            ", ".join(f"{w}x{h} x{n}" for (w, h), n in Counter(m.size for m in scan.materials).most_common())
            or "none"
        ),
    ]
    if verbose and scan.materials:
        lines.append("choices per material:")
        for material in scan.materials:
            lines.append(f"  {material.name}")
            lines += [f"    {choice}" for choice in material.choices]
    if scan.ignored:
        lines.append(f"files not used ({len(scan.ignored)}): path | why")
        lines += [f"  {_relative(path, scan.root)} | {why}" for path, why in sorted(scan.ignored)]
    if scan.problems:
        lines.append(f"problems ({len(scan.problems)}): material | path | problem")
        lines += [f"  {problem}" for problem in scan.problems]
        lines.append(
            f"FAILED: {len(scan.problems)} problem(s); "
            + (
                "the library cannot be used"
                if scan.fatal
                else f"{len(scan.refused())} material(s) would be skipped"
            )
        )
    else:
        lines.append("OK: no problems found")
    return "\n".join(lines)


def require_materials(scan: LibraryScan, on_error: str = "raise") -> list[LibraryMaterial]:
    """The usable materials, or a :class:`LibraryError` listing the problems.

    Args:
        scan: from :func:`scan_library`.
        on_error: ``raise`` on any problem, or ``skip`` the refused materials (logged).
    """
    if scan.problems and (on_error == "raise" or scan.fatal or not scan.materials):
        raise LibraryError.from_problems(
            scan.root, scan.problems,
            hint=None if on_error == "raise" else "Nothing usable is left after skipping the refused materials.",
        )  # fmt: skip
    for problem in scan.problems:
        log.warning("on_error=skip: %s", problem)
    return list(scan.materials)


def families_of(materials: Iterable[LibraryMaterial]) -> dict[str, str]:
    """Material name -> family (its own name when it has none)."""
    return {m.name: m.family or m.name for m in materials}
