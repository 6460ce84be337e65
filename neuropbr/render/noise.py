"""Tileable noise by spectral synthesis: the same seed gives the same pattern at any resolution.

A field is a sum of cosines with integer frequencies (cycles per tile), so it tiles exactly. Its
random Fourier coefficients are drawn band by band (Chebyshev rings ``2^(b-1) < |k| <= 2^b``), each
band from its own seed, so they do not depend on the resolution; a resolution only decides which
bands fit below its Nyquist frequency (the rest are dropped, which is also the right anti-aliasing).
Coefficients live on the half plane of a Hermitian spectrum, evaluated at texel centres with one
inverse real FFT.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from neuropbr.utils.seeding import derive_seed


def _coefficients(seed: int, kmax: int) -> Tensor:
    """Unit complex Gaussians for ``|ky| <= kmax, 0 <= kx <= kmax``: (2 kmax + 1, kmax + 1).

    Entry ``[ky + kmax, kx]``; depends on nothing but ``seed`` and the frequency.
    """
    bands = math.ceil(math.log2(kmax)) if kmax > 1 else 0
    out: Tensor | None = None
    # Outermost band first; each smaller band then overwrites the rectangle inside it, so
    # frequency k ends up with the values of band ceil(log2(|k|)) whatever kmax is.
    for band in range(bands, -1, -1):
        outer = 1 << band
        gen = torch.Generator().manual_seed(derive_seed(seed, "noise-band", band))
        block = torch.view_as_complex(torch.randn(2 * outer + 1, outer + 1, 2, generator=gen))
        if out is None:
            reach = min(outer, kmax)
            out = block[outer - reach : outer + reach + 1, : reach + 1].clone()
        else:
            out[kmax - outer : kmax + outer + 1, : outer + 1] = block
    assert out is not None and out.shape == (2 * kmax + 1, kmax + 1)  # internal invariant
    return out


def _power(kmax: int, frequency: float, beta: float, stretch: float, angle_deg: float) -> Tensor:
    """Spectral power on the half-plane grid ``|ky| <= kmax, 0 <= kx <= kmax``: (2 kmax + 1, kmax + 1).

    With ``f`` the frequency relative to the base frequency: ``f^4`` below it (no large-scale
    drift), ``f^-beta`` above it (beta = 2 is fractal Brownian motion). ``stretch > 1`` counts
    frequencies along ``angle_deg`` ``stretch`` times higher, which elongates features along that
    direction (brushed metal, wood fibres).
    """
    ky = torch.arange(-kmax, kmax + 1, dtype=torch.float32)[:, None]
    kx = torch.arange(0, kmax + 1, dtype=torch.float32)[None, :]
    theta = math.radians(angle_deg)
    # image rows grow downwards, so a counter-clockwise angle turns towards -ky
    along = kx * math.cos(theta) - ky * math.sin(theta)
    across = kx * math.sin(theta) + ky * math.cos(theta)
    along = along * stretch
    f2 = (along * along + across * across) * (1.0 / (frequency * frequency))
    return torch.where(f2 < 1.0, f2 * f2, f2.clamp(min=1e-12) ** (-beta / 2.0))


@functools.lru_cache(maxsize=1024)
def _total_power(
    max_frequency: int, frequency: float, beta: float, stretch: float, angle_deg: float
) -> float:
    """Power of the full field summed over the half plane (kx > 0, and kx = 0 with ky > 0).

    Cached: materials reuse the same few field settings, and at high ``max_frequency`` this sum
    costs more than the field itself.
    """
    full = _power(max_frequency, frequency, beta, stretch, angle_deg)
    return float(full[:, 1:].sum() + full[max_frequency + 1 :, 0].sum())


def periodic_noise(
    seed: int,
    resolution: int,
    *,
    frequency: float = 4.0,
    beta: float = 2.0,
    max_frequency: int | None = None,
    stretch: float = 1.0,
    angle_deg: float = 0.0,
) -> Tensor:
    """A tileable, zero-mean, unit-variance noise field.

    Args:
        seed: the field's seed (the same seed gives the same field at every resolution).
        resolution: side R of the square output.
        frequency: base frequency in cycles per tile (features about ``1 / frequency`` wide).
        beta: spectral slope above the base frequency (larger = smoother).
        max_frequency: highest frequency in cycles per tile (default ``32 * frequency``, at most
            256); frequencies at or above R / 2 are dropped at low resolutions.
        stretch: anisotropy (1 = isotropic; 10 = streaks ten times longer than wide).
        angle_deg: direction of the streaks, counter-clockwise from +x (image right).

    Returns:
        (R, R) float32 field; mean 0, and variance 1 over the ensemble of seeds at resolutions
        that keep every frequency (less when high frequencies are dropped).
    """
    if resolution < 2:
        raise ValueError(f"periodic_noise: resolution={resolution}, expected >= 2")
    if frequency <= 0:
        raise ValueError(f"periodic_noise: frequency={frequency}, expected > 0")
    max_frequency = int(min(256, 32 * frequency)) if max_frequency is None else int(max_frequency)
    if max_frequency < 1:
        raise ValueError(f"periodic_noise: max_frequency={max_frequency}, expected >= 1")
    kmax = max(1, min(max_frequency, (resolution - 1) // 2))  # strictly below Nyquist

    # Field = sum over the half plane of 2 Re(c_k e^{ikx}); with unit complex Gaussians c_k each
    # term has variance 4 power_k, so scale by 1 / (2 sqrt(total power of the full field)).
    total = _total_power(max_frequency, float(frequency), float(beta), float(stretch), float(angle_deg))
    power = _power(kmax, frequency, beta, stretch, angle_deg)
    spectrum = _coefficients(seed, kmax) * (power.sqrt() * (0.5 / math.sqrt(total)))
    # The kx = 0 column must be Hermitian on its own (ky and -ky conjugate), with no DC term.
    column = spectrum[:, 0]
    column[:kmax] = column[kmax + 1 :].flip(0).conj()
    column[kmax] = 0
    # Texel centres sit half a texel in: shift every frequency's phase by pi (kx + ky) / R.
    k = torch.arange(-kmax, kmax + 1, dtype=torch.float32)
    spectrum = spectrum * torch.polar(torch.ones_like(k), math.pi * k / resolution)[:, None]
    spectrum = spectrum * torch.polar(torch.ones(kmax + 1), math.pi * k[kmax:] / resolution)[None, :]

    half = torch.zeros(resolution, resolution // 2 + 1, dtype=torch.complex64)
    half[: kmax + 1, : kmax + 1] = spectrum[kmax:]  # ky >= 0
    half[resolution - kmax :, : kmax + 1] = spectrum[:kmax]  # ky < 0 wraps to the bottom rows
    # irfft2 doubles nothing: it evaluates sum over the full plane of H_k e^{ikx} with H Hermitian,
    # i.e. each kx > 0 term and its mirror: exactly 2 Re(c_k e^{ikx}).
    return torch.fft.irfft2(half, s=(resolution, resolution), norm="forward")


def smoothstep(edge0: float, edge1: float, x: Tensor) -> Tensor:
    """Hermite step from 0 at ``edge0`` to 1 at ``edge1`` (``edge0 > edge1`` steps down)."""
    t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def uv_grid(resolution: int) -> tuple[Tensor, Tensor]:
    """Texel-centre texture coordinates in [0, 1): ``(u, v)``, each (R, R); u along columns, v down rows."""
    t = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    v, u = torch.meshgrid(t, t, indexing="ij")
    return u, v
