"""What the procedural generator makes: the distribution of its maps over many materials.

    python experiments/generalisation/data_distribution.py --materials 400 --resolution 128

Prints a Markdown table of percentiles (10th / 50th / 90th) over materials of: the mean normal
tilt, the mean roughness, the metallic share of the texels, the albedo's mean luminance and its
saturation, plus the families' counts, and how visible the normals are in the views: each
material is rendered as data=synthetic renders sample i (same lights, cameras, exposure, clean)
once with its normals and once with flat normals, and the mean absolute difference is divided by
the views' mean absolute deviation from their own mean (the texel-to-texel variation a model reads
everything from). Run it from another checkout (``PYTHONPATH=...``) to compare generator versions
side by side; ``--relief LOW HIGH`` draws the relief as ``data.relief_tilt_deg=[LOW,HIGH]`` does.
"""

from __future__ import annotations

import argparse
import collections

import torch

from neuropbr.render.scene import SyntheticGenerator, render_sample

LUMA = torch.tensor([0.2126, 0.7152, 0.0722]).view(3, 1, 1)


def material_statistics(maps: dict[str, torch.Tensor]) -> dict[str, float]:
    albedo = maps["albedo"]
    tilt = torch.rad2deg(torch.acos(maps["normal"][2].clamp(-1.0, 1.0)))
    top, bottom = albedo.amax(dim=0), albedo.amin(dim=0)
    return {
        "normal tilt (deg)": float(tilt.mean()),
        "roughness": float(maps["roughness"].mean()),
        "metallic share (%)": 100.0 * float((maps["metallic"] > 0.5).float().mean()),
        "albedo luminance (sRGB)": float((albedo * LUMA).sum(dim=0).mean()),
        "albedo saturation": float(((top - bottom) / top.clamp(min=1e-6)).mean()),
    }


def normal_visibility(maps: dict[str, torch.Tensor], spec: dict) -> float:
    """Mean |views - views with flat normals| over the views' mean absolute deviation."""
    flat = {**maps, "normal": torch.zeros_like(maps["normal"])}
    flat["normal"][2] = 1.0
    views = render_sample(maps, spec, variants=("clean",))["clean"]
    flat_views = render_sample(flat, spec, variants=("clean",))["clean"]
    spread = (views - views.mean(dim=(-2, -1), keepdim=True)).abs().mean()
    return float((views - flat_views).abs().mean() / spread.clamp(min=1e-6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=400)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42, help="the data seed (data=synthetic's seed)")
    parser.add_argument("--relief", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    parser.add_argument("--no-render", action="store_true", help="skip the normals' visibility (faster)")
    args = parser.parse_args()
    generator = SyntheticGenerator(
        resolution=args.resolution, num_views=3, seed=args.seed, relief_tilt_deg=args.relief
    )
    rows: dict[str, list[float]] = collections.defaultdict(list)
    families: collections.Counter[str] = collections.Counter()
    for index in range(args.materials):
        material = generator.material(generator.material_index(index))
        families[material.family] += 1
        for key, value in material_statistics(material.maps).items():
            rows[key].append(value)
        if not args.no_render:
            rows["normals' effect on the views (share)"].append(
                normal_visibility(material.maps, generator.spec(index))
            )
    lines = ["| quantity (per material) | p10 | p50 | p90 |", "|---|---|---|---|"]
    for key, values in rows.items():
        q = torch.quantile(torch.tensor(values), torch.tensor([0.1, 0.5, 0.9])).tolist()
        lines.append(f"| {key} | {q[0]:.3g} | {q[1]:.3g} | {q[2]:.3g} |")
    lines.append("")
    lines.append(f"{len(families)} families: " + ", ".join(f"{f} {n}" for f, n in sorted(families.items())))
    print("\n".join(lines))  # noqa: T201 -- the table is the output


if __name__ == "__main__":
    main()
