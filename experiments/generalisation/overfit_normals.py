"""Can the CPU recipe's generator fit normals at all? Train it on two fixed batches, normals only.

    python experiments/generalisation/overfit_normals.py --stacked-views 3 --steps 300

Builds the generator of ``experiment=cpu`` at 64 px (``--stacked-views 0``: the shared per-view
encoder; 3: the views stacked as channels) and trains it with Adam (1e-3) on the L1 distance of its
normals to the targets of two fixed batches of 8 training samples (strong relief, clean views),
printing the mean angle to the targets beside the flat normal's every 50 steps. A generator that
cannot get well below the flat normal here cannot learn normals from data either; one that can,
but does not on fresh samples, is limited by what it sees (data, steps), not by what it can
represent.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from neuropbr.build import build_datamodule, build_generator
from neuropbr.config import config_dir, register_configs


def mean_angle(pred: torch.Tensor, target: torch.Tensor) -> float:
    cosine = F.cosine_similarity(pred, target, dim=1).clamp(-1.0, 1.0)
    return float(torch.rad2deg(torch.acos(cosine)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stacked-views", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--relief", default="[8,30]", help="data.relief_tilt_deg of the samples")
    args = parser.parse_args()
    torch.manual_seed(0)
    register_configs()
    overrides = [
        "experiment=cpu",
        "data.resolution=64",
        "data.num_samples=64",
        "data.cache=false",
        "data.renders=clean",
        "data.num_workers=0",
        "data.split=material",
        "data.val_families=null",
        f"data.relief_tilt_deg={args.relief}",
        f"encoder.stacked_views={args.stacked_views}",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    loader = iter(datamodule.train_dataloader())
    batches = [next(loader) for _ in range(2)]
    generator = build_generator(cfg)
    optimizer = torch.optim.Adam(generator.parameters(), 1e-3)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = batches[step % 2]
        target = batch["maps"]["normal"]
        normal = generator(batch["views"])["normal"]
        loss = (normal - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            flat = torch.zeros_like(target)
            flat[:, 2] = 1.0
            print(  # noqa: T201 - an experiment script's result lines
                f"step {step}: L1 {loss.item():.4f}, angle {mean_angle(normal.detach(), target):.2f} deg, "
                f"flat normal {mean_angle(flat, target):.2f} deg ({time.perf_counter() - start:.0f} s)"
            )


if __name__ == "__main__":
    main()
