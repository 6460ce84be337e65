"""Small tensor helpers used on hot paths."""

from __future__ import annotations

from torch import Tensor


def unit_vectors(x: Tensor, dim: int = 1, eps: float = 1e-6) -> Tensor:
    """``x / max(||x||, eps)`` along ``dim``: ``F.normalize`` with the sum spelt out.

    torch's CPU norm kernel reduces over a short channel dimension (3 for normals) ~50x slower
    than a plain sum of squares; on the GPU both are the same fused elementwise work.
    """
    return x / (x * x).sum(dim=dim, keepdim=True).sqrt().clamp_min(eps)
