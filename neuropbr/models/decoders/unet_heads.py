"""U-Net decoder with a super-resolution stage and one head per PBR map (``decoder=unet_heads``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neuropbr.maps import PBR_CHANNELS
from neuropbr.models.layers import NORM_LAYERS, ConvNormAct, check_norm
from neuropbr.utils.checks import check_shape
from neuropbr.utils.tensors import unit_vectors

_SR_SCALES = (1, 2, 4)


#: Output activation of each map ([0, 1] maps, unit normals: the ranges of neuropbr/maps.py).
OUTPUT_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "albedo": torch.sigmoid,
    "roughness": torch.sigmoid,
    "metallic": torch.sigmoid,
    "normal": unit_vectors,
}


class UpBlock(nn.Module):
    """Bilinear upsampling to the skip's size, 3x3 conv-norm-ReLU, concat the skip, two 3x3
    conv-norm-ReLU (the original stack's up-block).

    Args:
        in_channels: channels of the coarser input.
        skip_channels: channels of the skip.
        out_channels: output channels.
        norm: a key of :data:`~neuropbr.models.layers.NORM_LAYERS`.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.up_conv = ConvNormAct(in_channels, out_channels, 3, norm)
        self.fuse = nn.Sequential(
            ConvNormAct(out_channels + skip_channels, out_channels, 3, norm),
            ConvNormAct(out_channels, out_channels, 3, norm),
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """Args: x: (B, C_in, h, w); skip: (B, C_skip, 2h, 2w). Returns: (B, C_out, 2h, 2w)."""
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)  # (B, C_in, 2h, 2w)
        x = self.up_conv(x)  # (B, C_out, 2h, 2w)
        return self.fuse(torch.cat([x, skip], dim=1))  # (B, C_out, 2h, 2w)


class PixelShuffleStep(nn.Sequential):
    """One x2 super-resolution step of the original SR head: 3x3 conv C -> 4C, norm, ReLU,
    PixelShuffle(2), 3x3 conv C -> C/2, norm, ReLU, 1x1 conv C/2 -> C (+ norm, ReLU unless last).

    The last step's 1x1 conv has no bias, as in the original: the 1x1 heads that follow carry one.

    Args:
        channels: C, the SR width (even).
        norm: a key of :data:`~neuropbr.models.layers.NORM_LAYERS`.
        last: whether the heads follow directly.
    """

    def __init__(self, channels: int, norm: str, last: bool) -> None:
        layers: list[nn.Module] = [
            ConvNormAct(channels, 4 * channels, 3, norm),
            nn.PixelShuffle(2),
            ConvNormAct(channels, channels // 2, 3, norm),
            nn.Conv2d(channels // 2, channels, kernel_size=1, bias=not last and norm == "none"),
        ]
        if not last:
            layers += [NORM_LAYERS[norm](channels), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class SuperResolution(nn.Module):
    """Brings the finest decoder level to the output size with PixelShuffle-x2 steps.

    ``factor = 1``: a plain 3x3 conv-norm-ReLU block. Otherwise a shared 3x3 conv-norm-ReLU
    (in -> sr_channels) followed by ``log2(factor)`` :class:`PixelShuffleStep`.

    Args:
        in_channels: channels of the finest decoder level.
        channels: SR width (``sr_channels``).
        factor: total upsampling factor, a power of 2.
        norm: a key of :data:`~neuropbr.models.layers.NORM_LAYERS`.
    """

    def __init__(self, in_channels: int, channels: int, factor: int, norm: str) -> None:
        super().__init__()
        steps = int(factor).bit_length() - 1  # log2(factor)
        self.factor = factor
        self.stem = ConvNormAct(in_channels, channels, 3, norm)
        self.steps = nn.Sequential(
            *(PixelShuffleStep(channels, norm, last=i == steps - 1) for i in range(steps))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, C_in, h, w). Returns: (B, sr_channels, h * factor, w * factor)."""
        return self.steps(self.stem(x))


class GlobalContext(nn.Module):
    """Adds what the whole image says to every position of a feature map.

    How rough or metallic a material is, or how light its albedo, shows in a few places (a
    highlight, a dark metal patch) that a convolution's receptive field need not reach from every
    texel. The features' spatial mean and max go through a small MLP into one offset per channel,
    added everywhere: the global track of rendering-aware SVBRDF networks. The last layer starts
    at zero, so a new block passes its input through unchanged.

    Args:
        channels: C of the (B, C, h, w) features.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        last = nn.Linear(channels, channels)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(2 * channels, channels), nn.SiLU(), last)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x: (B, C, h, w). Returns: (B, C, h, w)."""
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return x + self.mlp(pooled)[:, :, None, None]


def photo_logits(photos: Tensor, size: tuple[int, int] | torch.Size, margin: float = 0.01) -> Tensor:
    """The albedo head's starting point with ``albedo_from_photos``: the logit of the photos' mean.

    Args:
        photos: (B, 3, H, W) in [0, 1].
        size: output (H', W'); the photos are resized bilinearly when it differs (``sr_scale``).
        margin: clamp to ``[margin, 1 - margin]`` first, so black or blown-out texels stay finite
            and a correction can still move them.

    Returns:
        (B, 3, H', W').
    """
    if photos.shape[-2:] != tuple(size):
        photos = F.interpolate(photos, size=tuple(size), mode="bilinear", align_corners=False)
    photos = photos.clamp(margin, 1.0 - margin)
    return torch.log(photos) - torch.log1p(-photos)  # logit, in ops every export target has


class UNetHeadsDecoder(nn.Module):
    """U-Net trunk over skips fused across views, super-resolution stage, one 1x1 head per map.

    Follows :class:`~neuropbr.models.contracts.Decoder`. The trunk climbs from the fused
    bottleneck through one :class:`UpBlock` per skip (deepest first); the
    :class:`SuperResolution` stage then upsamples the finest level (reduction
    ``r0 = skip_reductions[0]``) by ``r0 * sr_scale`` to ``(H * sr_scale, W * sr_scale)``. Heads:
    albedo 3 ch sigmoid, roughness 1 ch sigmoid, metallic 1 ch sigmoid, normal 3 ch L2-normalised.

    Args:
        in_channels: channels of the fused bottleneck (``fusion.out_channels``).
        skip_channels: channels of each skip, finest first (``encoder.out_channels[:-1]``).
        skip_reductions: reduction of each skip, finest first (``encoder.reductions[:-1]``).
        bottleneck_reduction: reduction of the bottleneck (``encoder.reductions[-1]``).
        channels: width of each up-block, deepest first; the first ``len(skip_channels)``
            entries are used.
        sr_scale: output resolution / input resolution: 1, 2 or 4.
        sr_channels: width of the super-resolution stage (even).
        norm: ``"batch"``, ``"instance"`` or ``"none"``.
        grad_checkpointing: recompute each up-block and the SR stage in the backward pass.
        global_context: a :class:`GlobalContext` block on the bottleneck and after each up-block.
        albedo_from_photos: the albedo head predicts a correction, in logit space, to the mean
            of the input photos (``albedo_prior`` of :meth:`forward`) instead of the albedo
            itself: it starts at that mean, a strong baseline, and learns what shading to remove.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        skip_reductions: Sequence[int],
        bottleneck_reduction: int,
        channels: Sequence[int] = (256, 128, 64, 64, 32),
        sr_scale: int = 1,
        sr_channels: int = 64,
        norm: str = "batch",
        grad_checkpointing: bool = False,
        global_context: bool = False,
        albedo_from_photos: bool = False,
    ) -> None:
        super().__init__()
        skip_channels, skip_reductions = list(skip_channels), list(skip_reductions)
        channels = [int(c) for c in channels]
        if len(skip_channels) != len(skip_reductions):
            raise ValueError(
                f"decoder: {len(skip_channels)} skip_channels {skip_channels} but "
                f"{len(skip_reductions)} skip_reductions {skip_reductions}"
            )
        reductions = [*skip_reductions, bottleneck_reduction]
        if any(r < 1 or r & (r - 1) for r in reductions) or reductions != sorted(set(reductions)):
            raise ValueError(
                f"decoder: encoder reductions {reductions} must be increasing powers of 2 (finest first)"
            )
        if len(channels) < len(skip_channels) or min(channels, default=1) < 1:
            raise ValueError(
                f"decoder.channels={channels}: the encoder has {len(skip_channels)} skip levels, so it "
                f"needs at least {len(skip_channels)} positive widths (deepest first)"
            )
        if sr_scale not in _SR_SCALES:
            raise ValueError(f"decoder.sr_scale={sr_scale}; expected one of {list(_SR_SCALES)}")
        if sr_channels < 2 or sr_channels % 2:
            raise ValueError(f"decoder.sr_channels={sr_channels}; expected an even width >= 2")
        check_norm(norm, "decoder.norm")
        self.in_channels = in_channels
        self.skip_channels = skip_channels
        self.skip_reductions = skip_reductions
        self.bottleneck_reduction = bottleneck_reduction
        self.sr_scale = sr_scale
        self.grad_checkpointing = grad_checkpointing
        self.albedo_from_photos = albedo_from_photos

        blocks = []
        previous = in_channels
        for skip, width in zip(reversed(skip_channels), channels):  # deepest skip first
            blocks.append(UpBlock(previous, skip, width, norm))
            previous = width
        self.up_blocks = nn.ModuleList(blocks)
        # One block per trunk level (bottleneck, then each up-block's output); identities when off.
        widths = [in_channels, *(block.out_channels for block in blocks)]
        self.global_context = nn.ModuleList(
            GlobalContext(w) if global_context else nn.Identity() for w in widths
        )
        finest_reduction = skip_reductions[0] if skip_reductions else bottleneck_reduction
        self.sr = SuperResolution(previous, sr_channels, finest_reduction * sr_scale, norm)
        heads = {name: nn.Conv2d(sr_channels, c, kernel_size=1) for name, c in PBR_CHANNELS.items()}
        # Start from flat normals (+z): a zero-mean random head points half its normals into the
        # surface, and the first epochs would be spent learning which way is up.
        heads["normal"].bias = nn.Parameter(torch.tensor([0.0, 0.0, 1.0]))
        if albedo_from_photos:  # start exactly at the photos' mean: a zero correction
            nn.init.zeros_(heads["albedo"].weight)
            heads["albedo"].bias = nn.Parameter(torch.zeros(PBR_CHANNELS["albedo"]))
        self.heads = nn.ModuleDict(heads)

    def _maybe_checkpoint(self, module: nn.Module, *args: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward(
        self,
        fused: Tensor,
        skips: list[Tensor],
        image_size: tuple[int, int],
        albedo_prior: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Decode the maps.

        Args:
            fused: (B, in_channels, H / bottleneck_reduction, W / bottleneck_reduction).
            skips: ``[(B, skip_channels[i], H / skip_reductions[i], W / skip_reductions[i])]``,
                finest first.
            image_size: (H, W) of the input views, divisible by ``bottleneck_reduction``.
            albedo_prior: (B, 3, H, W) in [0, 1], the mean of the input photos; required with
                ``albedo_from_photos`` (the albedo is a correction to it), ignored without.

        Returns:
            ``{name: (B, PBR_CHANNELS[name], H * sr_scale, W * sr_scale)}`` with output activations.
        """
        height, width = image_size
        if height % self.bottleneck_reduction or width % self.bottleneck_reduction:
            raise ValueError(
                f"decoder: image size {height}x{width} must be divisible by {self.bottleneck_reduction} "
                "(the encoder's bottleneck reduction); resize or crop the views"
            )
        if len(skips) != len(self.skip_channels):
            raise ValueError(f"decoder: expected {len(self.skip_channels)} skips, got {len(skips)}")
        batch = check_shape(
            fused,
            "B C h w",
            "decoder fused",
            C=self.in_channels,
            h=height // self.bottleneck_reduction,
            w=width // self.bottleneck_reduction,
        )["B"]
        for i, (skip, channels, reduction) in enumerate(zip(skips, self.skip_channels, self.skip_reductions)):
            check_shape(
                skip,
                "B C h w",
                f"decoder skip {i}",
                B=batch,
                C=channels,
                h=height // reduction,
                w=width // reduction,
            )

        x = fused  # (B, C, h, w)
        x = self.global_context[0](x)
        for block, skip, context in zip(self.up_blocks, reversed(skips), self.global_context[1:]):
            x = context(self._maybe_checkpoint(block, x, skip))  # (B, C_i, H / r_i, W / r_i)
        x = self._maybe_checkpoint(self.sr, x)  # (B, sr_channels, H * sr_scale, W * sr_scale)
        raw = self._run_heads(x)
        if self.albedo_from_photos:
            if albedo_prior is None:
                raise ValueError(
                    "decoder.albedo_from_photos=true: the decoder needs albedo_prior, the mean of the "
                    "input photos (B, 3, H, W); PBRGenerator passes it"
                )
            check_shape(albedo_prior, "B 3 H W", "decoder albedo_prior", B=batch, H=height, W=width)
            raw["albedo"] = raw["albedo"] + photo_logits(albedo_prior, raw["albedo"].shape[-2:])
        return {name: OUTPUT_ACTIVATIONS[name](out) for name, out in raw.items()}

    def _run_heads(self, x: Tensor) -> dict[str, Tensor]:
        """The four 1x1 heads as one conv with their weights stacked: one pass over the
        full-resolution features instead of four (same parameters, same results).

        Args:
            x: (B, sr_channels, H', W').

        Returns:
            ``{name: (B, PBR_CHANNELS[name], H', W')}`` before the output activations.
        """
        heads: list[nn.Conv2d] = list(self.heads.values())  # type: ignore[arg-type]
        weight = torch.cat([head.weight for head in heads])  # (8, sr_channels, 1, 1)
        bias = torch.cat([head.bias for head in heads if head.bias is not None])  # (8,)
        out = F.conv2d(x, weight, bias)  # (B, 8, H', W')
        return dict(zip(self.heads.keys(), out.split([head.out_channels for head in heads], dim=1)))
