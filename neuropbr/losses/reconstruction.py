"""Reconstruction terms: per-map weighted L1, squared error, SSIM and normal angular consistency.

Each term is a function plus an ``nn.Module`` (callable directly in tests, composed by name).
The modules take the map dicts of neuropbr/maps.py (``{"albedo": (B, 3, H, W) in [0, 1],
"roughness": (B, 1, H, W), "metallic": (B, 1, H, W), "normal": (B, 3, H, W) unit vectors in
[-1, 1]}``) for prediction and target alike.
Wherever a normal map is compared as an image (L1, SSIM) both sides are encoded to [0, 1] by
``(n + 1) / 2`` first (:func:`map_to_unit_range`), so every map is compared in the same [0, 1]
range and one per-map weight means the same thing for all four maps.

All terms compute in float32 (float64 inputs stay float64), also under autocast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim
from torch import Tensor, nn

from neuropbr.losses.precision import autocast_off, upcast
from neuropbr.maps import PBR_CHANNELS, PBR_MAPS


def map_to_unit_range(name: str, x: Tensor) -> Tensor:
    """Map ``name`` in the [0, 1] range used wherever maps are compared as images.

    Args:
        name: one of :data:`~neuropbr.models.contracts.PBR_MAPS`.
        x: (B, C, H, W) map in its range (neuropbr/maps.py).

    Returns:
        (B, C, H, W): ``(x + 1) / 2`` for ``"normal"`` (the on-disk encoding), ``x`` otherwise.
    """
    return (x + 1.0) * 0.5 if name == "normal" else x


def check_map_names(names: Sequence[str], key: str) -> None:
    """Raise ``ValueError`` naming the config ``key`` if ``names`` holds anything but PBR maps."""
    unknown = [name for name in names if name not in PBR_CHANNELS]
    if unknown:
        raise ValueError(f"{key}: unknown map(s) {unknown}; valid maps: {list(PBR_MAPS)}")


def map_pair(pred: Mapping[str, Tensor], target: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """``(pred[name], target[name])`` in float32 (float64 kept), after checking both exist and match.

    Raises:
        ValueError: a map is missing, or the two shapes differ (both are named).
    """
    for side, maps in (("pred", pred), ("target", target)):
        if name not in maps:
            raise ValueError(f"{side} has no {name!r} map; expected keys {list(PBR_MAPS)}, got {list(maps)}")
    p, t = pred[name], target[name]
    if p.shape != t.shape:
        raise ValueError(f"{name}: pred has shape {tuple(p.shape)} but target has {tuple(t.shape)}")
    return upcast(p), upcast(t)


# --- per-map weighted L1 -----------------------------------------------------------------------


def weighted_l1_loss(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    map_weights: Mapping[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum over maps of ``map_weight * mean |pred - target|``, normals compared in [0, 1].

    Args:
        pred: map dict, each (B, C, H, W).
        target: map dict of the same shapes.
        map_weights: weight per map name; maps left out get 1.0 (the guide's default). Default:
            all four maps with weight 1.

    Returns:
        ``(total, {map: unweighted mean L1})``: a scalar, and one scalar for each of the four
        maps whatever its weight.
    """
    weights = {name: 1.0 for name in PBR_MAPS} | dict(map_weights or {})
    per_map: dict[str, Tensor] = {}
    for name in weights:
        p, t = map_pair(pred, target, name)
        per_map[name] = (map_to_unit_range(name, p) - map_to_unit_range(name, t)).abs().mean()
    total = torch.stack([weights[name] * value for name, value in per_map.items()]).sum()
    return total, per_map


class WeightedL1Loss(nn.Module):
    """Module form of :func:`weighted_l1_loss`; the guide's ``w_albedo``, ``w_roughness``, ...

    Args:
        map_weights: weight per map (``loss.map_weights``); missing maps get 1.0. Each must be
            >= 0.

    Example:
        >>> import torch
        >>> maps = {"albedo": torch.rand(1, 3, 8, 8), "roughness": torch.rand(1, 1, 8, 8),
        ...         "metallic": torch.rand(1, 1, 8, 8), "normal": torch.rand(1, 3, 8, 8)}
        >>> total, per_map = WeightedL1Loss({"normal": 2.0})(maps, maps)
        >>> float(total), sorted(per_map)
        (0.0, ['albedo', 'metallic', 'normal', 'roughness'])
    """

    def __init__(self, map_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        weights = {name: 1.0 for name in PBR_MAPS} | dict(map_weights or {})
        check_map_names(list(weights), "loss.map_weights")
        for name, weight in weights.items():
            if not weight >= 0:  # also rejects NaN
                raise ValueError(f"loss.map_weights.{name} must be >= 0, got {weight}")
        self.map_weights = {name: float(weight) for name, weight in weights.items()}

    def forward(
        self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """See :func:`weighted_l1_loss`."""
        return weighted_l1_loss(pred, target, self.map_weights)


# --- squared error ------------------------------------------------------------------------------


class SquaredErrorLoss(nn.Module):
    """The ``mse`` term: mean squared error summed over the chosen maps, normals in [0, 1].

    L1 is minimised by the median of what a texel could be, squared error by the mean. Where the
    photos leave a map uncertain (is this patch metal? how rough is this material?) the median
    commits to one answer, often the wrong one, while the mean hedges; PSNR, the metric every
    map but the normal is scored by, is a squared error, so it rewards the hedge.

    Args:
        maps: map names (``loss.mse_maps``).

    Example:
        >>> import torch
        >>> pred = {"metallic": torch.full((1, 1, 4, 4), 0.5)}
        >>> target = {"metallic": torch.ones(1, 1, 4, 4)}
        >>> total, per_map = SquaredErrorLoss(["metallic"])(pred, target)
        >>> float(total), float(per_map["metallic"])
        (0.25, 0.25)
    """

    def __init__(self, maps: Sequence[str] = ("roughness", "metallic")) -> None:
        super().__init__()
        if not maps:
            raise ValueError("loss.mse_maps is empty; list at least one map or set loss.weights.mse=0")
        check_map_names(maps, "loss.mse_maps")
        self.maps = list(maps)

    def forward(
        self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(sum over maps of the mean squared error, {map: its mean squared error})``."""
        per_map: dict[str, Tensor] = {}
        for name in self.maps:
            p, t = map_pair(pred, target, name)
            per_map[name] = (map_to_unit_range(name, p) - map_to_unit_range(name, t)).square().mean()
        return torch.stack(list(per_map.values())).sum(), per_map


# --- SSIM --------------------------------------------------------------------------------------


def ssim_loss(pred: Tensor, target: Tensor, window_size: int = 11, data_range: float = 1.0) -> Tensor:
    """``1 - mean SSIM`` (kornia's SSIM: Gaussian window, sigma 1.5, reflect padding).

    Args:
        pred: (B, C, H, W) image in [0, data_range]; H and W larger than ``window_size // 2``.
        target: (B, C, H, W) image of the same range.
        window_size: odd number of window taps.
        data_range: value range of the images (sets SSIM's stabilising constants).

    Returns:
        Scalar in [0, 2]; ~0 (up to kornia's 1e-12 stabiliser) for identical images.
    """
    with autocast_off(pred):
        similarity = kornia_ssim(upcast(pred), upcast(target), window_size, max_val=data_range)
    return 1.0 - similarity.mean()


class SSIMLoss(nn.Module):
    """:func:`ssim_loss` averaged over the chosen maps, normals encoded to [0, 1].

    Args:
        maps: map names (``loss.ssim_maps``), albedo by default.
        window_size: odd Gaussian window size (``loss.ssim_window``).
    """

    def __init__(self, maps: Sequence[str] = ("albedo",), window_size: int = 11) -> None:
        super().__init__()
        if not maps:
            raise ValueError("loss.ssim_maps is empty; list at least one map or set loss.weights.ssim=0")
        check_map_names(maps, "loss.ssim_maps")
        if window_size < 3 or window_size % 2 == 0:
            raise ValueError(f"loss.ssim_window must be an odd integer >= 3, got {window_size}")
        self.maps = list(maps)
        self.window_size = window_size

    def forward(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        """Mean over ``maps`` of ``1 - SSIM``; returns a scalar."""
        values = []
        for name in self.maps:
            p, t = map_pair(pred, target, name)
            values.append(ssim_loss(map_to_unit_range(name, p), map_to_unit_range(name, t), self.window_size))
        return torch.stack(values).mean()


# --- normal angular consistency ----------------------------------------------------------------


def normal_angular_loss(pred_normal: Tensor, target_normal: Tensor) -> Tensor:
    """Mean of ``1 - cos(angle)`` between predicted and target normals.

    ``1 - cos`` rather than the angle itself: ``acos`` has an infinite derivative at zero error,
    exactly where training converges.

    Args:
        pred_normal: (B, 3, H, W) normals (need not be unit length; zero vectors are safe).
        target_normal: (B, 3, H, W) normals.

    Returns:
        Scalar in [0, 2]; 0 for parallel normals.
    """
    cosine = F.cosine_similarity(upcast(pred_normal), upcast(target_normal), dim=1, eps=1e-8)
    # Rounding can put the cosine of parallel vectors a few ulps above 1.
    return (1.0 - cosine.clamp(max=1.0)).mean()


class NormalAngularLoss(nn.Module):
    """Module form of :func:`normal_angular_loss` on the ``"normal"`` maps of two map dicts."""

    def forward(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        """Scalar ``mean(1 - cos)`` between ``pred["normal"]`` and ``target["normal"]``."""
        return normal_angular_loss(*map_pair(pred, target, "normal"))


class LightDirectionLoss(nn.Module):
    """The ``light`` term: mean L1 distance between estimated and true key-light directions.

    Compares ``pred["light"]`` (the generator's light estimate, returned in training mode with
    ``encoder.light_estimation``) with ``target["light"]`` (``data.light_targets``), both
    (B, V, 3, H, W) unit vectors; None when either is absent (validation), so the term is skipped.
    """

    def forward(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor | None:
        if "light" not in pred or "light" not in target:
            return None
        estimate, truth = pred["light"], target["light"]
        if estimate.shape != truth.shape:
            raise ValueError(
                f"light: estimate {tuple(estimate.shape)} and target {tuple(truth.shape)} differ; both are "
                "(B, V, 3, H, W) at the views' resolution"
            )
        return (estimate.float() - truth.float()).abs().mean()
