"""From-scratch U-Net encoder (``encoder=unet`` with max-pooling, ``encoder=unet_stride`` with
strided convolutions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neuropbr.models.layers import ConvNormAct, check_norm
from neuropbr.utils.checks import check_shape

_DOWNSAMPLE = ("maxpool", "stride")


def _level(in_channels: int, out_channels: int, downsample: str | None, norm: str) -> nn.Sequential:
    """Two 3x3 conv-norm-ReLU layers, preceded by max-pooling or with a strided first conv."""
    if downsample == "stride":
        return nn.Sequential(
            ConvNormAct(in_channels, out_channels, 3, norm, stride=2),
            ConvNormAct(out_channels, out_channels, 3, norm),
        )
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if downsample == "maxpool" else []
    layers += [
        ConvNormAct(in_channels, out_channels, 3, norm),
        ConvNormAct(out_channels, out_channels, 3, norm),
    ]
    return nn.Sequential(*layers)


class UNetEncoder(nn.Module):
    """U-Net contracting path: level 0 at full resolution, each next level at half the previous.

    Follows :class:`~neuropbr.models.contracts.Encoder`. Inputs in [0, 1] are mapped to [-1, 1]
    inside (there are no pretrained statistics to match).

    Args:
        channels: width of each level, finest first; ``len(channels)`` levels with reductions
            ``1, 2, 4, ...``. The last level is the bottleneck.
        downsample: ``"maxpool"`` (2x2 max-pooling before each level) or ``"stride"`` (the first
            conv of each level has stride 2).
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        grad_checkpointing: recompute each level in the backward pass instead of storing its
            activations.
        exposure_norm: scale each view to mean 0.5 before encoding: exposure differences between
            shots stop mattering, contrast, colour ratios and shading stay. It also throws away how
            bright the photos are, which, when lights and exposure vary within a range (as in the
            synthetic data), is the main clue to how light the material is: on held-out families
            the albedo is 2.4 dB better without it. Use it for captures whose brightness says
            nothing (a camera's auto-exposure pulling every photo to mid grey).
        shading_ratio: also take each view's log-ratio to the mean of all views (6 channels per
            view; see :func:`~neuropbr.models.generator.shading_ratio`).
        light_estimation: each view also comes with 3 channels of light directions (after the
            photo and the optional log-ratio; the generator's
            :class:`~neuropbr.models.light.LightEstimator` makes them).
        stacked_views: 0: one shared encoder runs on each view (any number of views, fused after
            encoding). V > 0: exactly V views enter as one image of V x 3 (or V x 6) channels
            (early fusion): the first convolution already sees every view's value of each texel,
            which is how the views' shading under different lights is compared (photometric
            stereo); the encoder runs once instead of V times.
    """

    def __init__(
        self,
        channels: Sequence[int] = (64, 128, 256, 512, 1024, 2048),
        downsample: str = "maxpool",
        norm: str = "batch",
        grad_checkpointing: bool = False,
        exposure_norm: bool = False,
        shading_ratio: bool = False,
        stacked_views: int = 0,
        light_estimation: bool = False,
    ) -> None:
        super().__init__()
        if stacked_views < 0:
            raise ValueError(
                f"encoder.stacked_views={stacked_views}: expected 0 (a shared encoder per view) or the "
                "number of views stacked as channels"
            )
        self.exposure_norm = exposure_norm
        self.shading_ratio = shading_ratio
        self.stacked_views = stacked_views
        self.light_estimation = light_estimation
        self.in_channels = (3 + 3 * shading_ratio + 3 * light_estimation) * max(1, stacked_views)
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(
                f"encoder.channels={channels}; expected at least 2 positive widths (skips + bottleneck)"
            )
        if downsample not in _DOWNSAMPLE:
            raise ValueError(f"encoder.downsample={downsample!r}; choose one of {sorted(_DOWNSAMPLE)}")
        check_norm(norm, "encoder.norm")
        self.out_channels: list[int] = channels
        self.reductions: list[int] = [2**i for i in range(len(channels))]
        self.grad_checkpointing = grad_checkpointing
        in_channels = [self.in_channels, *channels[:-1]]
        self.levels = nn.ModuleList(
            _level(c_in, c_out, downsample if i > 0 else None, norm)
            for i, (c_in, c_out) in enumerate(zip(in_channels, channels))
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Extract the feature pyramid.

        Args:
            x: (N, 3, H, W) in [0, 1] (with ``shading_ratio``: (N, 6, H, W), the photo then its
                log-ratio channels; with ``stacked_views=V``: (N, V * 3 or V * 6, H, W), view
                after view); H and W divisible by ``reductions[-1]``.

        Returns:
            ``[(N, out_channels[i], H / reductions[i], W / reductions[i])]``, finest first.
        """
        check_shape(x, f"N {self.in_channels} H W", "encoder input")
        per_view = x.unflatten(1, (max(1, self.stacked_views), -1))  # (N, V', 3 or 6, H, W)
        photo, ratio = per_view[:, :, :3], per_view[:, :, 3:]  # log-ratio and light: already centred
        if self.exposure_norm:  # one gain per view: removes exposure, keeps the colour ratios
            photo = photo * (0.5 / photo.mean(dim=(2, 3, 4), keepdim=True).clamp(min=1e-3))  # mean 0.5
        x = torch.cat([(photo - 0.5) / 0.5, ratio], dim=2).flatten(1, 2)  # (N, C_in, H, W), photo in [-1, 1]
        features = []
        for level in self.levels:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(level, x, use_reentrant=False)
            else:
                x = level(x)
            features.append(x)  # (N, C_i, H / 2^i, W / 2^i)
        return features
