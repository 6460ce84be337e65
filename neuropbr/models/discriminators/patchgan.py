"""PatchGAN discriminator on the 8-channel map stack (``discriminator=simple|configurable|tiny``)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from neuropbr.maps import PBR_TOTAL_CHANNELS
from neuropbr.utils.checks import check_shape

log = logging.getLogger(__name__)

KERNEL_SIZE = 4
MIN_LAYERS, MAX_LAYERS = 3, 7

#: Normalisation after each inner conv (one dict gives the valid values and the error message).
#: ``spectral`` normalises the conv weights instead; instance norm is non-affine, as in pix2pix.
_NORMS = {
    "batch": nn.BatchNorm2d,
    "instance": nn.InstanceNorm2d,
    "spectral": None,
    "none": None,
}


def patchgan_receptive_field(n_layers: int) -> int:
    """Exact receptive field, in input pixels, of one logit of a :class:`PatchGANDiscriminator`.

    ``n_layers`` 4x4 convs with stride 2, then two 4x4 convs with stride 1; walking back from one
    logit, each layer maps a window of ``r`` pixels to ``(r - 1) * stride + 4``, which gives
    ``9 * 2**n_layers - 2``: 3 -> 70 (the pix2pix "70x70 PatchGAN"), 4 -> 142, 5 -> 286, 6 -> 574,
    7 -> 1150.

    Args:
        n_layers: number of stride-2 convs.

    Returns:
        The side of the square input window one logit sees.
    """
    field = 1
    for stride in reversed([2] * n_layers + [1, 1]):
        field = (field - 1) * stride + KERNEL_SIZE
    return field


class PatchGANDiscriminator(nn.Module):
    """PatchGAN (pix2pix's ``NLayerDiscriminator``) on the maps, optionally conditioned on the views.

    Layers, all 4x4 convs with padding 1 and LeakyReLU(0.2): a stride-2 conv to ``ndf`` (bias, no
    norm); ``n_layers - 1`` stride-2 convs to ``min(ndf * 2**k, max_channels)`` (norm); one stride-1
    conv to ``min(ndf * 2**n_layers, max_channels)`` (norm); a stride-1 conv to 1 logit (bias).
    Weights start from N(0, 0.02). ``n_layers=6, ndf=64`` is the original stack's configurable
    discriminator (15,356,737 parameters, 574 px receptive field); the guide's "simple 4-layer"
    one is ``n_layers=4`` (142 px); the pix2pix 70 px PatchGAN is ``n_layers=3``.

    Inputs smaller than ``min_input_size`` (``3 * 2**n_layers``, below which the last conv would
    have no output) are zero-padded to it, with a warning: the receptive field then covers the
    whole image anyway.

    Args:
        n_layers: stride-2 convs, 3..7 (receptive field 70..1150 px, see
            :func:`patchgan_receptive_field`).
        ndf: width of the first conv.
        max_channels: cap on the width of the inner convs.
        norm: ``"batch"``, ``"instance"``, ``"spectral"`` (spectral normalisation of every conv,
            no norm layers) or ``"none"``.
        conditional: also take the V input views (pix2pix-style conditioning): the input is the
            maps concatenated with the views flattened to ``(B, 3 V, H, W)`` (so V is fixed at
            build time and the order of the views matters to the discriminator).
        num_views: V, used when ``conditional``.
        in_channels: channels of the map stack (8: albedo, roughness, metallic, normal).
    """

    def __init__(
        self,
        n_layers: int = 6,
        ndf: int = 64,
        max_channels: int = 512,
        norm: str = "batch",
        conditional: bool = False,
        num_views: int = 3,
        in_channels: int = PBR_TOTAL_CHANNELS,
    ) -> None:
        super().__init__()
        if not MIN_LAYERS <= n_layers <= MAX_LAYERS:
            raise ValueError(
                f"discriminator.n_layers={n_layers}; expected {MIN_LAYERS}..{MAX_LAYERS} "
                f"(receptive field {patchgan_receptive_field(MIN_LAYERS)}.."
                f"{patchgan_receptive_field(MAX_LAYERS)} px)"
            )
        if ndf < 1 or max_channels < ndf:
            raise ValueError(
                f"discriminator.ndf={ndf}, discriminator.max_channels={max_channels}; expected 1 <= ndf <= max_channels"
            )
        if norm not in _NORMS:
            raise ValueError(f"discriminator.norm={norm!r}; choose one of {sorted(_NORMS)}")
        if conditional and num_views < 1:
            raise ValueError(f"data.num_views={num_views}; a conditional discriminator needs >= 1 view")
        self.n_layers = n_layers
        self.conditional = conditional
        self.num_views = num_views
        self.in_channels = in_channels
        self.min_input_size = 3 * 2**n_layers
        self._warned_small: set[tuple[int, int]] = set()

        norm_layer = _NORMS[norm]
        has_norm = norm_layer is not None
        first_channels = in_channels + (3 * num_views if conditional else 0)
        widths = [min(ndf * 2**k, max_channels) for k in range(n_layers + 1)]  # last: the stride-1 conv

        layers: list[nn.Module] = [
            nn.Conv2d(first_channels, ndf, KERNEL_SIZE, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for k in range(1, n_layers + 1):
            stride = 2 if k < n_layers else 1
            layers.append(
                nn.Conv2d(widths[k - 1], widths[k], KERNEL_SIZE, stride=stride, padding=1, bias=not has_norm)
            )
            if norm_layer is not None:
                layers.append(norm_layer(widths[k]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(nn.Conv2d(widths[-1], 1, KERNEL_SIZE, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

        self.apply(self._init_weights)
        if norm == "spectral":
            for module in self.model:
                if isinstance(module, nn.Conv2d):
                    spectral_norm(module)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def receptive_field(self) -> int:
        """Receptive field of one logit in input pixels, read from the conv layers.

        Returns:
            The side of the square input window one logit sees (equals
            :func:`patchgan_receptive_field` of ``n_layers``).
        """
        field = 1
        for conv in reversed([m for m in self.model.modules() if isinstance(m, nn.Conv2d)]):
            field = (field - 1) * conv.stride[0] + conv.kernel_size[0]
        return field

    def forward(self, maps: Tensor, views: Tensor | None = None) -> Tensor:
        """Score patches of the map stack.

        Args:
            maps: (B, in_channels, H, W), the maps concatenated in ``PBR_MAPS`` order.
            views: (B, V, 3, H_v, W_v) input views; required when ``conditional``, ignored
                otherwise. Resized (bilinear) to (H, W) when the decoder super-resolves.

        Returns:
            (B, 1, h, w) patch logits (no sigmoid).
        """
        dims = check_shape(maps, "B C H W", "discriminator maps", C=self.in_channels)
        height, width = dims["H"], dims["W"]
        x = maps
        if self.conditional:
            if views is None:
                raise ValueError(
                    "discriminator: conditional=true needs the views: call discriminator(maps, views)"
                )
            check_shape(views, "B V 3 h w", "discriminator views", B=dims["B"], V=self.num_views)
            flat = views.flatten(1, 2)  # (B, 3V, h, w)
            if flat.shape[-2:] != (height, width):
                flat = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
            x = torch.cat([maps, flat.to(maps.dtype)], dim=1)  # (B, C + 3V, H, W)
        if height < self.min_input_size or width < self.min_input_size:
            pad_h, pad_w = max(self.min_input_size - height, 0), max(self.min_input_size - width, 0)
            if (height, width) not in self._warned_small:
                self._warned_small.add((height, width))
                log.warning(
                    "discriminator: %dx%d input is smaller than %d px, the minimum for n_layers=%d; "
                    "zero-padding it (each logit then sees the whole image)",
                    height,
                    width,
                    self.min_input_size,
                    self.n_layers,
                )
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return self.model(x)  # (B, 1, h, w)
