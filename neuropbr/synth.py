"""``python -m neuropbr.synth``: write a synthetic dataset in the folder layout (docs/architecture.md).

::

    python -m neuropbr.synth out=data/synth num_materials=200 samples_per_material=2 \\
        data.num_views=3 data.resolution=512 camera=perspective seed=1 hdr=studio.hdr

writes ``out/input/{clean,dirty}/<sample>/{0..V-1}.png``, ``out/input/render_metadata.json``
(``{"sample_0000": "material_0000", ...}``), ``out/output/<material>/{albedo,roughness,metallic,
normal}.png`` and ``out/input/render_params.json`` (each material's family and parameters, each
sample's cameras, lights, exposure and artifacts). Materials are spread over worker processes,
each rendering with one thread, so the bytes written depend only on the config, not on
``num_workers``. The same seed, resolution, views and camera give the data ``data=synthetic``
serves on the fly.

``materials=LIBRARY`` renders a material library instead (:mod:`neuropbr.synth_library`)::

    python -m neuropbr.synth materials=/data/ambientcg hdri=/data/hdris out=data/lib num_samples_per_material=8
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from neuropbr.config import config_dir, register_configs
from neuropbr.data.io import encode_normal, save_image
from neuropbr.data.synthetic import sample_names
from neuropbr.render.hdr import read_hdr
from neuropbr.render.scene import CAMERAS, VARIANTS, SyntheticGenerator
from neuropbr.utils.choices import choice
from neuropbr.utils.files import atomic_write
from neuropbr.utils.system import available_cores

log = logging.getLogger(__name__)

# One generator per worker process, built by the pool initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(
    generator_kwargs: dict[str, Any], hdr: str | None, out: str, names: dict[str, list[str]]
) -> None:
    torch.set_num_threads(1)  # one thread per process; also makes float results independent of workers
    environment = read_hdr(hdr) if hdr else None
    _WORKER.update(
        generator=SyntheticGenerator(**generator_kwargs, environment=environment), out=Path(out), names=names
    )


def _write_material(material_index: int) -> dict[str, Any]:
    """Render and write one material and all its samples; returns their records for the side file."""
    generator: SyntheticGenerator = _WORKER["generator"]
    out: Path = _WORKER["out"]
    names = _WORKER["names"]
    material = generator.material(material_index)
    material_name = names["materials"][material_index]
    maps = material.maps
    folder = out / "output" / material_name
    save_image(folder / "albedo.png", maps["albedo"])
    save_image(folder / "roughness.png", maps["roughness"])
    save_image(folder / "metallic.png", maps["metallic"])
    save_image(folder / "normal.png", encode_normal(maps["normal"]))
    samples = {}
    first = material_index * generator.samples_per_material
    for index in range(first, first + generator.samples_per_material):
        with torch.inference_mode():
            _, spec, renders = generator.render(index, variants=VARIANTS, material=material)
        name = names["samples"][index]
        for variant, views in renders.items():
            for view_index, view in enumerate(views):
                save_image(out / "input" / variant / name / f"{view_index}.png", view)
        samples[name] = {"material": material_name, **spec}
    return {
        "material": material_name,
        "family": material.family,
        "params": material.params,
        "samples": samples,
    }


def _prepare(out: Path, overwrite: bool) -> None:
    """Refuse to mix with an earlier dataset unless told to replace it."""
    for part in ("input", "output"):
        target = out / part
        if target.exists() and any(target.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"out={out}: {target} already holds files; choose another out or pass overwrite=true to replace it"
                )
            shutil.rmtree(target)


def synthesize(
    *,
    out: str | Path,
    num_materials: int,
    samples_per_material: int = 1,
    resolution: int = 256,
    num_views: int = 3,
    camera: str = "aligned",
    seed: int = 0,
    num_workers: int | None = None,
    artifact_strength: float = 1.0,
    hdr: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic dataset (see the module docstring); returns a summary.

    Raises:
        ValueError: a setting out of range (the message names the key).
        FileExistsError: ``out`` already holds a dataset and ``overwrite`` is false.
    """
    checks = {
        "num_materials": num_materials >= 1,
        "samples_per_material": samples_per_material >= 1,
        "data.resolution": resolution >= 8,
        "data.num_views": num_views >= 1,
        "artifact_strength": artifact_strength >= 0,
        "num_workers": num_workers is None or num_workers >= 1,
    }
    values = {
        "num_materials": num_materials,
        "samples_per_material": samples_per_material,
        "data.resolution": resolution,
        "data.num_views": num_views,
        "artifact_strength": artifact_strength,
        "num_workers": num_workers,
    }
    expected = {"data.resolution": ">= 8", "artifact_strength": ">= 0"}
    for key, ok in checks.items():
        if not ok:
            raise ValueError(f"{key}={values[key]}: expected {expected.get(key, '>= 1')}")
    if camera not in CAMERAS:
        raise ValueError(f"camera={camera!r}: expected one of {list(CAMERAS)}")
    if hdr is not None and not Path(hdr).is_file():
        raise FileNotFoundError(f"hdr={hdr}: no such file (expected an equirectangular Radiance .hdr map)")
    out = Path(out)
    _prepare(out, overwrite)
    workers = max(1, min(num_workers or available_cores(), num_materials))
    num_samples = num_materials * samples_per_material
    names = {
        "samples": sample_names(num_samples, "sample"),
        "materials": sample_names(num_materials, "material"),
    }
    generator_kwargs = {
        "resolution": resolution,
        "num_views": num_views,
        "camera": camera,
        "artifact_strength": artifact_strength,
        "seed": seed,
        "samples_per_material": samples_per_material,
    }
    init_args = (generator_kwargs, hdr, str(out), names)
    log.info(
        "writing %d materials x %d samples, %d views at %d px (%s camera), clean and dirty, to %s with %d worker(s)",
        num_materials, samples_per_material, num_views, resolution, camera, out, workers,
    )  # fmt: skip
    start = time.perf_counter()
    records = []
    bar = tqdm(total=num_materials, unit="material", disable=not progress, desc="synth")
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(*init_args)
            for index in range(num_materials):
                records.append(_write_material(index))
                bar.update()
        finally:
            torch.set_num_threads(threads)
            _WORKER.clear()
    else:
        # spawn: workers start clean (no inherited thread pools), on every OS alike.
        with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=init_args
        ) as pool:
            for record in pool.imap_unordered(_write_material, range(num_materials)):
                records.append(record)
                bar.update()
    bar.close()
    elapsed = time.perf_counter() - start

    records.sort(key=lambda r: r["material"])
    metadata = {name: s["material"] for r in records for name, s in r["samples"].items()}
    params = {
        "generator": {**generator_kwargs, "hdr": str(hdr) if hdr else None},
        "materials": {r["material"]: {"family": r["family"], "params": r["params"]} for r in records},
        "samples": {name: s for r in records for name, s in sorted(r["samples"].items())},
    }
    for filename, content in (("render_metadata.json", metadata), ("render_params.json", params)):
        with atomic_write(out / "input" / filename, "w") as handle:
            json.dump(content, handle, indent=1, sort_keys=True)
            handle.write("\n")
    summary = {
        "out": str(out),
        "materials": num_materials,
        "samples": num_samples,
        "views": num_views,
        "resolution": resolution,
        "seconds": round(elapsed, 2),
        "samples_per_second": round(num_samples / max(elapsed, 1e-9), 3),
    }
    log.info("done: %s", summary)
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="synth")
def _main(cfg: DictConfig) -> None:
    if cfg.materials is not None:
        _main_library(cfg)
        return
    if cfg.hdri is not None:
        raise ValueError(f"hdri={cfg.hdri}: environment folders are for materials=LIBRARY; use hdr=FILE here")
    summary = synthesize(
        out=cfg.out,
        num_materials=cfg.num_materials,
        samples_per_material=cfg.samples_per_material,
        resolution=cfg.data.resolution,
        num_views=cfg.data.num_views,
        camera=choice(cfg.camera),
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        artifact_strength=cfg.artifact_strength,
        hdr=cfg.hdr,
        overwrite=cfg.overwrite,
    )
    print(  # noqa: T201 -- the CLI's one human-readable result line
        f"wrote {summary['samples']} samples ({summary['materials']} materials, {summary['views']} views, "
        f"clean + dirty, {summary['resolution']} px) to {summary['out']} in {summary['seconds']} s "
        f"({summary['samples_per_second']} samples/s)"
    )


def _main_library(cfg: DictConfig) -> None:
    """``materials=PATH``: render a material library (neuropbr/synth_library.py)."""
    from neuropbr.synth_library import synthesize_library

    if cfg.hdr is not None:
        raise ValueError(f"hdr={cfg.hdr}: with materials= use hdri=FILE_OR_FOLDER")
    summary = synthesize_library(
        out=cfg.out,
        materials=cfg.materials,
        samples_per_material=cfg.num_samples_per_material or cfg.samples_per_material,
        resolution=cfg.data.resolution,
        num_views=cfg.data.num_views,
        camera=choice(cfg.camera),
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        artifact_strength=cfg.artifact_strength,
        hdri=cfg.hdri,
        hdri_probability=cfg.hdri_probability,
        crop_scale=tuple(cfg.crop_scale),
        rotate=cfg.crop_rotation,
        layout=cfg.layout,
        roughness_default=cfg.roughness_default,
        on_error=choice(cfg.on_error),
        overwrite=cfg.overwrite,
    )
    print(  # noqa: T201 -- the CLI's one human-readable result line
        f"library: {summary['samples']} samples of {summary['materials']} materials in {summary['out']} "
        f"({summary['rendered']} rendered now, {summary['views']} views, clean + dirty, {summary['resolution']} px, "
        f"{summary['seconds']} s, {summary['samples_per_second']} samples/s)"
    )


def main() -> None:
    """Console entry point: register the config schemas, then run the Hydra app."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
