"""Parameter-free fusion baselines: mean or max over the views (``fusion=mean``, ``fusion=max``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from neuropbr.utils.checks import check_shape


class _ViewPooling(nn.Module, ABC):
    """Reduce over the views; follows :class:`~neuropbr.models.contracts.Fusion`.

    Args:
        in_channels: channels of the bottleneck features; ``out_channels`` is the same.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels

    @abstractmethod
    def pool(self, x: Tensor) -> Tensor:
        """(B, V, C, h, w) -> (B, C, h, w)."""

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the views.

        Args:
            x: (B, V, C, h, w) bottleneck features of every view.

        Returns:
            (B, C, h, w).
        """
        check_shape(x, "B V C h w", "fusion input", C=self.in_channels)
        return self.pool(x)


class MeanFusion(_ViewPooling):
    """Mean over the views."""

    def pool(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)


class MaxFusion(_ViewPooling):
    """Element-wise max over the views."""

    def pool(self, x: Tensor) -> Tensor:
        return x.amax(dim=1)
