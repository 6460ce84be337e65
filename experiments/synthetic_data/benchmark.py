"""Time the synthetic-data generator on one core: renders/s and ms per sample.

    python experiments/synthetic_data/benchmark.py --resolutions 256 512 --samples 8 --repeats 3

A sample is one material plus its V views; "renders" counts view images (clean and dirty count
separately). Times are per-process CPU time (what a one-thread DataLoader worker spends) and wall
time: each sample is timed ``--repeats`` times and its fastest run kept (other processes on a
shared machine only ever slow a run down), then the median over samples is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neuropbr.render.scene import SyntheticGenerator


def _time(fn) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def _fastest(fn, repeats: int) -> tuple[float, float]:
    return min((_time(fn) for _ in range(repeats)), key=lambda t: t[0])


def _measure(
    generator: SyntheticGenerator, variants: tuple[str, ...], samples: int, repeats: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(CPU, wall) seconds of rendering samples 1..samples, and of generating their materials."""
    with torch.inference_mode():
        generator.render(0, variants=variants)  # warm-up
        indices = range(1, samples + 1)
        renders = [_fastest(lambda i=i: generator.render(i, variants=variants), repeats) for i in indices]
        materials = [_fastest(lambda i=i: generator.material(i), repeats) for i in indices]
    return renders, materials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for resolution in args.resolutions:
        for camera in ("aligned", "perspective"):
            generator = SyntheticGenerator(resolution=resolution, num_views=args.views, camera=camera, seed=0)
            for variants in (("clean", "dirty"), ("clean",)):
                times, material = _measure(generator, variants, args.samples, args.repeats)
                cpu = statistics.median(t[0] for t in times)
                wall = statistics.median(t[1] for t in times)
                renders = args.views * len(variants)
                rows.append(
                    (resolution, camera, "+".join(variants), 1e3 * cpu, 1e3 * wall,
                     1e3 * statistics.median(t[0] for t in material), renders / cpu)
                )  # fmt: skip
    header = "| px | camera | renders | ms/sample CPU | ms/sample wall | of which material (CPU) | renders/s (1 core, CPU time) |"
    print(header)  # noqa: T201 -- a benchmark script's result table
    print("|---|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.0f} | {r[6]:.1f} |")  # noqa: T201


if __name__ == "__main__":
    main()
