"""channels_last (NHWC, the default) against NCHW on the CPU: training samples/s and peak RSS.

    python experiments/benchmarks/channels_last_cpu.py --repeats 2 [--cases fast_iteration/256/gan_off ...]

Each measurement is one fresh ``neuropbr.benchmarks.worker`` process (``neuropbr.bench.run_worker``) (the real ``Trainer.train_step``
on the case's procedural data, its peak RSS its own), with ``trainer.channels_last`` false then true,
case after case, repeated: NCHW, NHWC, NCHW, NHWC, ... so a shared machine's drift hits both. Prints
one line per process and, per case, the medians and the ratios of the runs paired in time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from neuropbr.bench import run_worker

COMMON = (
    "data=synthetic",
    "tracking=none",
    "trainer.device=cpu",
    "trainer.progress_bar=false",
    "loss.weights.perceptual=0",
)
#: case -> (overrides, (warm-up steps, windows, steps per window))
CASES: dict[str, tuple[tuple[str, ...], tuple[int, int, int]]] = {
    "fast_iteration/256/gan_off": (
        ("experiment=fast_iteration", "data.resolution=256", "data.batch_size=2", "discriminator=none"),
        (2, 3, 2),
    ),
    "fast_iteration/256/gan_on": (
        (
            "experiment=fast_iteration",
            "data.resolution=256",
            "data.batch_size=2",
            "trainer.gan_start_epoch=0",
        ),
        (2, 3, 2),
    ),
    "cpu/128": (
        ("experiment=cpu", "data.resolution=128", "data.batch_size=8", "data.num_samples=200"),
        (3, 3, 5),
    ),
}


def measure(case: str, channels_last: bool) -> tuple[float, float]:
    """(median window samples/s, peak RSS GiB) of one fresh worker process."""
    overrides, (warmup, windows, steps) = CASES[case]
    job = {
        "kind": "train",
        "name": case,
        "overrides": [*COMMON, *overrides, f"trainer.channels_last={str(channels_last).lower()}"],
        "warmup_steps": warmup,
        "windows": windows,
        "window_steps": steps,
        "inference": False,
        "fixed_batch": False,
        "threads": None,
    }
    result = run_worker(job, timeout_s=1800)
    return statistics.median(result["window_samples_per_s"]), result["peak_memory_bytes"] / 2**30


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=None, help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[list[float]]]] = {c: {"nchw": [], "nhwc": []} for c in args.cases}
    for repeat in range(args.repeats):
        for case in args.cases:
            for channels_last in (False, True):
                rate, rss = measure(case, channels_last)
                runs[case]["nhwc" if channels_last else "nchw"].append([rate, rss])
                print(  # noqa: T201 -- progress and results are this script's output
                    f"run {repeat} {case} channels_last={channels_last}: {rate:.3f} samples/s, peak RSS {rss:.2f} GiB",
                    flush=True,
                )
    for case, run in runs.items():
        ratios = [nhwc[0] / nchw[0] for nchw, nhwc in zip(run["nchw"], run["nhwc"])]
        print(  # noqa: T201
            f"{case}: NCHW {statistics.median(r[0] for r in run['nchw']):.3f} samples/s, "
            f"NHWC {statistics.median(r[0] for r in run['nhwc']):.3f} samples/s, "
            f"paired ratios {min(ratios):.3f}-{max(ratios):.3f}; peak RSS "
            f"{statistics.median(r[1] for r in run['nchw']):.2f} / {statistics.median(r[1] for r in run['nhwc']):.2f} GiB"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
