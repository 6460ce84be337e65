"""How a checkpoint's held-out scores move when every photo is exposed brighter or darker.

    python experiments/generalisation/exposure_shift.py outputs/.../checkpoints/best_model.pth \
        [--samples 200] [--shifts=-1,-0.5,0,0.5,1] [--variant clean]

The synthetic views are exposed at a random -1..+1 EV per view around a fixed metering. A
recipe that reads albedo from the photos' brightness (``experiment=cpu``) learns that range; a
camera or renderer that meters differently shifts every photo by the same stops. This script
re-renders the first ``--samples`` held-out samples of the checkpoint's own validation split
(the same materials, lights and cameras; 1600 samples drawn, as ``evaluate_heldout.sh`` does;
without the training's ``data.exposure_shift_ev``, so that checkpoints compare on the same renders)
with every view's exposure moved by each shift, and prints one Markdown table of set-level PSNRs
(dB, the metric of ``neuropbr.metrics``): the model's albedo, roughness and metallic and the
photo-mean albedo per shift, the constant baseline once (it does not see the photos).
About 4 minutes on 2 CPU cores for 200 samples and five shifts at 128 px.
"""

from __future__ import annotations

import argparse
import copy
from collections import defaultdict

import torch
from level_diagnostics import load_for_heldout  # this folder is on sys.path when run as a script
from torch import Tensor

from neuropbr.build import build_datamodule
from neuropbr.metrics import BaselineMaps, mse, psnr_from_mse
from neuropbr.render.scene import render_sample

MAPS = ("albedo", "roughness", "metallic")


def set_psnr(errors: list[Tensor]) -> float:
    """PSNR of the mean of per-sample MSEs (the set-level PSNR of validation)."""
    return float(psnr_from_mse(torch.cat(errors).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=200, help="held-out samples to score (first N)")
    parser.add_argument("--shifts", default="-1,-0.5,0,0.5,1", help="exposure shifts in stops")
    parser.add_argument("--variant", choices=("clean", "dirty"), default="clean")
    args = parser.parse_args()
    shifts = [float(s) for s in args.shifts.split(",")]
    model, cfg = load_for_heldout(args.checkpoint)
    assert model.baseline_maps is not None  # load_for_heldout exits otherwise
    cfg.data.num_samples = 1600
    if "exposure_shift_ev" in cfg.data:  # score every checkpoint on the same held-out renders
        cfg.data.exposure_shift_ev = None
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    if datamodule.val_set is None or not hasattr(datamodule, "generator"):
        raise SystemExit(
            f"{args.checkpoint}: expected a checkpoint trained on data=synthetic with a validation split"
        )
    generator, baseline = datamodule.generator, BaselineMaps.from_dict(model.baseline_maps)
    indices = datamodule.val_set.indices[: args.samples]

    errors: dict[tuple[str, float | None], list[Tensor]] = defaultdict(list)
    with torch.no_grad():
        for start in range(0, len(indices), 8):
            chunk = indices[start : start + 8]
            materials = [generator.material(generator.material_index(i)) for i in chunk]
            specs = [generator.spec(i) for i in chunk]
            maps = {k: torch.stack([m.maps[k] for m in materials]) for k in MAPS}
            constant = baseline.predict(maps)
            for name in MAPS:
                errors[(f"{name} constant", None)].append(mse(constant[name], maps[name]))
            for shift in shifts:
                views = []
                for material, spec in zip(materials, specs, strict=True):
                    shifted = copy.deepcopy(spec)
                    for view in shifted["views"]:
                        view["exposure_ev"] += shift
                    views.append(
                        render_sample(material.maps, shifted, variants=(args.variant,))[args.variant]
                    )
                batch = torch.stack(views)  # (B, V, 3, H, W)
                pred = model.generator(batch)
                photo = baseline.photo_mean_albedo(batch, tuple(maps["albedo"].shape[-2:]))
                errors[("albedo photo mean", shift)].append(mse(photo, maps["albedo"]))
                for name in MAPS:
                    errors[(f"{name} model", shift)].append(mse(pred[name].float(), maps[name]))

    print(f"{len(indices)} held-out samples ({args.variant}), set-level PSNR in dB")  # noqa: T201
    header = ["exposure shift (EV)", *(f"{s:+g}" for s in shifts)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ("albedo model", "albedo photo mean", "roughness model", "metallic model"):
        lines.append(f"| {name} | " + " | ".join(f"{set_psnr(errors[(name, s)]):.2f}" for s in shifts) + " |")
    for name in MAPS:  # the constant does not see the photos: the same under every shift
        value = f"{set_psnr(errors[(f'{name} constant', None)]):.2f}"
        lines.append(f"| {name} constant | " + " | ".join(value for _ in shifts) + " |")
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
