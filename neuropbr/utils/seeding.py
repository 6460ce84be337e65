"""One seed drives everything random (the config's ``seed``): init, data order, augmentation,
synthetic materials."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (e.g. ``(seed, "split")`` or ``(seed, epoch, index)``).

    Uses a hash rather than arithmetic so nearby inputs give unrelated streams, and rather than
    ``hash()`` so it is the same in every process (PYTHONHASHSEED does not matter).
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
