"""Perceptual loss: L1 between frozen ImageNet VGG16 features of prediction and target.

The weights are never downloaded: they come from a local file (``loss.perceptual_weights``,
a torchvision ``vgg16`` state dict or only its ``features`` part) or from torchvision's own cache
under ``torch.hub.get_dir()``. Without either the loss fails at build time, saying how to make
the file on a machine with internet access.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.vgg import VGG16_Weights, cfgs, make_layers

from neuropbr.losses.precision import autocast_off
from neuropbr.losses.reconstruction import check_map_names, map_pair, map_to_unit_range

logger = logging.getLogger(__name__)

#: Indices in ``vgg16().features`` of the ReLUs whose outputs are compared (relu1_2 .. relu4_3).
VGG16_FEATURE_LAYERS: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: File name torchvision gives the ImageNet VGG16 weights in its hub cache.
VGG16_CACHE_NAME = Path(VGG16_Weights.IMAGENET1K_V1.url).name

_MAKE_WEIGHTS_HINT = (
    "On a machine with internet access run\n"
    '  python -c "import torch, torchvision; torch.save(torchvision.models.vgg16('
    "weights='IMAGENET1K_V1').features.state_dict(), 'vgg16_features.pth')\"\n"
    "copy the file here and pass loss.perceptual_weights=/path/to/vgg16_features.pth "
    "(or switch the term off with loss.weights.perceptual=0)."
)


def resolve_vgg16_weights(weights_path: str | Path | None) -> Path:
    """The VGG16 weights file to load: ``weights_path``, else torchvision's cached download.

    Args:
        weights_path: ``loss.perceptual_weights``; None looks in ``torch.hub.get_dir()/checkpoints``.

    Raises:
        FileNotFoundError: the given file does not exist, or none was given and torchvision has
            no cached copy (we never download); the message says how to produce the file.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"loss.perceptual_weights={str(weights_path)!r}: no such file. {_MAKE_WEIGHTS_HINT}"
            )
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_CACHE_NAME
    if cached.is_file():
        return cached
    raise FileNotFoundError(
        "The perceptual loss (loss.weights.perceptual > 0) needs ImageNet VGG16 weights: "
        f"loss.perceptual_weights is not set and torchvision has no cached copy at {cached}. "
        f"NeuroPBR never downloads weights. {_MAKE_WEIGHTS_HINT}"
    )


def load_vgg16_features(weights_path: str | Path | None, last_layer: int = 22) -> nn.Sequential:
    """``vgg16().features[: last_layer + 1]`` with ImageNet weights from a local file, frozen.

    Accepts a full torchvision ``vgg16`` state dict (``features.0.weight``, ...,
    ``classifier.*``) or a features-only one (``0.weight``, ...); keys past ``last_layer`` and the
    classifier are ignored.

    Args:
        weights_path: see :func:`resolve_vgg16_weights`.
        last_layer: index of the last ``features`` layer kept.

    Returns:
        The truncated feature stack in eval mode with ``requires_grad=False`` everywhere.

    Raises:
        FileNotFoundError: see :func:`resolve_vgg16_weights`.
        ValueError: the file is not a VGG16 state dict (names the missing keys).
    """
    path = resolve_vgg16_weights(weights_path)
    features = make_layers(cfgs["D"])[: last_layer + 1]  # the layers of vgg16().features, no classifier
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"loss.perceptual_weights={str(path)!r}: cannot read a state dict ({error}). "
            f"Expected a torchvision vgg16 (or vgg16().features) state dict. {_MAKE_WEIGHTS_HINT}"
        ) from error
    if not isinstance(state, Mapping):
        raise ValueError(
            f"loss.perceptual_weights={str(path)!r}: expected a state dict, got {type(state).__name__}"
        )
    if any(key.startswith("features.") for key in state):
        state = {
            key.removeprefix("features."): value
            for key, value in state.items()
            if key.startswith("features.")
        }
    expected = features.state_dict().keys()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(
            f"loss.perceptual_weights={str(path)!r} is not a VGG16 state dict: missing {missing}; "
            "expected the keys of torchvision's vgg16() ('features.0.weight', ...) or of "
            "vgg16().features ('0.weight', ...)."
        )
    try:
        features.load_state_dict({key: state[key] for key in expected})
    except RuntimeError as error:
        raise ValueError(
            f"loss.perceptual_weights={str(path)!r}: shapes do not match VGG16: {error}"
        ) from error
    logger.info("Perceptual loss: VGG16 features loaded from %s", path)
    return features.eval().requires_grad_(False)


class VGG16Features(nn.Module):
    """Frozen VGG16 activations at relu1_2, relu2_2, relu3_3 and relu4_3, ImageNet-normalised inside.

    The network has no batch norm or dropout, so train/eval mode does not change its output.

    Args:
        weights_path: see :func:`resolve_vgg16_weights`.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.taps = sorted(VGG16_FEATURE_LAYERS.values())
        self.features = load_vgg16_features(weights_path, last_layer=self.taps[-1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> list[Tensor]:
        """Feature maps of an image.

        Args:
            image: (B, 3, H, W) or (B, 1, H, W) (repeated to RGB) in [0, 1]; computed in float32.

        Returns:
            Four tensors: (B, 64, H, W), (B, 128, H/2, W/2), (B, 256, H/4, W/4), (B, 512, H/8, W/8).
        """
        x = image.float()  # the weights are float32; float64 inputs are computed in float32 too
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        outputs = []
        with autocast_off(x):
            for index, layer in enumerate(self.features):
                x = layer(x)
                if index in self.taps:
                    outputs.append(x)
        return outputs


def perceptual_loss(pred: Tensor, target: Tensor, extractor: VGG16Features) -> Tensor:
    """Mean over VGG16 layers of the mean absolute feature difference.

    Args:
        pred: (B, 1 or 3, H, W) image in [0, 1]; H, W >= 8.
        target: image of the same shape; no gradient flows into it.
        extractor: the frozen feature network.

    Returns:
        Scalar; 0 for identical images.
    """
    pred_features = extractor(pred)
    with torch.no_grad():
        target_features = extractor(target)
    per_layer = [(p - t).abs().mean() for p, t in zip(pred_features, target_features)]
    return torch.stack(per_layer).mean()


class PerceptualLoss(nn.Module):
    """:func:`perceptual_loss` averaged over the chosen maps (normals encoded to [0, 1]).

    The VGG16 weights are parameters of this module (so ``.to(device)`` moves them) with
    ``requires_grad=False``: they are never trained, and no gradient is computed for them.

    Args:
        maps: map names (``loss.perceptual_maps``), albedo by default.
        weights_path: ``loss.perceptual_weights``, see :func:`resolve_vgg16_weights`.
    """

    def __init__(self, maps: Sequence[str] = ("albedo",), weights_path: str | Path | None = None) -> None:
        super().__init__()
        if not maps:
            raise ValueError(
                "loss.perceptual_maps is empty; list at least one map or set loss.weights.perceptual=0"
            )
        check_map_names(maps, "loss.perceptual_maps")
        self.maps = list(maps)
        self.extractor = VGG16Features(weights_path)

    def forward(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        """Mean over ``maps`` of the VGG16 feature L1; returns a scalar."""
        values = []
        for name in self.maps:
            p, t = map_pair(pred, target, name)
            values.append(
                perceptual_loss(map_to_unit_range(name, p), map_to_unit_range(name, t), self.extractor)
            )
        return torch.stack(values).mean()
