"""Any timm backbone as a multi-scale encoder (``encoder=resnet18..152``, ``encoder=timm``)."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import Conv2dSame
from timm.models import is_model, parse_model_name, split_model_name_tag
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neuropbr.utils.checks import check_shape

log = logging.getLogger(__name__)


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"1.0.31.dev0"`` -> ``(1, 0, 31)``."""
    parts = []
    for part in version.split(".")[:3]:
        digits = re.match(r"\d+", part)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)


#: timm 1.0.31 stopped checkpointing in-place modules alone in its feature wrappers.
_TIMM_SKIPS_INPLACE_CHECKPOINTS = _version_tuple(timm.__version__) >= (1, 0, 31)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _pretrained_choice(pretrained: Any) -> bool | Path:
    """``False``, ``True`` or a weights path, from a bool, ``"true"``/``"false"``, a path or None."""
    if pretrained is None or isinstance(pretrained, bool):
        return bool(pretrained)
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("true", "false"):
        return pretrained.strip().lower() == "true"
    if isinstance(pretrained, (str, os.PathLike)):
        return Path(pretrained).expanduser()
    raise TypeError(
        f"encoder.pretrained={pretrained!r}; expected false, true or the path of a local weights file"
    )


def _create_backbone(name: str, pretrained: bool | Path, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, features_only=True, ...)`` with the three ``pretrained`` modes."""
    if pretrained is False:
        return timm.create_model(name, pretrained=False, **kwargs)
    if isinstance(pretrained, Path):
        if not pretrained.is_file():
            raise FileNotFoundError(
                f"encoder.pretrained: weights file {str(pretrained)!r} does not exist "
                f"(expected a local state dict of {name!r}: .pth, .bin or .safetensors)"
            )
        try:
            return timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"file": str(pretrained)}, **kwargs
            )
        except Exception as exc:
            raise RuntimeError(
                f"encoder.pretrained: could not load {str(pretrained)!r} into {name!r} with "
                f"{_model_kwargs_text(kwargs)}: {type(exc).__name__}: {exc}"
            ) from exc
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # offline hub, no connection, missing or mismatched weights
        raise RuntimeError(
            f"encoder.pretrained=true: could not load pretrained weights for {name!r} "
            f"({type(exc).__name__}: {exc}). Offline (HF_HUB_OFFLINE=1 or no network) pass a local "
            f"weights file instead: encoder.pretrained=/path/to/{name}.safetensors -- e.g. saved "
            f"on a connected machine with torch.save(timm.create_model({name!r}, "
            f"pretrained=True).state_dict(), '{name}.pth')."
        ) from exc


def _model_kwargs_text(kwargs: dict[str, Any]) -> str:
    extra = {k: v for k, v in kwargs.items() if k != "features_only"}
    return f"encoder.model_kwargs={extra}" if extra else "the default architecture"


def _find_module(model: nn.Module, dotted: str) -> nn.Module | None:
    """The submodule named ``dotted`` in ``model``; timm's feature wrappers flatten nested names
    (``stem.0`` becomes ``stem_0``), so names are compared with dots and underscores unified."""
    wanted = dotted.replace(".", "_")
    for module_name, module in model.named_modules():
        if module_name.replace(".", "_") == wanted:
            return module
    return None


def _halve_stem_stride(backbone: nn.Module, name: str) -> None:
    """Halve the stride of the backbone's first conv (2 -> 1 for resnet/efficientnet/mobilenet,
    4 -> 2 for convnext's patchify stem), keeping ``out = in / new_stride``."""
    first_conv = (getattr(backbone, "pretrained_cfg", None) or {}).get("first_conv")
    module = _find_module(backbone, first_conv) if first_conv else None
    if module is not None and not isinstance(module, nn.Conv2d):  # e.g. a deep stem (Sequential)
        module = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if module is None:
        module = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    if module is None or any(s % 2 for s in module.stride):
        stride = None if module is None else tuple(module.stride)
        raise ValueError(
            f"encoder.stem_stride=1: {name!r} has no first conv with an even stride to halve "
            f"(first conv {first_conv!r}, stride {stride}); use encoder.stem_stride=2"
        )
    assert isinstance(module, nn.Conv2d)
    new_stride = tuple(s // 2 for s in module.stride)
    module.stride = new_stride
    if not isinstance(module, Conv2dSame) and not isinstance(module.padding, str):
        # out = floor((in + 2p - k) / s) + 1 == in / s  <=>  2p in [k - s, k)
        module.padding = tuple(math.ceil((k - s) / 2) for k, s in zip(module.kernel_size, new_stride))


class TimmEncoder(nn.Module):
    """A timm backbone built with ``features_only``; channels and reductions are read from it.

    Follows :class:`~neuropbr.models.contracts.Encoder`. Inputs in [0, 1] are normalised inside
    with the backbone's pretrained mean/std (ImageNet for the resnets).

    Args:
        name: any timm model that supports ``features_only`` (``resnet50``, ``convnext_tiny``,
            ``efficientnet_b3``, ``mobilenetv3_large_100``, ...).
        pretrained: ``False`` (random init), ``True`` (download from the hub; offline this fails
            at once, naming the option) or the path of a local weights file (loaded offline).
        stem_stride: 2 keeps the backbone's stem; 1 halves the stride of its first conv (the
            guide's ``encoder_stride=1``), so every level has twice the resolution (for a stride-2
            stem the stem then runs at full resolution).
        freeze_backbone: freeze the stem and the stages up to the second-deepest feature level
            (the guide's "freeze early layers, fine-tune later ones").
        freeze_bn: batch-norm layers stay in eval mode (running statistics frozen) and their
            affine parameters get no gradient, even when the encoder is in train mode.
        grad_checkpointing: recompute activations in the backward pass (timm's per-stage
            checkpointing where the backbone supports it, else the whole backbone as one segment).
        out_indices: feature levels to return (default: all the backbone has).
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. tiny widths in tests).
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool | str | os.PathLike[str] = False,
        stem_stride: int = 2,
        freeze_backbone: bool = False,
        freeze_bn: bool = False,
        grad_checkpointing: bool = False,
        out_indices: Sequence[int] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(
                f"encoder.stem_stride={stem_stride}; expected 2 (the backbone's own stem) or 1 "
                "(halve the first conv's stride: every level at twice the resolution)"
            )
        source, model_name = parse_model_name(name)
        if source is None and not is_model(split_model_name_tag(model_name)[0]):
            raise ValueError(
                f"encoder.name={name!r} is not a timm model; list candidates with "
                f"timm.list_models('{name[:4]}*')"
            )
        kwargs: dict[str, Any] = dict(model_kwargs or {})
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.name = name
        self.backbone = _create_backbone(name, _pretrained_choice(pretrained), kwargs)
        if stem_stride == 1:
            _halve_stem_stride(self.backbone, name)

        cfg = getattr(self.backbone, "pretrained_cfg", {}) or {}
        mean = torch.tensor(cfg.get("mean", _IMAGENET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", _IMAGENET_STD), dtype=torch.float32).view(1, 3, 1, 1)
        # Not persistent: they are a property of the backbone, not trained state.
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

        # Some backbones (e.g. mambaout) return channels-last features; the contract is NCHW.
        output_fmt = getattr(self.backbone, "output_fmt", "NCHW")
        self._channels_last = getattr(output_fmt, "value", output_fmt) == "NHWC"
        self.out_channels, self.reductions = self._probe()

        self.freeze_bn = freeze_bn
        self._batch_norms = [
            m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        if freeze_backbone:
            self._freeze_early_layers(pretrained)
        if freeze_bn:
            if not self._batch_norms:
                log.info("encoder.freeze_bn: %s has no batch-norm layers; nothing to freeze", name)
            for bn in self._batch_norms:
                bn.requires_grad_(False)
                bn.eval()

        self.grad_checkpointing = grad_checkpointing
        # timm's own per-stage checkpointing where the feature wrapper has it.
        self._timm_checkpointing = hasattr(self.backbone, "set_grad_checkpointing")
        if grad_checkpointing and self._timm_checkpointing:
            getattr(self.backbone, "set_grad_checkpointing")(True)  # noqa: B009 -- not on every nn.Module
            if not _TIMM_SKIPS_INPLACE_CHECKPOINTS:
                # The feature wrapper checkpoints each top-level module alone; before 1.0.31 an
                # in-place activation too (ResNet's stem ReLU), which modifies the tensor kept for
                # recomputation and fails in backward ("modified by an inplace operation"; seen
                # at 2048 px on an H200 with timm 1.0.29). Out-of-place costs one stem-sized
                # tensor (0.75 GiB at 2048 px, batch 2, 3 views), so only where it is needed.
                for module in self.backbone.children():
                    if getattr(module, "inplace", False) is True:
                        setattr(module, "inplace", False)  # noqa: B010 -- not on every nn.Module

    def _freeze_early_layers(self, pretrained: Any) -> None:
        """The guide's ``freeze_backbone``: freeze the stem and every stage up to the second-deepest
        feature level; the deepest stage (and anything after it) keeps training.

        Parameters are visited in registration order, which is forward order for timm backbones.
        """
        if pretrained is False or pretrained in ("false", None):
            log.warning(
                "encoder.freeze_backbone=true with encoder.pretrained=false: freezing random features"
            )
        names = getattr(self.backbone, "feature_info").module_name()  # noqa: B009 -- timm attribute
        params = list(self.backbone.named_parameters())
        if len(names) < 2:
            frozen = len(params)
        else:
            previous = (names[-2], names[-2].replace(".", "_"))
            owned = [
                i for i, (n, _) in enumerate(params) if any(n == p or n.startswith(p + ".") for p in previous)
            ]
            frozen = owned[-1] + 1 if owned else 0
        for _, param in params[:frozen]:
            param.requires_grad_(False)
        log.info(
            "encoder.freeze_backbone: %d of %d backbone tensors frozen (up to %s); the deepest stage trains",
            frozen, len(params), names[-2] if len(names) >= 2 else "all",
        )  # fmt: skip

    @torch.no_grad()
    def _probe(self) -> tuple[list[int], list[int]]:
        """Channels and reductions of every level, measured with a small forward pass (stays
        correct after ``stem_stride=1`` and for backbones whose feature_info is approximate)."""
        info_reductions = getattr(self.backbone, "feature_info").reduction()  # noqa: B009 -- timm attribute
        size = 2 * max(info_reductions)
        was_training = self.backbone.training
        self.backbone.eval()  # no running-stat updates from the probe
        param = next(self.backbone.parameters())
        probe = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
        features = self._to_nchw(self.backbone(probe))  # [(1, C_i, size / r_i, size / r_i)]
        self.backbone.train(was_training)
        channels = [int(f.shape[1]) for f in features]
        reductions = [size // int(f.shape[-1]) for f in features]
        return channels, reductions

    def _to_nchw(self, features: list[Tensor]) -> list[Tensor]:
        if self._channels_last:
            return [f.permute(0, 3, 1, 2) for f in features]  # (N, h, w, C) -> (N, C, h, w)
        return list(features)

    def train(self, mode: bool = True) -> TimmEncoder:
        """Set train/eval mode; with ``freeze_bn`` the batch-norm layers always stay in eval."""
        super().train(mode)
        if self.freeze_bn:
            for bn in self._batch_norms:
                bn.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        """Extract the feature pyramid.

        Args:
            x: (N, 3, H, W) in [0, 1].

        Returns:
            ``[(N, out_channels[i], H / reductions[i], W / reductions[i])]``, finest first.
        """
        check_shape(x, "N 3 H W", "encoder input")
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)  # (N, 3, H, W)
        if self.grad_checkpointing and not self._timm_checkpointing and torch.is_grad_enabled():
            return self._to_nchw(checkpoint(self.backbone, x, use_reentrant=False))
        return self._to_nchw(self.backbone(x))
