"""What the procedural generator makes: the distribution of its maps over many materials.

    python experiments/generalisation/data_distribution.py --materials 400 --resolution 128

Prints a Markdown table of percentiles (10th / 50th / 90th) over materials of: the mean normal
tilt, the mean roughness, the metallic share of the texels, the albedo's mean luminance and its
saturation, plus the families' counts. Run it from another checkout (``PYTHONPATH=...``) to compare
generator versions side by side.
"""

from __future__ import annotations

import argparse
import collections

import torch

from neuropbr.render.materials import generate_material
from neuropbr.utils.seeding import derive_seed

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=400)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42, help="the data seed (data=synthetic's seed)")
    args = parser.parse_args()
    rows: dict[str, list[float]] = collections.defaultdict(list)
    families: collections.Counter[str] = collections.Counter()
    for index in range(args.materials):
        material = generate_material(derive_seed(args.seed, "synthetic-material", index), args.resolution)
        families[material.family] += 1
        for key, value in material_statistics(material.maps).items():
            rows[key].append(value)
    lines = ["| quantity (per material) | p10 | p50 | p90 |", "|---|---|---|---|"]
    for key, values in rows.items():
        q = torch.quantile(torch.tensor(values), torch.tensor([0.1, 0.5, 0.9])).tolist()
        lines.append(f"| {key} | {q[0]:.3g} | {q[1]:.3g} | {q[2]:.3g} |")
    lines.append("")
    lines.append(f"{len(families)} families: " + ", ".join(f"{f} {n}" for f, n in sorted(families.items())))
    print("\n".join(lines))  # noqa: T201 -- the table is the output


if __name__ == "__main__":
    main()
