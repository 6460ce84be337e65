"""Do maps predicted from aligned handheld photos score like maps from perfectly aligned views?

    python experiments/alignment/margin.py --checkpoint best_model.pth --materials 6 --photo 512

For each material (procedural, seeds 100.., the families below): three captures on a dark table
(:func:`~neuropbr.render.capture.handheld_setups`, ``--photo`` px, sensor noise), rectified and
aligned by :func:`neuropbr.align.align_photos` (the reference's corners given exactly, as a user
clicks them, the others aligned by features; where a plain material has too few features, every photo by its own
corners, as the CLI then asks the user to give), and the three *perfect* views: the same material
from the same eyes under the same lights and exposures, texel for texel
(:func:`~neuropbr.render.capture.aligned_render`). Both triplets are predicted at the checkpoint's
resolution and scored against the material's maps (albedo, roughness, metallic: mean absolute
error and PSNR; normals: mean angle). Prints a JSON line per material and the means; the margin
is aligned minus perfect.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics

import torch

from neuropbr.align import AlignmentError, align_photos
from neuropbr.inference import load_generator, predict_resized, resize_maps
from neuropbr.render.capture import aligned_render, handheld_setups, render_captures
from neuropbr.render.materials import generate_material

FAMILIES = ("bricks", "tiles", "plastic", "stone", "fabric", "painted_metal", "concrete", "terrazzo")
TABLE = (0.05, 0.05, 0.06)


def scores(maps: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for name in ("albedo", "roughness", "metallic"):
        mse = float(((maps[name] - truth[name]) ** 2).mean())
        out[f"{name}_mae"] = float((maps[name] - truth[name]).abs().mean())
        out[f"{name}_psnr"] = 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()
    cosine = (maps["normal"] * truth["normal"]).sum(dim=0).clamp(-1.0, 1.0)
    out["normal_angle_deg"] = float(torch.rad2deg(torch.acos(cosine)).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--materials", type=int, default=6)
    parser.add_argument("--photo", type=int, default=512, help="side of the square photos")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = load_generator(args.checkpoint)
    side = model.resolution
    setups = handheld_setups()
    rows = []
    for index in range(args.materials):
        family = FAMILIES[index % len(FAMILIES)]
        material = generate_material(100 + index, 2 * side, family)
        truth = {
            k: v[0]
            for k, v in resize_maps({k: v[None] for k, v in material.maps.items()}, (side, side)).items()
        }
        captures = render_captures(
            material.maps, setups, resolution=args.photo, background_albedo=TABLE, seed=index
        )
        photos, names = [c.image for c in captures], [f"{index}/{i}" for i in range(3)]
        try:
            aligned = align_photos(
                photos, names, corners=captures[0].corners.tolist(), size=(2 * side, 2 * side)
            )
            method = "features"
        except AlignmentError:
            # What the CLI tells the user to do: give each photo's corners (a plain material
            # without texture has too few features to match).
            aligned = align_photos(
                photos,
                names,
                photo_corners=[c.corners.tolist() for c in captures],
                size=(2 * side, 2 * side),
            )
            method = "corners (too few features)"
        # The views' top-left is the texture corner nearest the reference's first corner: turn
        # them back to texture space so both predictions are scored against the same maps.
        first = torch.tensor(aligned.report.photos[0].corners[0])
        start = int((captures[0].corners - first).norm(dim=1).argmin())
        views = torch.rot90(aligned.views, -start, dims=(-2, -1))
        perfect = torch.stack([aligned_render(material.maps, setup, 2 * side) for setup in setups])
        inliers = [p.inliers for p in aligned.report.photos[1:]]
        row = {"material": index, "family": family, "method": method, "inliers": inliers}
        for label, triplet in (("aligned", views), ("perfect", perfect)):
            for key, value in scores(predict_resized(model, triplet, (side, side)), truth).items():
                row[f"{label}/{key}"] = round(value, 4)
        rows.append(row)
        print(json.dumps(row))  # noqa: T201 - an experiment script's result lines
    keys = [k.split("/", 1)[1] for k in rows[0] if k.startswith("aligned/")]
    summary = {}
    for key in keys:
        a = statistics.mean(r[f"aligned/{key}"] for r in rows)
        p = statistics.mean(r[f"perfect/{key}"] for r in rows)
        summary[key] = {"aligned": round(a, 4), "perfect": round(p, 4), "margin": round(a - p, 4)}
    print(json.dumps({"materials": len(rows), "checkpoint": args.checkpoint, "mean": summary}, indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
