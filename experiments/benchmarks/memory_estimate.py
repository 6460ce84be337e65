"""Estimate the peak GPU memory of one training step from meta tensors (nothing is allocated).

    python experiments/benchmarks/memory_estimate.py --resolution 2048 --batch 2
    python experiments/benchmarks/memory_estimate.py --resolution 2048 --batch 2 --checkpoint encoder fusion

Training state is fp32 weights + gradients + two Adam moments (16 bytes per parameter, G and D).
Activations are the tensors autograd saves, measured with ``neuropbr.models.summary.estimate_cost``
on a bf16 copy of the model (bf16 autocast keeps conv/matmul outputs in bf16; LayerNorm outputs
and the loss stay fp32, a small share at these sizes). With checkpointing, the backward pass
recomputes one segment at a time; its activations come on top (autograd frees each as its
gradient is computed, so the segment's gradients do not double it):

    peak ~ state + G saved + max(D step: real + fake, largest recomputed segment)

An estimate, not a measurement: allocator fragmentation, cuDNN workspaces and loss
intermediates come on top. Against an H200 (default preset, 2048 px, batch 2, bf16, timm
1.0.29; experiments/benchmarks/README.md): no checkpointing 44.0 estimated / 46.7 GiB measured,
encoder + fusion 26.7 / 23.3, everything 19.5 / 18.1.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from torch import nn

from neuropbr.config import config_dir, register_configs
from neuropbr.models.contracts import PBR_TOTAL_CHANNELS
from neuropbr.models.summary import TRAIN_STATE_BYTES_PER_PARAM, build_on_meta, count_params, estimate_cost

_GIB = 1024**3


def _segments(generator: nn.Module, checkpointed: set[str]) -> list[tuple[nn.Module, Callable[..., Any]]]:
    """What the backward pass recomputes one at a time: (first module, the segment's forward)."""
    segments: list[tuple[nn.Module, Callable[..., Any]]] = []
    if "encoder" in checkpointed:
        # timm's feature wrapper checkpoints each top-level module but the first and the last
        # (and, from timm 1.0.31, in-place ones, which neuropbr keeps in-place there)
        children = list(generator.encoder.backbone.children())
        segments += [
            (m, m)
            for i, m in enumerate(children)
            if 0 < i < len(children) - 1 and not getattr(m, "inplace", False)
        ]
    if "fusion" in checkpointed:
        segments += [(m, m) for m in generator.fusion.blocks]
    if "decoder" in checkpointed:
        segments += [(m, m) for m in [*generator.decoder.up_blocks, generator.decoder.sr]]
    return segments


def estimate(overrides: list[str], resolution: int, batch: int, checkpointed: set[str]) -> dict[str, Any]:
    """Peak-memory terms in GiB for ``conf/train.yaml`` + ``overrides`` at ``resolution``, ``batch``."""
    register_configs()
    flags = [f"{part}.grad_checkpointing={part in checkpointed}" for part in ("encoder", "fusion", "decoder")]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"data.resolution={resolution}", *flags])
    generator, discriminator = build_on_meta(cfg)
    params = count_params(generator) + (count_params(discriminator) if discriminator is not None else 0)
    generator, discriminator = generator.to(torch.bfloat16), discriminator.to(torch.bfloat16)
    views = torch.empty(
        batch, cfg.data.num_views, 3, resolution, resolution, device="meta", dtype=torch.bfloat16
    )

    inputs: dict[nn.Module, tuple] = {}
    segments = dict(_segments(generator, checkpointed))
    hooks = [
        m.register_forward_pre_hook(lambda module, args: inputs.setdefault(module, args)) for m in segments
    ]
    g_saved = estimate_cost(generator, lambda: generator(views)).activation_bytes
    for hook in hooks:
        hook.remove()
    largest = 0
    with torch.enable_grad():
        for module, args in inputs.items():
            run = segments[module]
            saved = estimate_cost(
                module, lambda r=run, a=args: r(*[x.requires_grad_() for x in a])
            ).activation_bytes
            largest = max(largest, saved)
    d_saved = 0
    if discriminator is not None:
        maps = torch.empty(
            batch, PBR_TOTAL_CHANNELS, resolution, resolution, device="meta", dtype=torch.bfloat16
        )
        d_saved = estimate_cost(discriminator, lambda: discriminator(maps, views)).activation_bytes
    state = params * TRAIN_STATE_BYTES_PER_PARAM
    peak = state + g_saved + max(2 * d_saved, largest)
    return {
        "params_m": params / 1e6,
        "state_gib": state / _GIB,
        "generator_saved_gib": g_saved / _GIB,
        "discriminator_saved_gib_per_call": d_saved / _GIB,
        "largest_recomputed_segment_gib": largest / _GIB,
        "peak_estimate_gib": peak / _GIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--checkpoint", nargs="*", default=["encoder", "fusion", "decoder"])
    parser.add_argument("overrides", nargs="*", help="training overrides, e.g. experiment=high_quality")
    args = parser.parse_args()
    result = estimate(args.overrides, args.resolution, args.batch, set(args.checkpoint))
    print(  # noqa: T201 -- the script's result
        f"{' '.join(args.overrides) or 'default preset'} at {args.resolution} px, batch {args.batch}, "
        f"checkpointing {sorted(args.checkpoint) or 'off'}, bf16 activations:"
    )
    for key, value in result.items():
        print(f"  {key:<34} {value:8.2f}")  # noqa: T201


if __name__ == "__main__":
    main()
