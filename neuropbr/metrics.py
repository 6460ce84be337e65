"""Quality metrics of predicted PBR maps: pure, batched functions plus a validation accumulator.

Conventions (DESIGN section 3): maps are ``{"albedo": (B, 3, H, W) in [0, 1], "roughness":
(B, 1, H, W), "metallic": (B, 1, H, W), "normal": (B, 3, H, W) unit vectors in [-1, 1]}``.
Image metrics (PSNR, SSIM, MAE, RMSE) compare every map in [0, 1], normals encoded as
``(n + 1) / 2`` on both sides, with ``data_range = 1``. Angular metrics use the vectors.

Keys of :func:`compute_map_metrics` and :class:`MetricAccumulator` (the trainer adds ``val/``):

- ``<map>_psnr``, ``<map>_ssim``, ``<map>_mae``, ``<map>_rmse`` for albedo, roughness,
  metallic, normal: per-sample values averaged over samples. SSIM is kornia's (11x11 Gaussian
  window, sigma 1.5, reflect padding; H and W must exceed 5). PSNR caps at 100 dB (MSE floor
  1e-10), so identical maps give a finite number.
- ``normal_angle_mean`` (degrees, mean over pixels), ``normal_angle_median`` (over all pixels of
  the batch or of the accumulated set), ``normal_within_11_25``, ``normal_within_22_5``,
  ``normal_within_30``: percentage of pixels with an error strictly under that many degrees.
- ``overall_psnr``: PSNR of the MSE over the 8-channel stack (albedo 3, roughness 1, metallic 1,
  encoded normal 3), i.e. the channel-weighted mean of the per-map MSEs; ``overall_ssim``: SSIM
  averaged over the same 8 channels (kornia's SSIM is per channel, so this is the
  channel-weighted mean of the per-map SSIMs).
- ``render_psnr``: PSNR between prediction and target rendered under the fixed
  :data:`EVAL_RENDER_SETUPS` (identical in every run), tone-mapped with Reinhard and sRGB-encoded
  to [0, 1]; one MSE per sample over all setups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor

from neuropbr.losses.precision import autocast_off, upcast
from neuropbr.losses.reconstruction import map_pair, map_to_unit_range
from neuropbr.losses.rendering import RenderConfigs, render_maps
from neuropbr.models.contracts import PBR_CHANNELS, PBR_MAPS, PBR_TOTAL_CHANNELS
from neuropbr.render.color import linear_to_srgb, tonemap_reinhard

#: Thresholds of the ``normal_within_*`` metrics, in degrees (as in surface-normal benchmarks).
ANGLE_THRESHOLDS_DEG: tuple[float, ...] = (11.25, 22.5, 30.0)
#: Bin width of the accumulator's angle histogram: its median is within half a bin (0.005 deg)
#: of the exact median of all accumulated pixels.
ANGLE_BIN_DEG = 0.01
#: MSE floor of :func:`psnr`, relative to ``data_range ** 2`` (caps PSNR at 100 dB).
PSNR_MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
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


#: Keys of the per-sample metrics, in a fixed order (the accumulator's state layout).
PER_SAMPLE_KEYS: tuple[str, ...] = (
    *(f"{name}_{metric}" for name in PBR_MAPS for metric in ("psnr", "ssim", "mae", "rmse")),
    "normal_angle_mean",
    *(_threshold_key(t) for t in ANGLE_THRESHOLDS_DEG),
    "overall_psnr",
    "overall_ssim",
    "render_psnr",
)
#: Every key validation reports (the trainer prefixes ``val/``): what ``optimized_metric`` may name.
VALIDATION_KEYS: tuple[str, ...] = ("loss", *PER_SAMPLE_KEYS, "normal_angle_median")


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
    albedo, _ = map_pair(pred, target, "albedo")
    configs = evaluation_render_configs(albedo.shape[0], albedo.device)
    pred_image = linear_to_srgb(tonemap_reinhard(render_maps(pred, configs)))  # (K, B, 3, H, W)
    target_image = linear_to_srgb(tonemap_reinhard(render_maps(target, configs)))
    # (K, B, ...) -> (B, K, ...) so that mse() gives one value per sample over all setups
    return psnr(pred_image.transpose(0, 1), target_image.transpose(0, 1))


# --- all metrics of a batch ---------------------------------------------------------------------


def _per_sample_metrics(
    pred: Mapping[str, Tensor], target: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], Tensor]:
    """Every metric of :data:`PER_SAMPLE_KEYS` as a (B,) tensor, and the (B, 1, H, W) angles."""
    values: dict[str, Tensor] = {}
    weighted_mse, weighted_ssim = [], []
    for name in PBR_MAPS:
        p, t = map_pair(pred, target, name)
        p, t = map_to_unit_range(name, p), map_to_unit_range(name, t)
        map_mse, map_ssim = mse(p, t), ssim(p, t)
        values[f"{name}_psnr"] = psnr_from_mse(map_mse)
        values[f"{name}_ssim"] = map_ssim
        values[f"{name}_mae"] = mae(p, t)
        values[f"{name}_rmse"] = map_mse.sqrt()
        share = PBR_CHANNELS[name] / PBR_TOTAL_CHANNELS  # channel-weighted = over the 8-channel stack
        weighted_mse.append(share * map_mse)
        weighted_ssim.append(share * map_ssim)
    angles = normal_angular_error_deg(*map_pair(pred, target, "normal"))  # (B, 1, H, W)
    values["normal_angle_mean"] = angles.flatten(1).mean(dim=1)
    for threshold in ANGLE_THRESHOLDS_DEG:
        values[_threshold_key(threshold)] = 100.0 * (angles < threshold).flatten(1).float().mean(dim=1)
    values["overall_psnr"] = psnr_from_mse(torch.stack(weighted_mse).sum(dim=0))
    values["overall_ssim"] = torch.stack(weighted_ssim).sum(dim=0)
    values["render_psnr"] = render_psnr(pred, target)
    return {key: values[key] for key in PER_SAMPLE_KEYS}, angles


@torch.no_grad()
def compute_map_metrics(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """All validation metrics of one batch (see the module docstring for keys and definitions).

    Args:
        pred: predicted maps, each (B, C, H, W), H and W > 5.
        target: target maps of the same shapes.

    Returns:
        ``{key: 0-dim float32 tensor}``: means over the batch's samples, and
        ``normal_angle_median`` exact over all the batch's pixels. On the maps' device (no sync).
    """
    per_sample, angles = _per_sample_metrics(pred, target)
    metrics = {key: value.mean() for key, value in per_sample.items()}
    metrics["normal_angle_median"] = angles.flatten().median()
    return metrics


@torch.no_grad()
def train_step_metrics(pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Cheap per-step metrics (the guide's ``train/`` keys without the prefix).

    Args:
        pred: predicted maps, each (B, C, H, W).
        target: target maps of the same shapes.

    Returns:
        ``mae_<map>`` and ``rmse_<map>`` over the whole batch for every map (normals encoded to
        [0, 1]) and ``normal_angle_deg`` (mean over pixels); 0-dim tensors on the maps' device.
    """
    metrics: dict[str, Tensor] = {}
    for name in PBR_MAPS:
        p, t = map_pair(pred, target, name)
        diff = map_to_unit_range(name, p) - map_to_unit_range(name, t)
        metrics[f"mae_{name}"] = diff.abs().mean()
        metrics[f"rmse_{name}"] = diff.square().mean().sqrt()
    metrics["normal_angle_deg"] = normal_angular_error_deg(*map_pair(pred, target, "normal")).mean()
    return metrics


# --- a validation epoch -------------------------------------------------------------------------


class MetricAccumulator:
    """Dataset-level metrics over many batches, without host syncs until :meth:`compute`.

    Per-sample metrics are summed (float64) and divided by the number of samples, so every
    sample counts once whatever the batch sizes. The median normal angle comes from a histogram
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

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._sums = torch.zeros(len(PER_SAMPLE_KEYS), dtype=torch.float64, device=self.device)
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
    def update(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> None:
        """Add one batch (maps as in :func:`compute_map_metrics`)."""
        per_sample, angles = _per_sample_metrics(pred, target)
        self._follow(angles.device)
        self._sums += torch.stack([per_sample[key].double().sum() for key in PER_SAMPLE_KEYS])
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
        means = (self._sums / self._count.double()).tolist()
        metrics = dict(zip(PER_SAMPLE_KEYS, means))
        metrics["normal_angle_median"] = self._histogram_median(self._histogram, int(self._histogram.sum()))
        return metrics
