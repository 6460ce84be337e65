"""Throughput of material-library rendering (``neuropbr.synth materials=`` / ``data=library``).

    python experiments/benchmarks/library_render.py --resolutions 256 512 --samples 6 --texture 1024

Writes a small library (procedural materials saved as ambientCG-style 8/16-bit PNGs of
``--texture`` px) and an HDR map into a temporary folder, then on ONE thread times, per sample:
the texture decode (once per material, what the caches save), one render of what ``data=library``
serves (one variant, 3 views) and clean + dirty (what the CLI writes), with and without HDR
lighting. Reports CPU time, the fastest of ``--repeats`` runs per sample, median over samples.
``--cli-workers N`` also times the CLI end to end (PNG writing included) with N processes.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neuropbr.data.io import encode_normal, save_image
from neuropbr.data.library import load_material, scan_library
from neuropbr.data.library_scene import LibraryScene
from neuropbr.render.hdr import write_hdr
from neuropbr.render.lights import procedural_sky
from neuropbr.render.materials import generate_material


def _cpu(fn) -> float:  # CPU seconds of one call
    start = time.process_time()
    fn()
    return time.process_time() - start


def write_library(root: Path, count: int, size: int) -> None:
    for i in range(count):
        material = generate_material(i, size)
        folder = root / material.family / f"M{i:03d}"
        save_image(folder / f"M{i:03d}_Color.png", material.maps["albedo"])
        save_image(folder / f"M{i:03d}_Roughness.png", material.maps["roughness"], bit_depth=16)
        save_image(folder / f"M{i:03d}_Metalness.png", material.maps["metallic"])
        save_image(folder / f"M{i:03d}_NormalGL.png", encode_normal(material.maps["normal"]), bit_depth=16)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--materials", type=int, default=3)
    parser.add_argument("--texture", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cli-workers", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_library(root / "lib", args.materials, args.texture)
        sky = procedural_sky(
            torch.tensor([0.3, 0.1, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=3.0
        )
        write_hdr(root / "hdri" / "sky.hdr", torch.nn.functional.interpolate(sky, size=(512, 1024))[0])
        materials = scan_library(root / "lib").materials
        print(  # noqa: T201 -- the benchmark's result table
            f"library: {len(materials)} materials, {args.texture} px ambientCG-style PNGs; 3 views; one thread"
        )
        print(  # noqa: T201 -- the benchmark's result table
            "| px | lighting | decode ms/material | served (1 variant) ms | clean+dirty ms | samples/s served | samples/s clean+dirty |"
        )
        print("|---|---|---|---|---|---|---|")  # noqa: T201 -- the benchmark's result table
        for resolution in args.resolutions:
            for hdri in (False, True):
                scene = LibraryScene(
                    resolution=resolution, num_views=3, seed=0, hdris=[root / "hdri" / "sky.hdr"] if hdri else [],
                    hdri_probability=1.0,
                )  # fmt: skip
                side = scene.texture_side()
                decode = statistics.median(
                    _cpu(functools.partial(load_material, m, max_side=side)) for m in materials
                )
                textures = [load_material(m, max_side=side) for m in materials]
                served, both = [], []
                with torch.inference_mode():
                    scene.render(textures[0], scene.spec(materials[0], 999))  # warm-up
                    for k in range(args.samples):
                        index = k % len(materials)
                        spec = scene.spec(materials[index], k)
                        clean = functools.partial(scene.render, textures[index], spec, ("clean",))
                        clean_dirty = functools.partial(scene.render, textures[index], spec)
                        served.append(min(_cpu(clean) for _ in range(args.repeats)))
                        both.append(min(_cpu(clean_dirty) for _ in range(args.repeats)))
                one, two = statistics.median(served), statistics.median(both)
                print(  # noqa: T201 -- the benchmark's result table
                    f"| {resolution} | {'HDR map' if hdri else 'procedural'} | {decode * 1e3:.0f} | {one * 1e3:.0f} | "
                    f"{two * 1e3:.0f} | {1 / one:.1f} | {1 / two:.1f} |"
                )
        if args.cli_workers:
            from neuropbr.synth_library import synthesize_library

            for resolution in args.resolutions:
                summary = synthesize_library(
                    out=root / f"out{resolution}", materials=root / "lib", samples_per_material=args.samples,
                    resolution=resolution, num_views=3, num_workers=args.cli_workers, hdri=root / "hdri",
                    progress=False,
                )  # fmt: skip
                print(  # noqa: T201 -- the benchmark's result table
                    f"CLI {resolution} px, {args.cli_workers} workers, PNGs written, half HDR: "
                    f"{summary['samples_per_second']} samples/s ({summary['samples']} samples in {summary['seconds']} s)"
                )


if __name__ == "__main__":
    main()
