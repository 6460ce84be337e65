"""Small building blocks shared by the convolutional encoders and decoders."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

#: Feature-map normalisations for the convolutional encoders and decoders: the valid
#: ``norm`` values and the error message come from this one dict. Instance
#: norm is affine so that it carries parameters like batch norm does.
NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=True),
    "none": lambda channels: nn.Identity(),
}


def check_norm(norm: str, key: str) -> str:
    """Return ``norm`` if it is a key of :data:`NORM_LAYERS`, else raise naming ``key``.

    Args:
        norm: the requested normalisation.
        key: the config key the value came from (for the message), e.g. ``"decoder.norm"``.

    Returns:
        ``norm`` unchanged.
    """
    if norm not in NORM_LAYERS:
        raise ValueError(f"{key}={norm!r}; choose one of {sorted(NORM_LAYERS)}")
    return norm


class ConvNormAct(nn.Sequential):
    """``Conv2d(k x k, 'same' padding) -> norm -> ReLU``; the conv has a bias only without norm.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        norm: a key of :data:`NORM_LAYERS`.
        stride: convolution stride.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, norm: str = "batch", stride: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=norm == "none",
            ),
            NORM_LAYERS[norm](out_channels),
            nn.ReLU(inplace=True),
        )
