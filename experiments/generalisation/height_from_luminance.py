"""Can the photos' brightness stand in for height? The artists' trick, scored on held-out families.

    python experiments/generalisation/height_from_luminance.py [--samples 120] [--resolution 64]

Texture tools make a normal map from one photo by reading brightness as height (light = raised,
dark = sunken) and differentiating it. If that held for our held-out families, a model could
get normals below the flat normal's error without knowing where the lights are. This script
renders held-out-family samples of ``experiment=cpu`` (cobblestone, corroded metal, leather,
wood; clean views, seed 42) and scores, per gain ``g``, the normal
``normalize(-g dh/dx, -g dh/dy, 1)`` with ``h`` the high-passed log luminance of the mean of the
views, against the flat normal (mean angle over all texels; the best gain is an oracle: it is
picked on the same samples). It prints one line per gain and one per family.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.render.scene import SyntheticGenerator

HELD_OUT = ("cobblestone", "corroded_metal", "leather", "wood")  # experiment=cpu's val_families
GAINS = (-0.3, -0.15, -0.08, 0.08, 0.15, 0.3)


def mean_angle(pred: Tensor, target: Tensor) -> float:
    """Mean angle in degrees between (1, 3, H, W) unit normals."""
    return float(torch.rad2deg(torch.acos(F.cosine_similarity(pred, target, dim=1).clamp(-1, 1))).mean())


def box_blur(x: Tensor, size: int) -> Tensor:
    return F.avg_pool2d(F.pad(x, (size // 2,) * 4, mode="reflect"), size, stride=1)


def normal_from_brightness(views: Tensor, gain: float) -> Tensor:
    """(V, 3, H, W) views -> (1, 3, H, W) normals from the views' brightness read as height."""
    height = torch.log(views.mean(dim=(0, 1)) + 0.02)[None, None]
    height = height - box_blur(height, 9)  # the texture's relief, not the lights' fall-off
    d_dx = (height.roll(-1, 3) - height.roll(1, 3)) / 2
    d_dy = -(height.roll(-1, 2) - height.roll(1, 2)) / 2  # +y is up the image
    return F.normalize(torch.cat([-gain * d_dx, -gain * d_dy, torch.ones_like(d_dx)], dim=1), dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    generator = SyntheticGenerator(resolution=args.resolution, num_views=3, artifact_strength=0, seed=42)
    flat_errors: dict[str, list[float]] = {family: [] for family in HELD_OUT}
    errors: dict[tuple[str, float], list[float]] = {}
    index = count = 0
    while count < args.samples:
        material, _, renders = generator.render(index, variants=("clean",))
        index += 1
        if material.family not in HELD_OUT:
            continue
        count += 1
        normal = material.maps["normal"][None]
        flat = torch.zeros_like(normal)
        flat[:, 2] = 1.0
        flat_errors[material.family].append(mean_angle(flat, normal))
        for gain in GAINS:
            prediction = normal_from_brightness(renders["clean"], gain)
            errors.setdefault((material.family, gain), []).append(mean_angle(prediction, normal))

    def ratio(families: tuple[str, ...], gain: float) -> float:
        model = [e for f in families for e in errors.get((f, gain), [])]
        flat = [e for f in families for e in flat_errors[f]]
        return sum(model) / max(sum(flat), 1e-9)

    flat_all = [e for f in HELD_OUT for e in flat_errors[f]]
    flat_mean = sum(flat_all) / len(flat_all)
    print(f"{count} held-out samples at {args.resolution} px; flat normal: {flat_mean:.2f} deg")  # noqa: T201
    for gain in GAINS:
        print(f"gain {gain:+.2f}: error / flat normal's = {ratio(HELD_OUT, gain):.3f}")  # noqa: T201
    for family in HELD_OUT:
        per_gain = "  ".join(f"{gain:+.2f}: {ratio((family,), gain):.3f}" for gain in GAINS)
        print(f"{family:15s} ({len(flat_errors[family])} samples) {per_gain}")  # noqa: T201


if __name__ == "__main__":
    main()
