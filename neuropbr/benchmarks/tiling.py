"""``python -m neuropbr.benchmarks.tiling``: time and memory of tiled inference per megapixel.

Each (model, photo side) pair runs ``predict_tiled`` once on a random square photo in a fresh
``neuropbr.benchmarks.worker`` process (its peak memory is its own), with the tile size
``tile_size=null`` picks (:func:`neuropbr.inference.auto_tile_size`). The generators are
untrained: time and memory do not depend on the weights. Prints a table; asserts nothing.

Examples::

    python -m neuropbr.benchmarks.tiling                              # the three small models, 1024 and 2048 px
    python -m neuropbr.benchmarks.tiling --cases cpu --sides 3000 --device cuda
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from neuropbr.bench import run_worker

log = logging.getLogger(__name__)

#: Model configurations measured (training overrides), by name.
CASES: dict[str, list[str]] = {
    # The smoke model's U-Net with mean fusion: fully convolutional, 64 px training resolution.
    "tiny_conv": ["experiment=smoke", "fusion=mean"],
    # The CPU recipe: a from-scratch U-Net (widths 16-128), mean fusion, 128 px.
    "cpu": ["experiment=cpu"],
    # The smoke model as shipped: ViT fusion, so tiles stay at its 64 px training resolution.
    "tiny_vit": ["experiment=smoke"],
}


def measure(case: str, side: int, args: argparse.Namespace, training_tiles: bool = False) -> dict:
    """One measurement in a fresh worker process; see :func:`neuropbr.benchmarks.worker.run_tiling`.

    ``training_tiles``: tiles of the training resolution (the former default) instead of the
    automatic size.
    """
    job: dict[str, Any] = {
        "kind": "tiling",
        "overrides": [*CASES[case], "tracking=none", f"trainer.device={args.device}"],
        "side": side,
        "tile_size": "training" if training_tiles else None,
        "tile_batch_size": args.tile_batch_size,
        "threads": args.threads,
    }
    return {"case": case, **run_worker(job, args.timeout_s)}


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, with seconds and MiB per megapixel of the photo."""
    lines = [
        "| model | photo | training px | tile px | tiles | seconds | s / MP | added peak MiB | MiB / MP |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        mib = row["added_peak_bytes"] / 2**20
        lines.append(
            f"| {row['case']} | {row['side']}x{row['side']} | {row['training_resolution']} | {row['tile_size']} | "
            f"{row['tiles']} | {row['seconds']:.1f} | {row['seconds'] / row['megapixels']:.2f} | {mib:.0f} | "
            f"{mib / row['megapixels']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Entry point: measure every case at every side and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--sides", nargs="+", type=int, default=[1024, 2048], help="photo sides in px")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tile-batch-size", type=int, default=4, help="tiles per forward (infer's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--timeout-s", type=int, default=1800, help="per measurement")
    parser.add_argument(
        "--training-tiles",
        action="store_true",
        help="also tiles of the training resolution (the former default)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    rows = []
    for case in args.cases:
        for side in args.sides:
            for training_tiles in (False, True) if args.training_tiles else (False,):
                log.info("%s at %dx%d on %s", case, side, side, args.device)
                try:
                    rows.append(measure(case, side, args, training_tiles))
                except RuntimeError as err:
                    log.error("%s at %d px failed: %s", case, side, err)
    for row in rows:
        log.info("%s: %d px tiles: %s", row["case"], row["tile_size"], row["why"])
    print(format_table(rows))  # noqa: T201 - the CLI's result


if __name__ == "__main__":
    main()
