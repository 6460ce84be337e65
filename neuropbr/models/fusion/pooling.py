"""Parameter-free fusion baselines: mean or max over the views (``fusion=mean``, ``fusion=max``)."""

from __future__ import annotations

from torch import Tensor, nn

from neuropbr.utils.checks import check_shape


class MeanFusion(nn.Module):
    """Mean over the views; follows :class:`~neuropbr.models.contracts.Fusion`.

    Args:
        in_channels: channels of the bottleneck features; ``out_channels`` is the same.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the views.

        Args:
            x: (B, V, C, h, w) bottleneck features of every view.

        Returns:
            (B, C, h, w).
        """
        check_shape(x, "B V C h w", "fusion input", C=self.in_channels)
        return x.mean(dim=1)


class MaxFusion(nn.Module):
    """Element-wise max over the views; follows :class:`~neuropbr.models.contracts.Fusion`.

    Args:
        in_channels: channels of the bottleneck features; ``out_channels`` is the same.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the views.

        Args:
            x: (B, V, C, h, w) bottleneck features of every view.

        Returns:
            (B, C, h, w).
        """
        check_shape(x, "B V C h w", "fusion input", C=self.in_channels)
        return x.amax(dim=1)
