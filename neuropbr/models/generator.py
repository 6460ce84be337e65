"""The multi-view PBR generator, composed from its three slots (STYLE R2)."""

from __future__ import annotations

from torch import Tensor, nn

from neuropbr.models.contracts import Decoder, Encoder, Fusion
from neuropbr.utils.checks import check_shape


class PBRGenerator(nn.Module):
    """Shared per-view encoder -> cross-view fusion of the bottleneck -> multi-head decoder.

    Skips are fused across views by their mean (order-independent, any V).

    Args:
        encoder: see :class:`~neuropbr.models.contracts.Encoder`.
        fusion: see :class:`~neuropbr.models.contracts.Fusion`.
        decoder: see :class:`~neuropbr.models.contracts.Decoder`.
    """

    def __init__(self, encoder: Encoder, fusion: Fusion, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.fusion = fusion
        self.decoder = decoder

    def forward(self, views: Tensor) -> dict[str, Tensor]:
        """Predict the four maps.

        Args:
            views: (B, V, 3, H, W) float in [0, 1].

        Returns:
            ``{"albedo": (B, 3, H', W'), "roughness": (B, 1, ...), "metallic": (B, 1, ...),
            "normal": (B, 3, ...)}`` with ``H' = H * decoder.sr_scale``.
        """
        dims = check_shape(views, "B V 3 H W", "views")
        batch, num_views = dims["B"], dims["V"]
        features = self.encoder(views.flatten(0, 1))  # [(B*V, C_i, h_i, w_i)], finest first
        features = [f.unflatten(0, (batch, num_views)) for f in features]  # [(B, V, C_i, h_i, w_i)]
        fused = self.fusion(features[-1])  # (B, C, h, w)
        skips = [f.mean(dim=1) for f in features[:-1]]  # [(B, C_i, h_i, w_i)]
        return self.decoder(fused, skips, (dims["H"], dims["W"]))
