"""How much of a checkpoint's held-out error is the material-wide level of each map.

    python experiments/generalisation/level_diagnostics.py outputs/.../checkpoints/best_model.pth --samples 240

Scores the checkpoint on its own validation split (with ``data.split=family``: the held-out
families) beside predictors that are told part of the answer, and prints one Markdown table of
set-level PSNRs (dB, the metric of ``neuropbr.metrics``):

- albedo: the constant and view-mean baselines; the photo mean (the views as photographed); the
  true albedo with its mean luminance replaced by the training mean (every texel right but the
  level: what a model that cannot tell how light a material is reaches at best); the true albedo
  with the level read from the photos' brightness times one factor fitted over the set (what the
  photos say about the level when lights and exposure vary within a range); the model; the model
  with its mean luminance set to the truth's.
- roughness and metallic: the constant; each material's true mean everywhere; the model; the
  model's pattern around the true mean.

A model far below its "level corrected" row loses most of its error on the level, not on the
pattern. About 2 minutes on 2 CPU cores for 240 samples at 128 px (rendering them included).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader

from neuropbr.build import build_datamodule
from neuropbr.config import register_configs
from neuropbr.data.sampling import EpochSampler
from neuropbr.inference import LoadedGenerator, load_generator
from neuropbr.metrics import LUMA, BaselineMaps, mse, psnr_from_mse


def luminance(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, 1, 1) mean luminance."""
    luma = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1).flatten(1).mean(dim=1).view(-1, 1, 1, 1).clamp(min=1e-6)


def spatial_mean(x: Tensor) -> Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


def load_for_heldout(checkpoint: str) -> tuple[LoadedGenerator, DictConfig]:
    """The checkpoint's model and its run's config, data set to render on the fly in this process
    (the validation samples only, no cache or workers). Exits if it stored no baseline maps."""
    register_configs()
    model = load_generator(checkpoint)
    if model.baseline_maps is None:
        raise SystemExit(f"{checkpoint}: no baseline maps stored (a checkpoint trained without validation)")
    cfg = OmegaConf.create(OmegaConf.to_container(model.config, resolve=True))
    cfg.data.cache, cfg.data.num_workers, cfg.data.persistent_workers = False, 0, False
    return model, cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=240, help="held-out samples to score (first N)")
    args = parser.parse_args()
    model, cfg = load_for_heldout(args.checkpoint)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    baseline = BaselineMaps.from_dict(model.baseline_maps)
    training_level = sum(a * k for a, k in zip(baseline.albedo, LUMA))
    val = datamodule.val_set
    loader = DataLoader(
        val, batch_size=8, sampler=EpochSampler(len(val), seed=datamodule.seed, shuffle=False)
    )

    errors: dict[str, list[Tensor]] = defaultdict(list)
    albedo_batches: list[tuple[Tensor, Tensor, Tensor]] = []  # (true albedo, photo level, true level)
    seen = 0
    with torch.no_grad():
        for batch in loader:
            views, maps = batch["views"], batch["maps"]
            pred = {k: v.float() for k, v in model.generator(views).items()}
            constant = baseline.predict(maps)
            albedo, size = maps["albedo"], tuple(maps["albedo"].shape[-2:])
            photo = baseline.photo_mean_albedo(views, size)
            rows = {
                "albedo: constant (training mean)": constant["albedo"],
                "albedo: view mean (exposure-normalised photos)": baseline.view_mean_albedo(views, size),
                "albedo: photo mean (the photos as taken)": photo,
                "albedo: truth, level unknown (set to the training mean)": (
                    albedo * training_level / luminance(albedo)
                ).clamp(0, 1),
                "albedo: model": pred["albedo"],
                "albedo: model, level corrected to the truth's": (
                    pred["albedo"] * luminance(albedo) / luminance(pred["albedo"])
                ).clamp(0, 1),
            }
            for name in ("roughness", "metallic"):
                truth, guess = maps[name], pred[name]
                rows[f"{name}: constant (training mean)"] = constant[name]
                rows[f"{name}: each material's true mean everywhere"] = spatial_mean(truth).expand_as(truth)
                rows[f"{name}: model"] = guess
                rows[f"{name}: model's pattern around the true mean"] = (
                    guess - spatial_mean(guess) + spatial_mean(truth)
                ).clamp(0, 1)
            for key, guess in rows.items():
                errors[key].append(mse(guess, maps[key.split(":")[0]]))
            albedo_batches.append((albedo, luminance(photo), luminance(albedo)))
            seen += len(views)
            if seen >= args.samples:
                break
    # The level read from the photos: one factor over the whole set (lights and exposure are
    # drawn around a fixed middle, so the photos' brightness is the level up to that factor).
    levels_photo = torch.cat([photo for _, photo, _ in albedo_batches])
    levels_true = torch.cat([true for _, _, true in albedo_batches])
    factor = float((levels_true.log() - levels_photo.log()).mean().exp())
    scattered = (levels_true.log2() - levels_photo.log2()).std()
    errors["albedo: truth, level from the photos' brightness"] = [
        mse((albedo * factor * photo / true).clamp(0, 1), albedo) for albedo, photo, true in albedo_batches
    ]
    lines = [f"| predictor ({seen} held-out samples) | PSNR (dB) |", "|---|---|"]
    for key, values in errors.items():
        lines.append(f"| {key} | {float(psnr_from_mse(torch.cat(values).mean())):.2f} |")
    lines.append("")
    lines.append(
        f"photos' brightness vs true albedo level: factor {factor:.2f}, scatter {float(scattered):.2f} stops (std)"
    )
    print("\n".join(lines))  # noqa: T201 -- the table is the output


if __name__ == "__main__":
    main()
