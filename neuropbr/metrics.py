"""Quality metrics of predicted PBR maps: pure, batched functions plus a validation accumulator.

Conventions (docs/architecture.md, "What flows between the parts"): maps are
``{"albedo": (B, 3, H, W) in [0, 1], "roughness": (B, 1, H, W), "metallic": (B, 1, H, W),
"normal": (B, 3, H, W) unit vectors in [-1, 1]}``.
Image metrics (PSNR, SSIM, MAE, RMSE) compare every map in [0, 1], normals encoded as
``(n + 1) / 2`` on both sides, with ``data_range = 1``. Angular metrics use the vectors.

Keys of :func:`compute_map_metrics` and :class:`MetricAccumulator` (the trainer adds ``val/``).
Every value is over the whole set of samples (a batch, or a validation epoch), each sample
weighing the same:

- ``<map>_psnr`` for albedo, roughness, metallic, normal: PSNR of the set's mean squared error,
  ``10 log10(1 / mean_samples(MSE))`` (the figure papers report); ``<map>_psnr_per_sample`` is
  the mean of per-sample PSNRs, which flatters sets with a few near-perfect samples. PSNR caps at
  100 dB (MSE floor 1e-10), so identical maps give a finite number.
- ``<map>_ssim``: mean over samples of kornia's SSIM (11x11 Gaussian window, sigma 1.5, reflect
  padding; H and W must exceed 5); ``<map>_mae``: mean absolute error over every pixel;
  ``<map>_rmse``: square root of the set's mean squared error.
- ``normal_angle_mean`` (degrees, over every pixel of the set); ``normal_angle_median``: median of
  every pixel's angle of the set pooled together (not a mean of per-sample medians);
  ``normal_within_11_25``, ``normal_within_22_5``, ``normal_within_30``: percentage of the set's
  pixels with an error strictly under that many degrees.
- ``overall_psnr``: PSNR of the set's MSE over the 8-channel stack (albedo 3, roughness 1,
  metallic 1, encoded normal 3); ``overall_ssim``: SSIM averaged over the same 8 channels.
- ``render_psnr``: PSNR of the set's MSE between prediction and target rendered under the fixed
  :data:`EVAL_RENDER_SETUPS` (identical in every run), tone-mapped with Reinhard and sRGB-encoded.

Baselines (when a :class:`BaselineMaps` is given): the same PSNRs for trivial predictors, so that a
number can be read against what predicting nothing from the views reaches:

- ``baseline_constant_<map>_psnr`` (albedo, roughness, metallic): the training set's mean map,
  everywhere; ``baseline_flat_normal_psnr`` / ``baseline_flat_normal_angle_mean``: the normal
  (0, 0, 1) everywhere; ``baseline_view_mean_albedo_psnr``: the mean of the input views,
  rescaled per sample to the training albedo's mean luminance (the exposure-normalised photo);
  ``baseline_photo_mean_albedo_psnr``: the mean of the input views as photographed, not rescaled.
  The photo mean keeps the views' brightness, which (lights and exposure drawn within a range)
  says how light the material is; the view mean throws that away, as an exposure-normalising
  encoder does.
- Skill: ``<map>_skill_db`` = ``<map>_psnr`` minus its constant (flat for normals) baseline, in dB;
  ``albedo_skill_db_vs_view_mean``, ``albedo_skill_db_vs_photo_mean``; ``normal_angle_ratio`` =
  ``normal_angle_mean`` divided by the flat normal's (below 1 is better); ``skill_db``: the mean
  of the four ``<map>_skill_db``.

PSNR stays ours: ``kornia.metrics.psnr`` pools one MSE over the whole batch and gives ``inf`` for
identical images, while these metrics need per-sample values, the PSNR of a set's mean MSE and the
100 dB cap (per image and below the cap the two agree to float precision, ``tests/test_metrics.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor

from neuropbr.losses.precision import autocast_off, upcast
from neuropbr.losses.reconstruction import map_pair, map_to_unit_range
from neuropbr.losses.rendering import RenderConfigs, render_maps
from neuropbr.maps import PBR_CHANNELS, PBR_MAPS, PBR_TOTAL_CHANNELS
from neuropbr.render.color import linear_to_srgb, tonemap_reinhard
from neuropbr.utils.tensors import spatial_size

#: Thresholds of the ``normal_within_*`` metrics, in degrees (as in surface-normal benchmarks).
ANGLE_THRESHOLDS_DEG: tuple[float, ...] = (11.25, 22.5, 30.0)
#: Bin width of the accumulator's angle histogram: its median is within half a bin (0.005 deg)
#: of the exact median of all accumulated pixels.
ANGLE_BIN_DEG = 0.01
#: MSE floor of :func:`psnr`, relative to ``data_range ** 2`` (caps PSNR at 100 dB).
PSNR_MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
#: Rec. 709 luminance weights (the view-mean baseline's exposure normalisation).
LUMA = (0.2126, 0.7152, 0.0722)
#: Fixed evaluation lighting of ``render_psnr``: (light position, camera position) over the
#: sample [-1, 1]^2 of the z = 0 plane; lights are white with intensity ``pi * |light|^2``.
EVAL_RENDER_SETUPS: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = (
    ((0.0, 0.0, 3.0), (0.0, 0.0, 3.0)),  # co-located flash, head-on: what flash capture sees
    ((2.5, 0.0, 1.5), (0.0, 0.0, 3.0)),  # raking light from +x, camera overhead: relief
    ((-1.5, 2.0, 2.0), (0.5, -0.5, 3.0)),  # oblique light and camera
    ((1.8, 1.2, 2.2), (-1.8, -1.2, 2.2)),  # mirror pair about +z: highlight at the centre
)


def _threshold_key(threshold: float) -> str:
    return "normal_within_" + f"{threshold:g}".replace(".", "_")


#: Per-sample quantities the accumulator sums, in a fixed order (its state layout).
SUMMED_KEYS: tuple[str, ...] = (
    *(f"{name}_{metric}" for name in PBR_MAPS for metric in ("mse", "psnr_per_sample", "ssim", "mae")),
    "normal_angle_mean",
    *(_threshold_key(t) for t in ANGLE_THRESHOLDS_DEG),
    "overall_mse",
    "overall_psnr_per_sample",
    "overall_ssim",
    "render_mse",
    "render_psnr_per_sample",
)
#: Per-sample quantities of the trivial predictors (summed when baselines are given).
BASELINE_SUMMED_KEYS: tuple[str, ...] = (
    *(f"baseline_constant_{name}_mse" for name in ("albedo", "roughness", "metallic")),
    "baseline_flat_normal_mse",
    "baseline_flat_normal_angle_mean",
    "baseline_view_mean_albedo_mse",
    "baseline_photo_mean_albedo_mse",
)
#: Keys of the model's metrics (see the module docstring).
METRIC_KEYS: tuple[str, ...] = (
    *(
        f"{name}_{metric}"
        for name in PBR_MAPS
        for metric in ("psnr", "psnr_per_sample", "ssim", "mae", "rmse")
    ),
    "normal_angle_mean",
    "normal_angle_median",
    *(_threshold_key(t) for t in ANGLE_THRESHOLDS_DEG),
    "overall_psnr",
    "overall_psnr_per_sample",
    "overall_ssim",
    "render_psnr",
    "render_psnr_per_sample",
)
#: Keys of the baselines and the model's skill over them.
BASELINE_KEYS: tuple[str, ...] = (
    *(f"baseline_constant_{name}_psnr" for name in ("albedo", "roughness", "metallic")),
    "baseline_flat_normal_psnr",
    "baseline_flat_normal_angle_mean",
    "baseline_view_mean_albedo_psnr",
    "baseline_photo_mean_albedo_psnr",
    *(f"{name}_skill_db" for name in PBR_MAPS),
    "albedo_skill_db_vs_view_mean",
    "albedo_skill_db_vs_photo_mean",
    "normal_angle_ratio",
    "skill_db",
)
#: Every key validation reports (the trainer prefixes ``val/``): what ``optimized_metric`` may name.
VALIDATION_KEYS: tuple[str, ...] = ("loss", *METRIC_KEYS, *BASELINE_KEYS)
#: One line per metric for reports (``python -m neuropbr.evaluate`` writes it into its JSON).
METRIC_DEFINITIONS: dict[str, str] = {
    "psnr": "10 log10(1 / mean over samples of the per-sample MSE), maps in [0, 1], normals as (n + 1) / 2",
    "psnr_per_sample": "mean over samples of each sample's PSNR",
    "ssim": "mean over samples of kornia SSIM (11x11 Gaussian, sigma 1.5)",
    "mae": "mean absolute error over every pixel of the set",
    "rmse": "square root of the mean over samples of the per-sample MSE",
    "normal_angle_mean": "mean angle between predicted and true normals over every pixel of the set, degrees",
    "normal_angle_median": "median angle over every pixel of the set pooled together, degrees",
    "normal_within_X": "percentage of the set's pixels with an angle strictly under X degrees",
    "overall_psnr": "PSNR of the set's MSE over the 8-channel stack (albedo, roughness, metallic, normal)",
    "render_psnr": "PSNR of the set's MSE of renders under 4 fixed lights (Reinhard, sRGB)",
    "baseline_constant_<map>_psnr": "PSNR of the training set's mean map predicted everywhere",
    "baseline_flat_normal_psnr": "PSNR of the normal (0, 0, 1) everywhere; _angle_mean: its mean angle",
    "baseline_view_mean_albedo_psnr": "PSNR of the mean input view rescaled to the training albedo's mean luminance",
    "baseline_photo_mean_albedo_psnr": "PSNR of the mean input view as photographed (not rescaled)",
    "<map>_skill_db": "<map>_psnr minus the constant (normal: flat) baseline's PSNR, dB",
    "albedo_skill_db_vs_view_mean": "albedo_psnr minus baseline_view_mean_albedo_psnr, dB",
    "albedo_skill_db_vs_photo_mean": "albedo_psnr minus baseline_photo_mean_albedo_psnr, dB",
    "normal_angle_ratio": "normal_angle_mean / baseline_flat_normal_angle_mean (below 1 is better)",
    "skill_db": "mean of the four <map>_skill_db",
}


@dataclass(frozen=True)
class BaselineMaps:
    """The constant predictor: each map's mean over the training set (normals: flat).

    Attributes:
        albedo: mean sRGB albedo (3 values); roughness, metallic: mean values.
    """

    albedo: tuple[float, float, float]
    roughness: float
    metallic: float

    def to_dict(self) -> dict[str, Any]:
        return {"albedo": list(self.albedo), "roughness": self.roughness, "metallic": self.metallic}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BaselineMaps:
        albedo = tuple(float(v) for v in values["albedo"])
        if len(albedo) != 3:
            raise ValueError(f"baseline albedo must have 3 values, got {values['albedo']!r}")
        return cls((albedo[0], albedo[1], albedo[2]), float(values["roughness"]), float(values["metallic"]))

    @classmethod
    def from_maps(cls, maps: Sequence[Mapping[str, Tensor]]) -> BaselineMaps:
        """The mean of every sample's maps (each (C, H, W) or (B, C, H, W))."""
        if not maps:
            raise ValueError("BaselineMaps.from_maps: no training maps to average")
        means = {
            name: torch.stack([m[name].float().flatten(-2).mean(-1).reshape(-1, PBR_CHANNELS[name]).mean(0)
                               for m in maps]).mean(0)
            for name in ("albedo", "roughness", "metallic")
        }  # fmt: skip
        albedo = means["albedo"].tolist()
        return cls((albedo[0], albedo[1], albedo[2]), float(means["roughness"]), float(means["metallic"]))

    def predict(self, target: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Constant maps (flat normals) shaped like ``target``."""
        like = target["albedo"]
        batch, _, height, width = like.shape

        def constant(values: Sequence[float]) -> Tensor:
            return (
                torch.tensor(values, dtype=torch.float32, device=like.device)
                .view(1, -1, 1, 1)
                .expand(batch, -1, height, width)
            )

        return {
            "albedo": constant(self.albedo),
            "roughness": constant([self.roughness]),
            "metallic": constant([self.metallic]),
            "normal": constant([0.0, 0.0, 1.0]),
        }

    @staticmethod
    def photo_mean_albedo(views: Tensor, size: tuple[int, int]) -> Tensor:
        """The mean photo as taken: (B, V, 3, h, w) views -> (B, 3, H, W) albedo guess in [0, 1]."""
        mean_view = upcast(views).mean(dim=1)  # (B, 3, h, w)
        if mean_view.shape[-2:] != size:
            mean_view = F.interpolate(mean_view, size=size, mode="bilinear", align_corners=False)
        return mean_view.clamp(0.0, 1.0)

    def view_mean_albedo(self, views: Tensor, size: tuple[int, int]) -> Tensor:
        """The exposure-normalised mean photo: (B, V, 3, h, w) views -> (B, 3, H, W) albedo guess."""
        mean_view = self.photo_mean_albedo(views, size)
        luma = torch.tensor(LUMA, device=mean_view.device).view(1, 3, 1, 1)
        level = (mean_view * luma).sum(dim=1).flatten(1).mean(dim=1).clamp(min=1e-6)  # (B,)
        target_level = sum(a * k for a, k in zip(self.albedo, LUMA))
        return (mean_view * (target_level / level).view(-1, 1, 1, 1)).clamp(0.0, 1.0)


# --- elementary metrics, one value per sample ----------------------------------------------------


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error per sample: (B, ...) x 2 -> (B,)."""
    return (upcast(pred) - upcast(target)).square().flatten(1).mean(dim=1)


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error per sample: (B, ...) x 2 -> (B,)."""
    return (upcast(pred) - upcast(target)).abs().flatten(1).mean(dim=1)


def rmse(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error per sample: (B, ...) x 2 -> (B,)."""
    return mse(pred, target).sqrt()


def psnr_from_mse(mse_value: Tensor, data_range: float = 1.0) -> Tensor:
    """``10 log10(data_range^2 / mse)``, the MSE floored at ``PSNR_MSE_FLOOR * data_range^2``."""
    peak = data_range**2
    return 10.0 * torch.log10(peak / mse_value.clamp(min=PSNR_MSE_FLOOR * peak))


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per sample in dB.

    Args:
        pred: (B, C, H, W) in [0, data_range].
        target: (B, C, H, W) in the same range.
        data_range: peak value.

    Returns:
        (B,); MSE 0.01 at range 1 gives exactly 20 dB; identical images give 100 dB.
    """
    return psnr_from_mse(mse(pred, target), data_range)


def ssim(pred: Tensor, target: Tensor, window_size: int = SSIM_WINDOW, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per sample (kornia: Gaussian window, sigma 1.5, reflect padding).

    Args:
        pred: (B, C, H, W) in [0, data_range]; H, W > ``window_size // 2``.
        target: (B, C, H, W).
        window_size: odd window size.
        data_range: peak value.

    Returns:
        (B,) in [-1, 1]; 1 for identical images.
    """
    with autocast_off(pred):
        similarity = kornia_ssim(upcast(pred), upcast(target), window_size, max_val=data_range)
    return similarity.flatten(1).mean(dim=1)


def normal_angular_error_deg(pred_normal: Tensor, target_normal: Tensor) -> Tensor:
    """Angle between predicted and target normals, in degrees.

    ``atan2(|p x t|, p . t)`` rather than ``acos`` of the cosine: accurate at small angles too
    (float32 ``acos`` cannot resolve errors below ~0.02 degrees) and independent of the vectors'
    lengths.

    Args:
        pred_normal: (B, 3, H, W).
        target_normal: (B, 3, H, W).

    Returns:
        (B, 1, H, W) in [0, 180].
    """
    p, t = upcast(pred_normal), upcast(target_normal)
    cross = torch.linalg.cross(p, t, dim=1)
    cross = (cross * cross).sum(dim=1, keepdim=True).sqrt()  # .norm(dim=1) is ~50x slower on CPU
    dot = (p * t).sum(dim=1, keepdim=True)
    return torch.rad2deg(torch.atan2(cross, dot))


def evaluation_render_configs(batch_size: int, device: torch.device | str = "cpu") -> RenderConfigs:
    """:data:`EVAL_RENDER_SETUPS` as (K, B, ...) :class:`~neuropbr.losses.rendering.RenderConfigs`."""
    setups = torch.tensor(EVAL_RENDER_SETUPS, dtype=torch.float32, device=device)  # (K, 2, 3)
    lights, cameras = setups[:, 0], setups[:, 1]  # (K, 3) each
    intensity = math.pi * lights.square().sum(dim=-1, keepdim=True)  # (K, 1)
    # (K, C) -> (K, B, C): every sample sees the same setups
    lights, intensity, cameras = (x[:, None].expand(-1, batch_size, -1) for x in (lights, intensity, cameras))
    return RenderConfigs(lights, intensity, cameras)


def render_psnr(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
    """PSNR of re-rendered images under the fixed evaluation lights, per sample.

    Args:
        pred: predicted maps, each (B, C, H, W).
        target: target maps of the same shapes.

    Returns:
        (B,) dB; both renders tone-mapped (Reinhard) and sRGB-encoded to [0, 1] first.
    """
    return psnr_from_mse(render_mse(pred, target))


def render_mse(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
    """MSE of re-rendered images under the fixed evaluation lights, per sample: (B,)."""
    albedo, _ = map_pair(pred, target, "albedo")
    configs = evaluation_render_configs(albedo.shape[0], albedo.device)
    pred_image = linear_to_srgb(tonemap_reinhard(render_maps(pred, configs)))  # (K, B, 3, H, W)
    target_image = linear_to_srgb(tonemap_reinhard(render_maps(target, configs)))
    # (K, B, ...) -> (B, K, ...) so that mse() gives one value per sample over all setups
    return mse(pred_image.transpose(0, 1), target_image.transpose(0, 1))


# --- all metrics of a batch ---------------------------------------------------------------------


def _map_errors(pred: Mapping[str, Tensor], target: Mapping[str, Tensor], name: str) -> Tensor:
    p, t = map_pair(pred, target, name)
    return mse(map_to_unit_range(name, p), map_to_unit_range(name, t))


def _per_sample_metrics(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    baseline: BaselineMaps | None = None,
    views: Tensor | None = None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Every quantity of :data:`SUMMED_KEYS` (and, with ``baseline``, of
    :data:`BASELINE_SUMMED_KEYS`) as a (B,) tensor, and the (B, 1, H, W) angles."""
    values: dict[str, Tensor] = {}
    weighted_mse, weighted_ssim = [], []
    for name in PBR_MAPS:
        p, t = map_pair(pred, target, name)
        p, t = map_to_unit_range(name, p), map_to_unit_range(name, t)
        map_mse, map_ssim = mse(p, t), ssim(p, t)
        values[f"{name}_mse"] = map_mse
        values[f"{name}_psnr_per_sample"] = psnr_from_mse(map_mse)
        values[f"{name}_ssim"] = map_ssim
        values[f"{name}_mae"] = mae(p, t)
        share = PBR_CHANNELS[name] / PBR_TOTAL_CHANNELS  # channel-weighted = over the 8-channel stack
        weighted_mse.append(share * map_mse)
        weighted_ssim.append(share * map_ssim)
    angles = normal_angular_error_deg(*map_pair(pred, target, "normal"))  # (B, 1, H, W)
    values["normal_angle_mean"] = angles.flatten(1).mean(dim=1)
    for threshold in ANGLE_THRESHOLDS_DEG:
        values[_threshold_key(threshold)] = 100.0 * (angles < threshold).flatten(1).float().mean(dim=1)
    values["overall_mse"] = torch.stack(weighted_mse).sum(dim=0)
    values["overall_psnr_per_sample"] = psnr_from_mse(values["overall_mse"])
    values["overall_ssim"] = torch.stack(weighted_ssim).sum(dim=0)
    values["render_mse"] = render_mse(pred, target)
    values["render_psnr_per_sample"] = psnr_from_mse(values["render_mse"])
    summed = {key: values[key] for key in SUMMED_KEYS}
    if baseline is not None:
        trivial = baseline.predict(target)
        for name in ("albedo", "roughness", "metallic"):
            summed[f"baseline_constant_{name}_mse"] = _map_errors(trivial, target, name)
        summed["baseline_flat_normal_mse"] = _map_errors(trivial, target, "normal")
        flat_angles = normal_angular_error_deg(*map_pair(trivial, target, "normal"))
        summed["baseline_flat_normal_angle_mean"] = flat_angles.flatten(1).mean(dim=1)
        if views is None:
            raise ValueError(
                "metrics with baselines need the input views (the view-mean and photo-mean albedo baselines)"
            )
        size = spatial_size(target["albedo"])
        for kind, guess in (
            ("view_mean", baseline.view_mean_albedo(views, size)),
            ("photo_mean", baseline.photo_mean_albedo(views, size)),
        ):
            summed[f"baseline_{kind}_albedo_mse"] = _map_errors({"albedo": guess}, target, "albedo")
    return summed, angles


def _dataset_metrics(means: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The reported keys from the per-sample means of :data:`SUMMED_KEYS` (and baselines)."""
    out: dict[str, Tensor] = {}
    for name in PBR_MAPS:
        out[f"{name}_psnr"] = psnr_from_mse(means[f"{name}_mse"])
        out[f"{name}_psnr_per_sample"] = means[f"{name}_psnr_per_sample"]
        out[f"{name}_ssim"] = means[f"{name}_ssim"]
        out[f"{name}_mae"] = means[f"{name}_mae"]
        out[f"{name}_rmse"] = means[f"{name}_mse"].sqrt()
    for key in ("normal_angle_mean", *(_threshold_key(t) for t in ANGLE_THRESHOLDS_DEG), "overall_ssim"):
        out[key] = means[key]
    for key in ("overall", "render"):
        out[f"{key}_psnr"] = psnr_from_mse(means[f"{key}_mse"])
        out[f"{key}_psnr_per_sample"] = means[f"{key}_psnr_per_sample"]
    if "baseline_flat_normal_mse" in means:
        for name in ("albedo", "roughness", "metallic"):
            out[f"baseline_constant_{name}_psnr"] = psnr_from_mse(means[f"baseline_constant_{name}_mse"])
            out[f"{name}_skill_db"] = out[f"{name}_psnr"] - out[f"baseline_constant_{name}_psnr"]
        out["baseline_flat_normal_psnr"] = psnr_from_mse(means["baseline_flat_normal_mse"])
        out["normal_skill_db"] = out["normal_psnr"] - out["baseline_flat_normal_psnr"]
        out["baseline_flat_normal_angle_mean"] = means["baseline_flat_normal_angle_mean"]
        out["normal_angle_ratio"] = out["normal_angle_mean"] / means["baseline_flat_normal_angle_mean"].clamp(
            min=1e-6
        )
        for kind in ("view_mean", "photo_mean"):
            out[f"baseline_{kind}_albedo_psnr"] = psnr_from_mse(means[f"baseline_{kind}_albedo_mse"])
            out[f"albedo_skill_db_vs_{kind}"] = out["albedo_psnr"] - out[f"baseline_{kind}_albedo_psnr"]
        out["skill_db"] = torch.stack([out[f"{name}_skill_db"] for name in PBR_MAPS]).mean()
    return out


@torch.no_grad()
def compute_map_metrics(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    baseline: BaselineMaps | None = None,
    views: Tensor | None = None,
) -> dict[str, Tensor]:
    """All metrics of one batch, over its samples (see the module docstring for keys and definitions).

    Args:
        pred: predicted maps, each (B, C, H, W), H and W > 5.
        target: target maps of the same shapes.
        baseline: the constant predictor; adds the baseline and skill keys (needs ``views``).
        views: (B, V, 3, h, w) input views.

    Returns:
        ``{key: 0-dim float32 tensor}`` on the maps' device (no sync).
    """
    per_sample, angles = _per_sample_metrics(pred, target, baseline, views)
    metrics = _dataset_metrics({key: value.mean() for key, value in per_sample.items()})
    metrics["normal_angle_median"] = angles.flatten().median()
    return metrics


@torch.no_grad()
def train_step_metrics(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Cheap per-step metrics, named as validation names the same quantity (the trainer adds
    ``train/``), so ``train/albedo_mae`` and ``val/albedo_mae`` plot together.

    Args:
        pred: predicted maps, each (B, C, H, W).
        target: target maps of the same shapes.

    Returns:
        ``<map>_mae`` and ``<map>_rmse`` over the whole batch for every map (normals encoded to
        [0, 1]; every sample has as many pixels, so the batch's RMSE is the square root of its mean
        per-sample MSE, as in validation) and ``normal_angle_mean`` (degrees, over every pixel);
        0-dim tensors on the maps' device.
    """
    metrics: dict[str, Tensor] = {}
    for name in PBR_MAPS:
        p, t = map_pair(pred, target, name)
        diff = map_to_unit_range(name, p) - map_to_unit_range(name, t)
        metrics[f"{name}_mae"] = diff.abs().mean()
        metrics[f"{name}_rmse"] = diff.square().mean().sqrt()
    metrics["normal_angle_mean"] = normal_angular_error_deg(*map_pair(pred, target, "normal")).mean()
    return metrics


# --- a validation epoch -------------------------------------------------------------------------


class MetricAccumulator:
    """Dataset-level metrics over many batches, without host syncs until :meth:`compute`.

    Per-sample quantities (:data:`SUMMED_KEYS`: MSEs, SSIMs, ...) are summed (float64) and divided
    by the number of samples, so every sample counts once whatever the batch sizes; PSNRs are then
    taken of the mean MSEs. With ``baseline``, the trivial predictors are scored alongside. The median normal angle comes from a histogram
    of every pixel's angle with :data:`ANGLE_BIN_DEG` bins over [0, 180]: it is the centre of
    the bin holding the exact (lower) median, so within half a bin (0.005 deg) of it.

    For distributed validation, sum each tensor of :meth:`state` across ranks (e.g.
    ``torch.distributed.all_reduce``), then :meth:`reset` and :meth:`merge` the reduced state.

    Example:
        >>> acc = MetricAccumulator()
        >>> for pred, target in batches:  # doctest: +SKIP
        ...     acc.update(pred, target)
        >>> acc.compute()["albedo_psnr"]  # doctest: +SKIP
    """

    num_bins = round(180.0 / ANGLE_BIN_DEG)

    def __init__(self, device: torch.device | str = "cpu", baseline: BaselineMaps | None = None) -> None:
        self.device = torch.device(device)
        self.baseline = baseline
        self.keys = SUMMED_KEYS + (BASELINE_SUMMED_KEYS if baseline is not None else ())
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._sums = torch.zeros(len(self.keys), dtype=torch.float64, device=self.device)
        self._histogram = torch.zeros(self.num_bins, dtype=torch.int64, device=self.device)
        self._count = torch.zeros((), dtype=torch.int64, device=self.device)

    def _follow(self, device: torch.device) -> None:
        """Keep the state on the device of the incoming batches (checked on the host, no sync)."""
        if self._sums.device != device:
            self.device = device
            self._sums, self._histogram, self._count = (
                t.to(device) for t in (self._sums, self._histogram, self._count)
            )

    @torch.no_grad()
    def update(
        self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor], views: Tensor | None = None
    ) -> None:
        """Add one batch (maps as in :func:`compute_map_metrics`; ``views`` needed with baselines)."""
        per_sample, angles = _per_sample_metrics(pred, target, self.baseline, views)
        self._follow(angles.device)
        self._sums += torch.stack([per_sample[key].double().sum() for key in self.keys])
        bins = (angles.flatten() / ANGLE_BIN_DEG).long().clamp(0, self.num_bins - 1)
        self._histogram += torch.bincount(bins, minlength=self.num_bins)
        self._count += angles.shape[0]

    def state(self) -> dict[str, Tensor]:
        """Copies of the accumulated tensors: ``count`` (), ``sums`` (M,), ``angle_histogram`` (bins,)."""
        return {
            "count": self._count.clone(),
            "sums": self._sums.clone(),
            "angle_histogram": self._histogram.clone(),
        }

    def merge(self, state: Mapping[str, Tensor]) -> None:
        """Add another accumulator's :meth:`state` (e.g. another rank's, or an all-reduced one)."""
        self._sums += state["sums"].to(self._sums)
        self._histogram += state["angle_histogram"].to(self._histogram)
        self._count += state["count"].to(self._count)

    @staticmethod
    def _histogram_median(histogram: Tensor, total: int) -> float:
        # torch.median's convention: the lower of the two middle values, index (N - 1) // 2.
        rank = (total - 1) // 2
        index = int(torch.searchsorted(histogram.cumsum(0), torch.tensor(rank + 1, device=histogram.device)))
        return (index + 0.5) * ANGLE_BIN_DEG

    def compute(self) -> dict[str, float]:
        """Dataset-level values of every key of :func:`compute_map_metrics` (syncs with the device).

        Raises:
            RuntimeError: nothing was accumulated.
        """
        if int(self._count) == 0:
            raise RuntimeError("MetricAccumulator.compute(): nothing accumulated yet; call update() first")
        means = self._sums / self._count.double()
        derived = _dataset_metrics({key: means[i] for i, key in enumerate(self.keys)})
        metrics = {key: float(value) for key, value in derived.items()}
        metrics["normal_angle_median"] = self._histogram_median(self._histogram, int(self._histogram.sum()))
        return metrics
