"""Device and mixed-precision policy (``trainer.device``, ``trainer.precision``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(kind: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local rank) when available, else CPU."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "trainer.device=cuda but torch sees no CUDA device; use trainer.device=cpu or auto"
            )
        return torch.device("cuda", local_rank)
    if kind == "cpu":
        return torch.device("cpu")
    raise ValueError(f"trainer.device={kind!r}; choose one of ['auto', 'cpu', 'cuda']")


@dataclass(frozen=True)
class Precision:
    """What ``trainer.precision`` resolved to on this device.

    Attributes:
        name: bf16, fp16 or fp32.
        dtype: the autocast dtype, or None for fp32.
        device_type: "cuda" or "cpu" (autocast's device type).
    """

    name: str
    dtype: torch.dtype | None
    device_type: str

    @property
    def uses_grad_scaler(self) -> bool:
        """fp16 needs loss scaling (its exponent range underflows small gradients); bf16 does not."""
        return self.dtype is torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler (one per optimizer: G and D losses have very different scales)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_grad_scaler)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU.

    On CPU, bf16 and fp16 autocast run when asked for explicitly (useful to exercise the AMP
    path without a GPU) but are not chosen automatically: most CPUs lack fast low-precision
    matmuls and would run slower than fp32.
    """
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name not in _DTYPES:
        raise ValueError(f"trainer.precision={name!r}; choose one of ['auto', 'bf16', 'fp16', 'fp32']")
    precision = Precision(name=name, dtype=_DTYPES[name], device_type=device.type)
    log.info("precision: %s on %s", name, device)
    return precision
