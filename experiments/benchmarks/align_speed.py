"""Speed of rectifying and aligning handheld photos (``neuropbr.infer photos=[...] align=true``).

    python experiments/benchmarks/align_speed.py --megapixels 12 --repeats 2

Renders three captures of one material on a table (:func:`~neuropbr.render.capture.handheld_setups`),
crops them to 4:3 and enlarges them to ``--megapixels`` photos, writes them as JPEGs (Pillow's default quality 75; a
phone's are larger and decode a little slower), then times what
the CLI does before inference: decoding (EXIF orientation applied), finding the sample's corners
in the reference, SIFT on ``--feature-size`` copies, matching and RANSAC, and warping every photo
to the rectified view (2048 px, the default cap). Prints wall-clock and CPU seconds (CPU time
sums every thread: it is what the work costs whatever else runs on the machine), the fastest of
``--repeats`` runs, and the corner error against the truth.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from neuropbr.align import align_photos, find_sample_corners, read_photos
from neuropbr.data.io import save_image
from neuropbr.render.capture import handheld_setups, render_captures
from neuropbr.render.materials import generate_material


def write_photos(folder: Path, megapixels: float, render_size: int) -> tuple[list[Path], list[torch.Tensor]]:
    """Three 4:3 JPEGs of ``megapixels`` and the sample's true corners in each.

    The square renders (fields of view widened 1.3x) are cropped to their central 4:3 and enlarged.
    """
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    height = round(width * 3 / 4)
    material = generate_material(3, 1024, "bricks")
    captures = render_captures(
        material.maps,
        handheld_setups(widen=1.3),
        resolution=render_size,
        background_albedo=(0.05, 0.05, 0.06),
    )
    top = render_size // 8  # rows cut above (and below) the central 4:3
    scale = width / render_size
    paths, corners = [], []
    for i, capture in enumerate(captures):
        crop = capture.image[:, top : render_size - top, :]
        photo = F.interpolate(crop[None], size=(height, width), mode="bicubic", align_corners=False)[0]
        path = folder / f"{i}.jpg"
        save_image(path, photo.clamp(0, 1))
        paths.append(path)
        corners.append((capture.corners.double() - torch.tensor([0.0, top]) + 0.5) * scale - 0.5)
    return paths, corners


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--feature-size", type=int, default=1024)
    parser.add_argument(
        "--render-size", type=int, default=1024, help="side of the rendered captures before enlarging"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths, truth = write_photos(Path(tmp), args.megapixels, args.render_size)
        best: dict[str, float] = {}

        def timed(label: str, fn, *fn_args, **fn_kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            result = fn(*fn_args, **fn_kwargs)
            for key, value in (
                (f"{label} wall s", time.perf_counter() - wall),
                (f"{label} cpu s", time.process_time() - cpu),
            ):
                best[key] = min(best.get(key, math.inf), value)
            return result

        for _ in range(args.repeats):
            photos = timed("decode", read_photos, paths)
            timed("corners", find_sample_corners, photos[0])
            aligned = timed(
                "align", align_photos, photos, [str(p) for p in paths], feature_size=args.feature_size
            )
    report = aligned.report
    reference = torch.tensor(report.photos[0].corners, dtype=torch.float64)
    start = int((truth[0] - reference[0]).norm(dim=1).argmin())  # texture corner at the view's top-left
    errors = [
        float((torch.tensor(photo.corners, dtype=torch.float64) - corners.roll(-start, 0)).norm(dim=1).max())
        for photo, corners in zip(report.photos, truth)
    ]
    height, width = photos[0].shape[-2:]
    print(  # noqa: T201 - a benchmark script's result lines
        f"{len(paths)} photos of {width}x{height} ({width * height / 1e6:.1f} MP), features at {args.feature_size} px, "
        f"views {report.size[1]}x{report.size[0]}, {torch.get_num_threads()} torch threads, fastest of {args.repeats}"
    )
    for key, value in best.items():
        print(f"  {key:>15}: {value:6.2f}")  # noqa: T201
    print(  # noqa: T201
        "  inliers: "
        + ", ".join(str(p.inliers) for p in report.photos[1:])
        + "; reprojection error px: "
        + ", ".join(str(p.reprojection_error_px) for p in report.photos[1:])
        + "; max corner error px (auto corners for the reference, features for the others): "
        + ", ".join(f"{e:.1f}" for e in errors)
    )


if __name__ == "__main__":
    main()
