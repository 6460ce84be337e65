"""Helpers of the model tests: tiny model kwargs, a loss that reaches every output, grad checks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

#: timm resnet18 with one block per stage, widths 8-32 and a deep stem of width 8 (~34k params).
#: ``zero_init_last=False``: timm zero-initialises each block's last BN scale, which leaves the
#: block's other parameters with an exactly zero gradient at init (grad-flow tests would fail).
TINY_RESNET: dict[str, object] = {
    "layers": [1, 1, 1, 1],
    "channels": [8, 16, 24, 32],
    "stem_type": "deep",
    "stem_width": 8,
    "zero_init_last": False,
}


def projection_loss(outputs: Tensor | Iterable[Tensor] | dict[str, Tensor], seed: int = 0) -> Tensor:
    """Sum of each output times a fixed random tensor of its shape.

    Unlike ``out.sum()`` this has a non-zero gradient through LayerNorm/softmax/L2-normalisation
    outputs (whose sum is constant), and it is the same on every call with the same shapes.
    """
    if isinstance(outputs, Tensor):
        outputs = [outputs]
    elif isinstance(outputs, dict):
        outputs = [outputs[k] for k in sorted(outputs)]
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64)
    for out in outputs:
        weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        total = total + (out.double() * weights).sum()
    return total


def assert_every_param_has_grad(module: nn.Module, frozen: Iterable[str] = ()) -> None:
    """Every trainable parameter got a finite, non-zero gradient; ``frozen`` names got none."""
    frozen = set(frozen)
    missing = []
    for name, param in module.named_parameters():
        if name in frozen or not param.requires_grad:
            assert param.grad is None, f"{name} is frozen but got a gradient"
            continue
        if param.grad is None or not torch.isfinite(param.grad).all() or param.grad.abs().sum() == 0:
            missing.append(name)
    assert not missing, f"parameters without gradient: {missing}"


def grads_of(module: nn.Module) -> dict[str, Tensor]:
    """Copies of the gradients of ``module``'s parameters, by name."""
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_same_grads(reference: nn.Module, other: nn.Module, atol: float = 1e-6) -> None:
    """The two modules have gradients for the same parameters, equal within ``atol``."""
    expected, actual = grads_of(reference), grads_of(other)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=1e-5, msg=name)
