"""Numerical precision helpers shared by the losses and the metrics.

Losses and metrics compute in float32 even under fp16/bf16 autocast: logs, SSIM's variance
differences and squared errors lose most of their digits in 16-bit floats. float64 inputs stay
float64 so that ``torch.autograd.gradcheck`` sees exact arithmetic.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """``x`` as float32, or unchanged when it is already float32 or float64."""
    return x if x.dtype == torch.float64 else x.float()


def autocast_off(x: Tensor) -> AbstractContextManager[None]:
    """A context that disables autocast on ``x``'s device type.

    Needed around convolutions (SSIM's Gaussian window, VGG): autocast would otherwise run them
    in 16 bits even on float32 inputs.
    """
    return torch.autocast(device_type=x.device.type, enabled=False)
