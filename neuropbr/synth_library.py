"""``python -m neuropbr.synth materials=LIBRARY``: render a material library into the folder layout.

::

    python -m neuropbr.synth materials=/data/ambientcg hdri=/data/hdris out=data/lib \\
        num_samples_per_material=8 data.resolution=256 data.num_views=3 camera=aligned

Each library material (:mod:`neuropbr.data.library`) gets K samples (:mod:`neuropbr.data.library_scene`):
a random crop (scale, position, turn) rendered into V clean and dirty views. Every sample has its
own target maps, the crop, so each is its own material folder of the folder layout::

    out/input/{clean,dirty}/<slug>__<k>/{0..V-1}.png
    out/input/render_metadata.json      {"<slug>__<k>": "<slug>__<k>", ...}
    out/input/render_params.json        settings; per sample its library material, family, crop, scene
    out/output/<slug>__<k>/{albedo,roughness,metallic,normal}.png + library_sample.json

``data=folder data.root=out`` loads it unchanged. ``library_sample.json`` is written last, so it
marks a finished sample: running again with a larger K or a library with new materials renders
only the missing samples (same seed and settings; other settings are refused unless
``overwrite=true``). Materials are spread over worker processes (one thread each), so the files
depend only on the settings, not on ``num_workers``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from neuropbr.data.io import encode_normal, save_image
from neuropbr.data.library import LibraryMaterial, load_material, require_materials, scan_library
from neuropbr.data.library_scene import LibraryScene, find_hdris
from neuropbr.render.scene import VARIANTS
from neuropbr.utils.files import atomic_write
from neuropbr.utils.system import available_cores

log = logging.getLogger(__name__)

RECORD_FILE = "library_sample.json"
#: Settings a dataset is rendered with; appending must use the same.
_SETTINGS = (
    "resolution",
    "num_views",
    "camera",
    "seed",
    "artifact_strength",
    "crop_scale",
    "rotate",
    "hdri_probability",
)
#: The command-line key of each setting, for messages.
_KEYS = {"resolution": "data.resolution", "num_views": "data.num_views", "rotate": "crop_rotation"}
_WORKER: dict[str, Any] = {}


def sample_name(material: LibraryMaterial, index: int) -> str:
    """``<slug>__<k>``: the sample folder and its maps folder."""
    return f"{material.slug}__{index:04d}"


def _init_worker(scene_kwargs: dict[str, Any], out: str) -> None:
    torch.set_num_threads(1)  # one thread per process; float results independent of the worker count
    _WORKER.update(scene=LibraryScene(**scene_kwargs), out=Path(out))


def _write_material(job: tuple[LibraryMaterial, list[int]]) -> list[dict[str, Any]]:
    """Render and write the pending samples of one material; returns their records."""
    material, indices = job
    scene: LibraryScene = _WORKER["scene"]
    out: Path = _WORKER["out"]
    texture = load_material(material, max_side=scene.texture_side())
    records = []
    for index in indices:
        name = sample_name(material, index)
        spec = scene.spec(material, index)
        with torch.inference_mode():
            target, renders = scene.render(texture, spec, variants=VARIANTS)
        for variant, views in renders.items():
            folder = out / "input" / variant / name
            if folder.exists():  # left by an interrupted run
                shutil.rmtree(folder)
            for view_index, view in enumerate(views):
                save_image(folder / f"{view_index}.png", view)
        maps_folder = out / "output" / name
        for kind in ("albedo", "roughness", "metallic"):
            save_image(maps_folder / f"{kind}.png", target[kind])
        save_image(maps_folder / "normal.png", encode_normal(target["normal"]))
        record = {"sample": name, "source": material.name, "family": material.family, "spec": spec}
        with atomic_write(maps_folder / RECORD_FILE, "w") as handle:  # last: marks the sample done
            json.dump(record, handle, indent=1, sort_keys=True)
        records.append(record)
    return records


def _done(out: Path, name: str, num_views: int) -> bool:
    if not (out / "output" / name / RECORD_FILE).is_file():
        return False
    return all((out / "input" / v / name / f"{i}.png").is_file() for v in VARIANTS for i in range(num_views))


def _prepare(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Refuse to append to a dataset made otherwise; ``overwrite`` clears it instead."""
    params_file = out / "input" / "render_params.json"
    holds_files = any((out / part).is_dir() and any((out / part).iterdir()) for part in ("input", "output"))
    if not holds_files:
        return
    reason = None
    try:
        previous = json.loads(params_file.read_text(encoding="utf-8")).get("generator", {})
    except (OSError, ValueError):
        previous, reason = {}, f"{params_file} is missing or unreadable"
    if reason is None and previous.get("kind") != "library":
        reason = "it holds a procedural dataset"
    if reason is None:
        differ = [
            f"{_KEYS.get(k, k)}={settings[k]!r} (was {previous.get(k)!r})"
            for k in _SETTINGS
            if previous.get(k) != settings[k]
        ]
        if differ:
            reason = "it was rendered with other settings: " + ", ".join(differ)
    if reason is None:
        return
    if not overwrite:
        raise FileExistsError(
            f"out={out}: cannot add samples, {reason}; use the same settings, another out, or overwrite=true to replace it"
        )
    for part in ("input", "output"):
        shutil.rmtree(out / part, ignore_errors=True)


def _write_index(out: Path, settings: dict[str, Any]) -> tuple[int, int]:
    """Rebuild render_metadata.json and render_params.json from every finished sample."""
    records = []
    for record_file in sorted((out / "output").glob(f"*/{RECORD_FILE}")):
        try:
            records.append(json.loads(record_file.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            log.warning(
                "skipping %s: unreadable record (%s); the sample is rendered again next run", record_file, err
            )
            record_file.unlink(missing_ok=True)
    metadata = {r["sample"]: r["sample"] for r in records}
    params = {
        "generator": settings,
        "materials": {
            r["sample"]: {"family": r["family"], "source": r["source"], "params": {}} for r in records
        },
        "samples": {
            r["sample"]: {"material": r["sample"], "source": r["source"], **r["spec"]} for r in records
        },
    }
    for filename, content in (("render_metadata.json", metadata), ("render_params.json", params)):
        with atomic_write(out / "input" / filename, "w") as handle:
            json.dump(content, handle, indent=1, sort_keys=True)
            handle.write("\n")
    return len(records), len({r["source"] for r in records})


def synthesize_library(
    *,
    out: str | Path,
    materials: str | Path,
    samples_per_material: int = 1,
    resolution: int = 256,
    num_views: int = 3,
    camera: str = "aligned",
    seed: int = 0,
    num_workers: int | None = None,
    artifact_strength: float = 1.0,
    hdri: str | Path | None = None,
    hdri_probability: float = 0.5,
    crop_scale: tuple[float, float] = (0.25, 1.0),
    rotate: bool = True,
    layout: str | Path | None = None,
    roughness_default: float | None = None,
    on_error: str = "raise",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``samples_per_material`` samples of every library material (see the module docstring).

    Raises:
        ValueError: a setting out of range (the message names the key).
        LibraryError: the library has problems (``on_error=raise``) or nothing usable.
        FileNotFoundError: ``hdri`` names nothing usable.
        FileExistsError: ``out`` holds a dataset made otherwise and ``overwrite`` is false.
    """
    for key, value, ok, expected in (
        ("num_samples_per_material", samples_per_material, samples_per_material >= 1, ">= 1"),
        ("data.resolution", resolution, resolution >= 8, ">= 8"),
        ("data.num_views", num_views, num_views >= 1, ">= 1"),
        ("num_workers", num_workers, num_workers is None or num_workers >= 1, ">= 1"),
        ("on_error", on_error, on_error in ("raise", "skip"), "raise or skip"),
    ):
        if not ok:
            raise ValueError(f"{key}={value!r}: expected {expected}")
    hdris = find_hdris(hdri)
    scene_kwargs: dict[str, Any] = {
        "resolution": resolution, "num_views": num_views, "camera": camera, "artifact_strength": artifact_strength,
        "seed": seed, "crop_scale": tuple(crop_scale), "rotate": rotate, "hdris": [str(p) for p in hdris],
        "hdri_probability": hdri_probability,
    }  # fmt: skip
    LibraryScene(**scene_kwargs)  # validates camera, crop_scale, hdri_probability, artifact_strength
    library = require_materials(
        scan_library(materials, layout=layout, roughness_default=roughness_default), on_error
    )
    out = Path(out)
    settings = {
        "kind": "library", **{k: scene_kwargs[k] for k in _SETTINGS}, "crop_scale": list(crop_scale),
        "materials": str(materials), "hdri": str(hdri) if hdri else None, "layout": str(layout) if layout else None,
    }  # fmt: skip
    _prepare(out, settings, overwrite)
    pending = [
        (
            material,
            [k for k in range(samples_per_material) if not _done(out, sample_name(material, k), num_views)],
        )
        for material in library
    ]
    todo = sum(len(ks) for _, ks in pending)
    workers = max(1, min(num_workers or available_cores(), todo or 1))
    # Chunks of one material's samples (each decodes its texture once), enough for every worker.
    chunk = max(1, -(-todo // (2 * workers)))
    jobs = [(material, ks[i : i + chunk]) for material, ks in pending for i in range(0, len(ks), chunk)]
    log.info(
        "library %s: %d materials x %d samples, %d to render (%d already there), %d views at %d px, "
        "%s camera, %d HDR map(s), with %d worker(s), to %s",
        materials, len(library), samples_per_material, todo, len(library) * samples_per_material - todo,
        num_views, resolution, camera, len(hdris), workers, out,
    )  # fmt: skip
    start = time.perf_counter()
    bar = tqdm(total=todo, unit="sample", disable=not progress, desc="library")
    init_args = (scene_kwargs, str(out))
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(*init_args)
            for job in jobs:
                bar.update(len(_write_material(job)))
        finally:
            torch.set_num_threads(threads)
            _WORKER.clear()
    elif jobs:
        # spawn: workers start clean (no inherited thread pools), on every OS alike.
        with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=init_args
        ) as pool:
            for records in pool.imap_unordered(_write_material, jobs):
                bar.update(len(records))
    bar.close()
    elapsed = time.perf_counter() - start
    total, sources = _write_index(out, settings)
    summary = {
        "out": str(out), "materials": sources, "samples": total, "rendered": todo, "views": num_views,
        "resolution": resolution, "seconds": round(elapsed, 2),
        "samples_per_second": round(todo / max(elapsed, 1e-9), 3), "workers": workers,
    }  # fmt: skip
    log.info("done: %s", summary)
    return summary
