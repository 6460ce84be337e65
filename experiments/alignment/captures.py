"""Handheld photos with a known truth, and how well ``infer ... align=true`` rectified them.

    python experiments/alignment/captures.py write --out captures --size 1024
    python -m neuropbr.infer checkpoint=best_model.pth photos=[captures/0.jpg,captures/1.jpg,captures/2.jpg] \\
        align=true out=maps preview=true
    python experiments/alignment/captures.py score --captures captures --maps maps

``write`` renders one procedural material lying on a dark table, photographed as by
:func:`~neuropbr.render.capture.handheld_setups` (three tilted, turned phones, three lamps, +-0.3 EV,
sensor noise), as JPEGs, with ``truth.json`` (where the sample's corners are in each photo) and the
material's maps under ``material/``. ``score`` compares what the CLI wrote (``align_report.json``
and ``aligned/``) with the truth: the corner error of every photo in pixels (the reference's
corners were found automatically, the others' come from the feature homography), and the mean
absolute difference between each rectified view and the render it must equal (the same material
seen from the same eye, light and exposure, texel for texel), beside the same difference for the
photo rectified by its true corners (the floor that noise, JPEG and resampling leave).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from neuropbr.align import rectifying_homography, warp_photo
from neuropbr.data.io import encode_normal, read_image, save_image, to_chw
from neuropbr.render.capture import aligned_render, handheld_setups, render_captures
from neuropbr.render.materials import generate_material

TABLE = (0.05, 0.05, 0.06)  # a dark table: contrasts with the bricks and their light mortar


def write(out: Path, size: int, seed: int, family: str, noise: float) -> None:
    material = generate_material(seed, 1024, family)
    captures = render_captures(
        material.maps, handheld_setups(), resolution=size, noise=noise, background_albedo=TABLE
    )
    out.mkdir(parents=True, exist_ok=True)
    for i, capture in enumerate(captures):
        save_image(out / f"{i}.jpg", capture.image)
    for name, value in material.maps.items():
        save_image(out / "material" / f"{name}.png", encode_normal(value) if name == "normal" else value)
    truth = {
        "seed": seed,
        "family": family,
        "size": size,
        "noise": noise,
        "corners": [c.corners.tolist() for c in captures],  # texture order: top-left, top-right, ...
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {len(captures)} photos of {size} px ({family}, seed {seed}) and truth.json to {out}")  # noqa: T201


def score(captures: Path, maps: Path) -> dict:
    truth = json.loads((captures / "truth.json").read_text())
    report = json.loads((maps / "align_report.json").read_text())
    corners = [torch.tensor(c, dtype=torch.float64) for c in truth["corners"]]
    reference = torch.tensor(report["photos"][0]["corners"], dtype=torch.float64)
    start = int((corners[0] - reference[0]).norm(dim=1).argmin())  # texture corner at the views' top-left
    material = generate_material(truth["seed"], 1024, truth["family"])
    results = []
    for i, (photo, true_corners) in enumerate(zip(report["photos"], corners)):
        estimated = torch.tensor(photo["corners"], dtype=torch.float64)
        corner_error = (estimated - true_corners.roll(-start, 0)).norm(dim=1)
        view = to_chw(read_image(maps / "aligned" / f"{i}.png"), 3)
        expected = aligned_render(material.maps, handheld_setups()[i], view.shape[-1])
        expected = torch.rot90(expected, start, dims=(-2, -1))  # texture space turned like the views
        # The floor: the same photo rectified by its true corners (noise, JPEG and resampling).
        image = to_chw(read_image(captures / f"{i}.jpg"), 3)
        size = (view.shape[-2], view.shape[-1])
        exact = warp_photo(image, rectifying_homography(true_corners.roll(-start, 0), size), size)
        results.append(
            {
                "photo": i,
                "method": photo["method"],
                "inliers": photo["inliers"],
                "reprojection_error_px": photo["reprojection_error_px"],
                "corner_error_max_px": round(float(corner_error.max()), 2),
                "corner_error_mean_px": round(float(corner_error.mean()), 2),
                "view_mean_abs_error": round(float((view - expected).abs().mean()), 4),
                "view_mean_abs_error_true_corners": round(float((exact - expected).abs().mean()), 4),
            }
        )
    for row in results:
        print(json.dumps(row))  # noqa: T201
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="render the photos and their truth")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--size", type=int, default=1024, help="side of the square photos")
    w.add_argument("--seed", type=int, default=3)
    w.add_argument("--family", default="bricks")
    w.add_argument("--noise", type=float, default=0.01)
    s = sub.add_parser("score", help="compare the CLI's align_report.json and aligned/ with the truth")
    s.add_argument("--captures", type=Path, required=True)
    s.add_argument("--maps", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "write":
        write(args.out, args.size, args.seed, args.family, args.noise)
    else:
        score(args.captures, args.maps)


if __name__ == "__main__":
    main()
