"""Why normals are not learned from fresh samples, and what the light estimator changes.

    python experiments/generalisation/light_ablation.py --inputs views      # the photos only
    python experiments/generalisation/light_ablation.py --inputs coords     # + pixel coordinates
    python experiments/generalisation/light_ablation.py --inputs lightdir   # + the TRUE key-light directions
    python experiments/generalisation/light_ablation.py --inputs estimated  # + ESTIMATED directions (taught)

A small U-Net (GroupNorm, 32-64-128-128) predicts normals only, from 3 views stacked as channels
(one gain per view), trained with Adam 1e-3 on the L1 distance to the target normals, batch 16,
on fresh synthetic samples at 64 px (strong relief 8-30 degrees, clean renders, the default
lighting mix). It prints the mean angle against the flat normal's on 300 samples of the held-out
families of ``experiment=cpu`` and on 300 training-family samples every 400 steps.

``estimated`` adds :class:`~neuropbr.models.light.LightEstimator` in front, taught with the
``light`` loss term (L1 to the true directions, weight 1) as ``encoder.light_estimation=true``
``loss.weights.light=1 data.light_targets=true`` does in training; ``lightdir`` is its upper bound.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuropbr.losses import LightDirectionLoss
from neuropbr.models.light import LightEstimator
from neuropbr.render.geometry import texel_positions
from neuropbr.render.scene import SyntheticGenerator, key_light_directions

HELD_OUT = {"cobblestone", "corroded_metal", "leather", "wood"}  # experiment=cpu's val_families
SIZE = 64


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.ReLU(),
    )  # fmt: skip


class NormalUNet(nn.Module):
    def __init__(self, c_in: int, widths: tuple[int, ...] = (32, 64, 128, 128)) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            [block(c_in, widths[0])] + [block(a, b) for a, b in itertools.pairwise(widths)]
        )
        self.up = nn.ModuleList(
            block(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(len(widths) - 1))
        )
        self.out = nn.Conv2d(widths[0], 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for k, level in enumerate(self.down):
            x = level(x if k == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for level in self.up:
            x = level(torch.cat([F.interpolate(x, scale_factor=2, mode="bilinear"), skips.pop()], 1))
        return F.normalize(self.out(x) + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), dim=1)


def mean_angle(pred: Tensor, target: Tensor) -> float:
    return float(torch.rad2deg(torch.acos(F.cosine_similarity(pred, target, dim=1).clamp(-1, 1))).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", choices=["views", "coords", "lightdir", "estimated"], default="views")
    parser.add_argument("--samples", type=int, default=2400)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = SyntheticGenerator(
        resolution=SIZE, num_views=3, artifact_strength=0, relief_tilt_deg=(8, 30), seed=1
    )
    views, normals, lights, held = [], [], [], []
    for index in range(args.samples):
        material, spec, renders = generator.render(index, variants=("clean",))
        views.append(renders["clean"])
        normals.append(material.maps["normal"])
        lights.append(torch.stack([key_light_directions(v["lights"], SIZE) for v in spec["views"]]))
        held.append(material.family in HELD_OUT)
    all_views, all_normals, all_lights = torch.stack(views), torch.stack(normals), torch.stack(lights)
    held_mask = torch.tensor(held)
    train, test = (~held_mask).nonzero().flatten(), held_mask.nonzero().flatten()[:300]
    train_eval, train = train[:300], train[300:]
    coords = texel_positions(SIZE, SIZE)[:, :2]
    estimator = LightEstimator() if args.inputs == "estimated" else None
    extra = {"views": 0, "coords": 2, "lightdir": 9, "estimated": 9}[args.inputs]
    net = NormalUNet(9 + extra)
    params = list(net.parameters()) + (list(estimator.parameters()) if estimator else [])
    optimizer = torch.optim.Adam(params, 1e-3)
    light_loss = LightDirectionLoss()

    def predict(idx: Tensor) -> tuple[Tensor, Tensor | None]:
        v = all_views[idx].clamp(min=1e-4)
        channels = [(v / v.mean(dim=(2, 3, 4), keepdim=True)).flatten(1, 2)]
        estimate = None
        if args.inputs == "coords":
            channels.append(coords.expand(len(idx), -1, -1, -1))
        elif args.inputs == "lightdir":
            channels.append(all_lights[idx].flatten(1, 2))
        elif estimator is not None:
            estimate = estimator(all_views[idx])
            channels.append(estimate.flatten(1, 2))
        return net(torch.cat(channels, 1)), estimate

    def score(idx: Tensor) -> str:
        net.eval()
        with torch.no_grad():
            pred = torch.cat([predict(idx[s : s + 100])[0] for s in range(0, len(idx), 100)])
        net.train()
        flat = torch.zeros_like(all_normals[idx])
        flat[:, 2] = 1.0
        error, flat_error = mean_angle(pred, all_normals[idx]), mean_angle(flat, all_normals[idx])
        return f"{error:.2f}/{flat_error:.2f} deg = {error / flat_error:.3f}"

    draw = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step % 400 == 0:
            print(  # noqa: T201 - an experiment script's result lines
                f"{args.inputs} step {step}: held-out {score(test)}; training families {score(train_eval)} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        if step == args.steps:
            break
        batch = train[torch.randint(len(train), (16,), generator=draw)]
        pred, estimate = predict(batch)
        loss = (pred - all_normals[batch]).abs().mean()
        if estimate is not None:
            taught = light_loss({"light": estimate}, {"light": all_lights[batch]})
            assert taught is not None
            loss = loss + taught
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
