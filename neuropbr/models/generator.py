"""The multi-view PBR generator, composed from its three slots: encoder, fusion, decoder
(protocols in ``neuropbr/models/contracts.py``), each chosen by its config group."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neuropbr.models.contracts import Decoder, Encoder, Fusion
from neuropbr.models.light import LightEstimator
from neuropbr.utils.checks import check_shape


def shading_ratio(views: Tensor, floor: float = 0.02) -> Tensor:
    """Each view's log-ratio to the mean of all views, after one exposure gain per view.

    For a diffuse surface a view is ``albedo * shading_k``: the log-ratio
    ``log(shading_k) - mean_j log(shading_j)`` no longer depends on the albedo, only on how
    differently the views' lights shade each texel (up to one constant per view, from its
    exposure gain; order-independent; zero for one view).

    Args:
        views: (B, V, 3, H, W) in [0, 1].
        floor: added before the log so black texels stay finite.

    Returns:
        (B, V, 3, H, W).
    """
    exposed = views / views.mean(dim=(2, 3, 4), keepdim=True).clamp(min=1e-3)  # (B, V, 3, H, W), mean 1
    logs = torch.log(exposed + floor)
    return logs - logs.mean(dim=1, keepdim=True)


class PBRGenerator(nn.Module):
    """Shared per-view encoder -> cross-view fusion of the bottleneck -> multi-head decoder.

    Skips are fused across views by their mean (order-independent, any V). An encoder with
    ``stacked_views=V`` takes the V views as the channels of one image instead (early fusion):
    every level then holds one fused feature map, which the fusion and the skips pass through.

    With a ``light_estimator`` (``encoder.light_estimation=true``), each view enters the encoder
    with 3 more channels: the estimated direction towards its key light at every pixel.

    A decoder with ``albedo_from_photos`` also gets the mean of the views as photographed, which
    its albedo head corrects.

    Args:
        encoder: see :class:`~neuropbr.models.contracts.Encoder`.
        fusion: see :class:`~neuropbr.models.contracts.Fusion`.
        decoder: see :class:`~neuropbr.models.contracts.Decoder`.
        light_estimator: see :class:`~neuropbr.models.light.LightEstimator` (None: off).
    """

    def __init__(
        self,
        encoder: Encoder,
        fusion: Fusion,
        decoder: Decoder,
        light_estimator: LightEstimator | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.fusion = fusion
        self.decoder = decoder
        self.light_estimator = light_estimator

    def forward(self, views: Tensor) -> dict[str, Tensor]:
        """Predict the four maps.

        Args:
            views: (B, V, 3, H, W) float in [0, 1].

        Returns:
            ``{"albedo": (B, 3, H', W'), "roughness": (B, 1, ...), "metallic": (B, 1, ...),
            "normal": (B, 3, ...)}`` with ``H' = H * decoder.sr_scale``; in training mode with a
            light estimator also ``"light"``: (B, V, 3, H, W), for the ``light`` loss term.
        """
        dims = check_shape(views, "B V 3 H W", "views")
        batch, num_views = dims["B"], dims["V"]
        light = self.light_estimator(views) if self.light_estimator is not None else None
        photo_mean = views.mean(dim=1) if getattr(self.decoder, "albedo_from_photos", False) else None
        channels = [views]
        if getattr(self.encoder, "shading_ratio", False):
            channels.append(shading_ratio(views))  # (B, V, 3, H, W)
        if light is not None:
            channels.append(light.to(views.dtype))
        views = torch.cat(channels, dim=2) if len(channels) > 1 else views  # (B, V, 3/6/9, H, W)
        stacked = getattr(self.encoder, "stacked_views", 0)
        if stacked:  # early fusion: the views enter the encoder as channels of one image
            if num_views != stacked:
                raise ValueError(
                    f"views: got {num_views} views, but encoder.stacked_views={stacked} takes exactly "
                    f"{stacked} (the views are stacked as channels); pass {stacked} views"
                )
            features = [f[:, None] for f in self.encoder(views.flatten(1, 2))]  # [(B, 1, C_i, h_i, w_i)]
        else:
            features = self.encoder(views.flatten(0, 1))  # [(B*V, C_i, h_i, w_i)], finest first
            features = [f.unflatten(0, (batch, num_views)) for f in features]  # [(B, V, C_i, h_i, w_i)]
        fused = self.fusion(features[-1])  # (B, C, h, w)
        skips = [f.mean(dim=1) for f in features[:-1]]  # [(B, C_i, h_i, w_i)]
        maps = self.decoder(fused, skips, (dims["H"], dims["W"]), albedo_prior=photo_mean)
        if light is not None and self.training:  # eval (validation, inference, export): the maps only
            maps["light"] = light
        return maps
