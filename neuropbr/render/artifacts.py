"""Dirty-capture artifacts: seeded functions with a strength, applied at three stages.

- ``surface``: dirt on the material itself, applied to the maps before shading, so every view of a
  sample sees the same dirt under its own light (smudges, fingerprints, scratches, dust).
- ``linear``: optics and sensor, applied to linear radiance after exposure (glare, defocus,
  vignetting, exposure and white-balance errors, sensor noise).
- ``display``: applied to the final sRGB image (JPEG compression).

Every function takes ``(x, strength, seed)``: ``x`` is a maps dict of (B, C, H, W) tensors or a
(B, 3, H, W) image; ``strength`` >= 0 scales the effect (0 returns ``x`` unchanged, 1 is a
clearly visible but plausible amount); each batch element gets its own random draw derived from
``seed``, so results do not depend on the batch they are computed in. Random numbers are drawn on
the CPU and moved to ``x``'s device, so they are the same on every device. All but ``jpeg`` are
differentiable.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from neuropbr.render.geometry import height_to_normal
from neuropbr.render.noise import periodic_noise, smoothstep
from neuropbr.utils.seeding import derive_seed
from neuropbr.utils.tensors import unit_vectors

Maps = dict[str, Tensor]


def _rng(seed: int, index: int) -> random.Random:
    """Parameter draws of batch element ``index``."""
    return random.Random(derive_seed(seed, "artifact", index))


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, "artifact-tensor", index))


def _noise(seed: int, height: int, width: int, like: Tensor, **kwargs: Any) -> Tensor:
    """A unit-variance smooth field (1, 1, H, W) on ``like``'s device (periodic, cropped if not square)."""
    size = max(height, width)
    return periodic_noise(seed, size, **kwargs)[:height, :width].to(like.device, like.dtype)[None, None]


def _uv(height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates in [0, 1): ``(u, v)``, each (H, W); u right, v down."""
    v = (torch.arange(height, device=like.device, dtype=like.dtype) + 0.5) / height
    u = (torch.arange(width, device=like.device, dtype=like.dtype) + 0.5) / width
    grid_u, grid_v = torch.meshgrid(u, v, indexing="xy")
    return grid_u, grid_v


def _per_element(maps: Maps, fn: Callable[[Maps, int], Maps]) -> Maps:
    """Apply ``fn(maps_b, b)`` to each batch element and stack the results."""
    batch = maps["albedo"].shape[0]
    parts = [fn({k: v[b : b + 1] for k, v in maps.items()}, b) for b in range(batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in maps}


def _blend(
    maps: Maps,
    mask: Tensor,
    *,
    albedo: Tensor | None = None,
    roughness: float | Tensor | None = None,
    metallic: float | None = None,
    amount: float = 1.0,
) -> Maps:
    """Move the maps towards target values where ``mask`` (1, 1, H, W) in [0, 1] is set."""
    out = dict(maps)
    m = (mask * amount).clamp(0.0, 1.0)
    if albedo is not None:
        out["albedo"] = (maps["albedo"] + (albedo - maps["albedo"]) * m).clamp(0.0, 1.0)
    if roughness is not None:
        out["roughness"] = (maps["roughness"] + (roughness - maps["roughness"]) * m).clamp(0.0, 1.0)
    if metallic is not None:
        out["metallic"] = (maps["metallic"] + (metallic - maps["metallic"]) * m).clamp(0.0, 1.0)
    return out


# --- surface ----------------------------------------------------------------------------------


def _oily(roughness: Tensor) -> Tensor:
    """Roughness under a film of grease: glossy surfaces turn hazy, matte ones turn sheeny."""
    return torch.where(roughness < 0.5, roughness + 0.35, roughness - 0.25)


def smudges(maps: Maps, strength: float, seed: int) -> Maps:
    """Greasy smears: blotches that pull roughness towards a hazy middle value and dull the colour."""
    if strength <= 0:
        return maps

    def one(m: Maps, b: int) -> Maps:
        rng = _rng(seed, b)
        _, _, h, w = m["albedo"].shape
        field = _noise(
            derive_seed(seed, "smudge", b), h, w, m["albedo"], frequency=rng.uniform(2.0, 5.0), beta=3.0
        )
        # Smears are stretched along a wipe direction.
        streak = _noise(
            derive_seed(seed, "smudge-streak", b),
            h,
            w,
            m["albedo"],
            frequency=6.0,
            stretch=6.0,
            angle_deg=rng.uniform(0.0, 180.0),
        )
        mask = smoothstep(0.2, 1.2, field + 0.3 * streak - rng.uniform(0.0, 0.6))
        out = _blend(m, mask, roughness=_oily(m["roughness"]) + 0.05 * streak, amount=0.85 * strength)
        out["albedo"] = out["albedo"] * (1.0 - 0.08 * strength * mask)
        out["metallic"] = out["metallic"] * (1.0 - 0.3 * strength * mask)
        return out

    return _per_element(maps, one)


def fingerprints(maps: Maps, strength: float, seed: int) -> Maps:
    """Oily prints: elliptical patches of curved ridges that change roughness locally."""
    if strength <= 0:
        return maps

    def one(m: Maps, b: int) -> Maps:
        rng = _rng(seed, b)
        _, _, h, w = m["albedo"].shape
        u, v = _uv(h, w, m["albedo"])
        warp = _noise(derive_seed(seed, "print-warp", b), h, w, m["albedo"], frequency=12.0, beta=2.5)[0, 0]
        mask = torch.zeros_like(u)
        for _ in range(1 + int(rng.random() * 3.0 * min(strength, 1.0) + 0.5)):
            cx, cy, size = rng.random(), rng.random(), rng.uniform(0.06, 0.13)
            angle, aspect = rng.uniform(0.0, math.pi), rng.uniform(1.2, 1.5)
            dx, dy = u - cx, v - cy
            along = (dx * math.cos(angle) + dy * math.sin(angle)) / (size * aspect)
            across = (-dx * math.sin(angle) + dy * math.cos(angle)) / size
            radius = torch.sqrt(along * along + across * across)  # 1 at the print's edge
            ridges = 0.5 + 0.5 * torch.sin(2.0 * math.pi * rng.uniform(10.0, 16.0) * radius + 2.0 * warp)
            mask = torch.maximum(mask, (1.0 - smoothstep(0.6, 1.0, radius)) * ridges * ridges)
        mask = mask[None, None]
        out = _blend(m, mask, roughness=_oily(m["roughness"]), amount=0.9 * strength)
        out["albedo"] = out["albedo"] * (1.0 - 0.08 * strength * mask)
        return out

    return _per_element(maps, one)


def scratches(maps: Maps, strength: float, seed: int) -> Maps:
    """Fine straight scratches: grooves that tilt the normal, lighten and roughen the surface."""
    if strength <= 0:
        return maps

    def one(m: Maps, b: int) -> Maps:
        rng = _rng(seed, b)
        gen = _generator(seed, b)
        like = m["albedo"]
        _, _, h, w = like.shape
        size = max(h, w)
        count = 1 + round(rng.uniform(3.0, 15.0) * min(strength, 1.0))
        main = rng.uniform(0.0, math.pi)  # scratches tend to share a direction (wiping, sliding)
        # Points every half texel along each scratch, splatted into a density image and blurred
        # to the scratch width: cost grows with the scratches' length, not with the image.
        step = 0.5 / size
        points, weights = [], []
        for _ in range(count):
            angle = main + rng.uniform(-0.5, 0.5) * rng.uniform(0.3, 1.5)
            length = rng.uniform(0.1, 0.6)
            t = torch.arange(0.0, length, step)
            start = torch.rand(2, generator=gen)
            points.append(start + t[:, None] * torch.tensor([math.cos(angle), math.sin(angle)]))
            weights.append(torch.full_like(t, rng.uniform(0.5, 1.0)))
        uv = torch.remainder(torch.cat(points), 1.0)  # dirt on a tileable material tiles too
        index = (uv[:, 1] * h).long().clamp(max=h - 1) * w + (uv[:, 0] * w).long().clamp(max=w - 1)
        density = torch.zeros(h * w).index_add_(0, index, torch.cat(weights)).view(1, 1, h, w)
        width = rng.uniform(0.0015, 0.004) * size  # Gaussian sigma of the groove, texels
        sigma = max(width, 0.5)  # never narrower than a texel can show
        line = _gaussian_blur(density.to(like.device, like.dtype), sigma)
        # A line of points spaced s texels, blurred by sigma, peaks at weight / (s sqrt(2 pi) sigma).
        coverage = (line * (0.5 * math.sqrt(2.0 * math.pi) * sigma) * min(1.0, width / sigma)).clamp(0.0, 1.0)
        depth = 0.0015 * min(strength, 1.0)  # world units; the sample is 2 units wide
        groove = height_to_normal(-depth * coverage, strength=w / 2.0)
        tilt = groove - torch.tensor([0.0, 0.0, 1.0], dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        out = _blend(m, coverage, roughness=0.55, amount=0.7 * min(strength, 1.0))
        out["albedo"] = (m["albedo"] + (m["albedo"] * 0.25 + 0.08) * (0.6 * coverage)).clamp(0.0, 1.0)
        out["normal"] = unit_vectors(m["normal"] + tilt)
        return out

    return _per_element(maps, one)


def dust(maps: Maps, strength: float, seed: int) -> Maps:
    """Dust specks and lint plus a faint film: matte, non-metallic, pale grey-beige."""
    if strength <= 0:
        return maps

    def one(m: Maps, b: int) -> Maps:
        rng = _rng(seed, b)
        _, _, h, w = m["albedo"].shape
        like = m["albedo"]
        gen = _generator(seed, b)
        density = torch.zeros(h * w, dtype=like.dtype)
        for count, weight in (
            (int(rng.uniform(300, 1200) * strength), 1.0),
            (int(rng.uniform(20, 80) * strength), 3.0),
        ):
            pos = torch.rand(count, 2, generator=gen)
            index = (pos[:, 1] * h).long().clamp(max=h - 1) * w + (pos[:, 0] * w).long().clamp(max=w - 1)
            density.index_add_(0, index, weight * (0.5 + torch.rand(count, generator=gen)).to(like.dtype))
        density = _gaussian_blur(density.view(1, 1, h, w).to(like.device), sigma=0.7)
        specks = 1.0 - torch.exp(-1.5 * density)
        film = (
            0.12
            * strength
            * smoothstep(-1.0, 1.5, _noise(derive_seed(seed, "dust-film", b), h, w, like, frequency=3.0))
        )
        mask = (specks + film).clamp(0.0, 1.0)
        colour = torch.tensor(
            [rng.uniform(0.6, 0.75), rng.uniform(0.57, 0.7), rng.uniform(0.5, 0.62)],
            dtype=like.dtype,
            device=like.device,
        ).view(1, 3, 1, 1)
        return _blend(m, mask, albedo=colour, roughness=1.0, metallic=0.0)

    return _per_element(maps, one)


# --- linear radiance ------------------------------------------------------------------------------


def _gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders; sigma in pixels."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    pad_h, pad_w = min(radius, image.shape[-2] - 1), min(radius, image.shape[-1] - 1)
    out = F.pad(image, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w > 0 else "replicate")
    out = F.conv2d(
        out,
        kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1).expand(channels, 1, 1, -1),
        groups=channels,
    )
    out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect" if pad_h > 0 else "replicate")
    return F.conv2d(
        out,
        kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1).expand(channels, 1, -1, 1),
        groups=channels,
    )


def _per_image(image: Tensor, fn: Callable[[Tensor, int], Tensor]) -> Tensor:
    return torch.cat([fn(image[b : b + 1], b) for b in range(image.shape[0])])


def glare(image: Tensor, strength: float, seed: int) -> Tensor:
    """Veiling glare and bloom: light scattered in the lens spreads around bright areas."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        h, w = x.shape[-2:]
        # Blur a quarter-size copy: the wide kernel then costs 16x less.
        small = F.avg_pool2d(x, 4) if min(h, w) >= 16 else x
        sigma = rng.uniform(0.02, 0.06) * small.shape[-1]
        bloom = F.interpolate(_gaussian_blur(small, sigma), size=(h, w), mode="bilinear", align_corners=False)
        veil = x.mean(dim=(-2, -1), keepdim=True)
        return x + strength * (rng.uniform(0.08, 0.25) * bloom + rng.uniform(0.02, 0.06) * veil)

    return _per_image(image, one)


def defocus(image: Tensor, strength: float, seed: int) -> Tensor:
    """Out-of-focus blur with a disc-shaped aperture (radius up to ~1 % of the width plus a pixel)."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        # Up to ~1 % of the width, plus up to a pixel so small images still show it.
        radius = strength * (rng.uniform(0.5, 1.0) + rng.uniform(0.003, 0.01) * x.shape[-1])
        if radius < 0.5:
            return _gaussian_blur(x, radius)
        reach = math.ceil(radius)
        grid = torch.arange(-reach, reach + 1, dtype=x.dtype, device=x.device)
        dist = torch.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)
        disc = (radius + 0.5 - dist).clamp(0.0, 1.0)  # anti-aliased disc
        disc = disc / disc.sum()
        padded = F.pad(
            x, (reach, reach, reach, reach), mode="reflect" if reach < min(x.shape[-2:]) else "replicate"
        )
        return F.conv2d(padded, disc.expand(3, 1, -1, -1), groups=3)

    return _per_image(image, one)


def vignetting(image: Tensor, strength: float, seed: int) -> Tensor:
    """Darker corners: radial falloff around a slightly off-centre optical axis."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        u, v = _uv(x.shape[-2], x.shape[-1], x)
        cu, cv = 0.5 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08)
        r2 = ((u - cu) ** 2 + (v - cv) ** 2) / 0.5  # 1 at the corners
        return x * (1.0 - min(strength, 1.0) * rng.uniform(0.25, 0.6) * r2.clamp(max=1.5))[None, None]

    return _per_image(image, one)


def exposure_shift(image: Tensor, strength: float, seed: int) -> Tensor:
    """Over- or under-exposure by up to one stop per unit strength."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        stops = rng.choice([-1.0, 1.0]) * strength * rng.uniform(0.3, 1.0)
        return x * 2.0**stops

    return _per_image(image, one)


def white_balance(image: Tensor, strength: float, seed: int) -> Tensor:
    """Wrong white balance: warm/cool and green/magenta channel gains at constant luminance."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        temperature = rng.choice([-1.0, 1.0]) * strength * rng.uniform(0.08, 0.25)
        tint = strength * rng.uniform(-0.08, 0.08)
        gains = torch.tensor(
            [1.0 + temperature, 1.0 + tint, 1.0 - temperature], dtype=x.dtype, device=x.device
        )
        gains = gains / (gains @ torch.tensor([0.2126, 0.7152, 0.0722], dtype=x.dtype, device=x.device))
        return x * gains.view(1, 3, 1, 1)

    return _per_image(image, one)


def sensor_noise(image: Tensor, strength: float, seed: int) -> Tensor:
    """Photon shot noise (variance proportional to the signal) plus read noise."""
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        shot, read = strength * rng.uniform(0.002, 0.012), strength * rng.uniform(0.002, 0.012)
        gauss = torch.randn(x.shape, generator=_generator(seed, b)).to(x.device, x.dtype)
        return (x + torch.sqrt(shot * x.clamp(min=0.0) + read * read) * gauss).clamp(min=0.0)

    return _per_image(image, one)


# --- display (sRGB) --------------------------------------------------------------------------------


def jpeg(image: Tensor, strength: float, seed: int) -> Tensor:
    """JPEG compression at a quality that falls from 95 (strength 0) to about 10 (strength 1).

    Goes through PIL, so it is not differentiable (the result is detached).
    """
    if strength <= 0:
        return image

    def one(x: Tensor, b: int) -> Tensor:
        rng = _rng(seed, b)
        quality = round(95 - min(strength, 1.0) * rng.uniform(50.0, 85.0))
        array = (x[0].detach().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=max(5, quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out = np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(out).permute(2, 0, 1)[None].to(x.device, x.dtype)

    return _per_image(image, one)


# --- registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """One artifact: where in the pipeline it applies and the function that applies it."""

    stage: str
    apply: Callable[[Any, float, int], Any]


#: Every artifact, in the order a capture pipeline applies them (optics, sensor, processing).
ARTIFACTS: dict[str, Artifact] = {
    "smudges": Artifact("surface", smudges),
    "fingerprints": Artifact("surface", fingerprints),
    "scratches": Artifact("surface", scratches),
    "dust": Artifact("surface", dust),
    "glare": Artifact("linear", glare),
    "defocus": Artifact("linear", defocus),
    "vignetting": Artifact("linear", vignetting),
    "exposure": Artifact("linear", exposure_shift),
    "white_balance": Artifact("linear", white_balance),
    "sensor_noise": Artifact("linear", sensor_noise),
    "jpeg": Artifact("display", jpeg),
}
STAGES = ("surface", "linear", "display")


def apply_artifacts(x: Any, stage: str, artifacts: list[dict[str, Any]]) -> Any:
    """Apply the artifacts of one stage, in :data:`ARTIFACTS` order.

    Args:
        x: maps dict (``surface``) or (B, 3, H, W) image (``linear``, ``display``).
        stage: one of :data:`STAGES`.
        artifacts: ``[{"name": ..., "strength": ..., "seed": ...}, ...]``; entries of other
            stages are skipped.

    Returns:
        ``x`` with the artifacts applied.
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}; choose one of {list(STAGES)}")
    for spec in artifacts:
        if spec["name"] not in ARTIFACTS:
            raise ValueError(f"artifact {spec['name']!r}; choose one of {sorted(ARTIFACTS)}")
    chosen = {spec["name"]: spec for spec in artifacts if ARTIFACTS[spec["name"]].stage == stage}
    for name, artifact in ARTIFACTS.items():
        if name in chosen:
            x = artifact.apply(x, float(chosen[name]["strength"]), int(chosen[name]["seed"]))
    return x
