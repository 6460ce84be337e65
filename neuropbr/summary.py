"""``python -m neuropbr.summary``: parameter counts, forward FLOPs and activation-memory estimates
of a model preset.

Nothing is allocated: the networks are built on the ``meta`` device, FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` and activation memory is the size of the tensors
autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), so a
2048 px estimate of the largest preset runs in seconds on a laptop.

Usage (any training override works, the config is ``conf/summary.yaml`` = ``train`` + ``summary``)::

    python -m neuropbr.summary
    python -m neuropbr.summary encoder=resnet101 fusion=vit data.resolution=1024
    python -m neuropbr.summary experiment=quick_test summary.resolutions=[512,1024,2048]
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from neuropbr.build import build_discriminator, build_generator
from neuropbr.config import config_dir, register_configs
from neuropbr.maps import PBR_TOTAL_CHANNELS
from neuropbr.models.generator import PBRGenerator

log = logging.getLogger(__name__)

#: Bytes per parameter of fp32 training state: weight + gradient + two Adam moments.
TRAIN_STATE_BYTES_PER_PARAM = 16
_GIB = 1024**3


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once).

    Args:
        module: any module, also on the ``meta`` device.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The parameter count.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class CostEstimate:
    """Cost of one forward pass.

    Attributes:
        flops: forward FLOPs (a multiply-add counts 2).
        activation_bytes: bytes of the tensors saved for the backward pass (weights excluded):
            the activation memory a training step holds between forward and backward. With
            gradient checkpointing only the segments' inputs are kept; recomputing one segment
            in the backward pass briefly adds that segment's activations on top.
    """

    flops: int
    activation_bytes: int


class _FusedAttention(TorchFunctionMode):
    """Routes ``F.scaled_dot_product_attention`` on meta tensors to the memory-efficient kernel.

    On meta tensors torch would pick the math kernel, which saves the (T x T) attention matrix
    per head; the flash/memory-efficient kernels used on GPU save only q, k, v, the output and
    a log-sum-exp per query, and the estimate should reflect those. FLOPs are the same.
    """

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and args[0].device.type == "meta":
            query, key, value = args[:3]
            return torch.ops.aten._scaled_dot_product_efficient_attention(
                query, key, value, None, True, kwargs.get("dropout_p", 0.0), False
            )[0]
        return func(*args, **kwargs)


def estimate_cost(module: nn.Module, forward: Callable[[], Any]) -> CostEstimate:
    """FLOPs and saved-activation bytes of ``forward()``, a training-mode forward of ``module``.

    Run it on ``meta`` tensors to allocate nothing. Tensors saved for backward are counted once
    per storage; storages of ``module``'s parameters and buffers are not activations and are
    left out.

    Args:
        module: the network ``forward`` runs (to exclude its weights).
        forward: a zero-argument callable that runs the forward pass.

    Returns:
        A :class:`CostEstimate`.
    """
    # Storage identity (_cdata) is the only handle meta tensors have: they share data_ptr 0.
    weights = {t.untyped_storage()._cdata for t in [*module.parameters(), *module.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in weights:
            saved[storage._cdata] = storage.nbytes()
        return tensor

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _FusedAttention():
        forward()
    return CostEstimate(flops=int(counter.get_total_flops()), activation_bytes=sum(saved.values()))


def build_on_meta(cfg: DictConfig) -> tuple[PBRGenerator, nn.Module | None]:
    """The generator and discriminator of ``cfg``, with meta tensors (no memory, no weights).

    ``encoder.pretrained`` is ignored: weights do not change the counts.

    Args:
        cfg: a composed training (or summary) config.

    Returns:
        ``(generator, discriminator or None)``, both in train mode.
    """
    cfg = copy.deepcopy(cfg)
    if cfg.encoder.get("pretrained", False) is not False:
        log.info(
            "summary: encoder.pretrained=%s ignored (weights do not change the counts)",
            cfg.encoder.pretrained,
        )
        with open_dict(cfg):
            cfg.encoder.pretrained = False
    with torch.device("meta"):
        generator = build_generator(cfg)
        discriminator = build_discriminator(cfg)
    return generator, discriminator


@dataclass
class ResolutionRow:
    """Per-sample costs at one input resolution (batch 1, training mode)."""

    resolution: int
    output_resolution: int
    generator: CostEstimate
    discriminator: CostEstimate | None


@dataclass
class ModelSummary:
    """Parameter counts per component and costs per resolution."""

    title: str
    num_views: int
    params: dict[str, int]
    rows: list[ResolutionRow] = field(default_factory=list)


def summarize(cfg: DictConfig, resolutions: list[int] | None = None, title: str = "") -> ModelSummary:
    """Count parameters and estimate costs of ``cfg``'s generator and discriminator.

    Args:
        cfg: a composed training (or summary) config.
        resolutions: input resolutions (default: ``[cfg.data.resolution]``).
        title: a label for the table (e.g. the selected presets).

    Returns:
        A :class:`ModelSummary`; costs per sample of ``data.num_views`` views at batch 1.
    """
    resolutions = [int(r) for r in (resolutions or [cfg.data.resolution])]
    num_views = int(cfg.data.num_views)
    generator, discriminator = build_on_meta(cfg)
    bottleneck = generator.encoder.reductions[-1]
    bad = [r for r in resolutions if r % bottleneck]
    if bad:
        raise ValueError(
            f"summary.resolutions={resolutions}: {bad} not divisible by {bottleneck}, the encoder's bottleneck reduction"
        )
    components = dict(generator.named_children())  # encoder, fusion, decoder
    params = {name: count_params(module) for name, module in components.items()}
    params["generator"] = count_params(generator)
    if discriminator is not None:
        params["discriminator"] = count_params(discriminator)

    summary = ModelSummary(title=title, num_views=num_views, params=params)
    sr_scale = generator.decoder.sr_scale
    for resolution in resolutions:
        views = torch.empty(1, num_views, 3, resolution, resolution, device="meta")  # (B=1, V, 3, H, W)
        g_cost = estimate_cost(generator, partial(generator, views))
        d_cost = None
        out = resolution * sr_scale
        if discriminator is not None:
            maps = torch.empty(
                1, PBR_TOTAL_CHANNELS, out, out, device="meta", requires_grad=True
            )  # (1, 8, H', W')
            d_cost = estimate_cost(discriminator, partial(discriminator, maps, views))
        summary.rows.append(ResolutionRow(resolution, out, g_cost, d_cost))
    return summary


def format_summary(summary: ModelSummary) -> str:
    """The summary as a plain-text table.

    Args:
        summary: from :func:`summarize`.

    Returns:
        A multi-line string.
    """
    lines = [f"Model summary: {summary.title}".rstrip(), ""]
    lines.append(f"{'component':<14} {'params':>14} {'M':>9}")
    for name, count in summary.params.items():
        lines.append(f"{name:<14} {count:>14,} {count / 1e6:>9.2f}")
    trainable = summary.params["generator"] + summary.params.get("discriminator", 0)
    lines.append(
        f"fp32 weights + grads + Adam state (G + D): {trainable * TRAIN_STATE_BYTES_PER_PARAM / _GIB:.2f} GiB"
    )
    lines += [
        "",
        f"Per sample ({summary.num_views} views, batch 1, training mode): forward GFLOPs and activations "
        "saved for backward (GiB)",
        f"{'input px':>8} {'output px':>9} {'G GFLOPs':>10} {'D GFLOPs':>10} {'G act GiB':>10} {'D act GiB':>10}",
    ]
    for row in summary.rows:
        d_flops = f"{row.discriminator.flops / 1e9:>10.1f}" if row.discriminator else f"{'-':>10}"
        d_act = f"{row.discriminator.activation_bytes / _GIB:>10.2f}" if row.discriminator else f"{'-':>10}"
        lines.append(
            f"{row.resolution:>8} {row.output_resolution:>9} {row.generator.flops / 1e9:>10.1f} {d_flops} "
            f"{row.generator.activation_bytes / _GIB:>10.2f} {d_act}"
        )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="summary")
def _main(cfg: DictConfig) -> None:
    choices = HydraConfig.get().runtime.choices
    title = " ".join(
        f"{group}={choices[group]}"
        for group in ("experiment", "encoder", "fusion", "decoder", "discriminator")
        if choices.get(group) not in (None, "null")
    )
    summary = summarize(cfg, list(cfg.summary.resolutions or []), title=title)
    print(format_summary(summary))  # noqa: T201 -- the CLI's final table


def main() -> None:
    """Entry point of ``python -m neuropbr.summary``."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
