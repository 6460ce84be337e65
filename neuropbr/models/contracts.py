"""The written contracts between the generator's slots (docs/architecture.md).

Every encoder, fusion, decoder and discriminator option follows one of these protocols; the
contract tests in ``tests/models/`` are written once against them.

Shape letters: B batch, V views, N = B*V, C channels, H, W image size, h, w feature-map size.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

# The map names live in neuropbr.maps (the bottom layer); re-exported for the slots' users.
from neuropbr.maps import PBR_CHANNELS, PBR_MAPS, PBR_TOTAL_CHANNELS

__all__ = ["PBR_CHANNELS", "PBR_MAPS", "PBR_TOTAL_CHANNELS", "Decoder", "Discriminator", "Encoder", "Fusion"]


@runtime_checkable
class Encoder(Protocol):
    """Per-view feature extractor, shared across views.

    ``forward(x: (N, 3, H, W) in [0, 1]) -> list[Tensor]``, finest first; level ``i`` has
    ``out_channels[i]`` channels at ``H / reductions[i]``. The last level is the bottleneck the
    fusion sees; the others are the decoder's skips. Input normalisation happens inside.
    """

    out_channels: list[int]
    reductions: list[int]

    def __call__(self, x: Tensor) -> list[Tensor]: ...


@runtime_checkable
class Fusion(Protocol):
    """Cross-view fusion of bottleneck features: ``(B, V, C_in, h, w) -> (B, out_channels, h, w)``.

    Must be invariant to the order of the views and accept any V >= 1.
    """

    out_channels: int

    def __call__(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class Decoder(Protocol):
    """``(fused (B, C, h, w), skips finest-first [(B, C_i, H_i, W_i)], image_size) -> maps``.

    Returns ``{name: (B, PBR_CHANNELS[name], H * sr_scale, W * sr_scale)}`` with output
    activations applied (sigmoid; L2-normalised normals). ``albedo_prior`` (B, 3, H, W), the mean
    of the input photos, is passed when the decoder's ``albedo_from_photos`` is set.
    """

    sr_scale: int

    def __call__(
        self,
        fused: Tensor,
        skips: list[Tensor],
        image_size: tuple[int, int],
        albedo_prior: Tensor | None = None,
    ) -> dict[str, Tensor]: ...


@runtime_checkable
class Discriminator(Protocol):
    """``(maps (B, 8, H, W) [, views (B, V, 3, H, W)]) -> patch logits (B, 1, h, w)``."""

    conditional: bool

    def __call__(self, maps: Tensor, views: Tensor | None = None) -> Tensor: ...

    def receptive_field(self) -> int: ...
