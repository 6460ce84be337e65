"""Procedural, tileable PBR materials at any resolution from a seed.

Each family draws its parameters from the seed, builds albedo (sRGB), roughness, metallic and a
height field (world units; the sample is 2 units wide) from periodic noise (:mod:`noise`) and
analytic patterns with integer repeat counts, so every map tiles, and turns the height into a
tangent-space normal map (OpenGL, +y up) with :func:`~neuropbr.render.geometry.height_to_normal`.
The parameters and per-cell tables depend only on the seed, and edges are anti-aliased over one
texel, so a material at 512 px is the same material as at 256 px, with more detail.

>>> material = generate_material(seed=3, resolution=32, family="wood")
>>> material.family, tuple(material.maps["normal"].shape)
('wood', (3, 32, 32))
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from neuropbr.render.color import linear_to_srgb
from neuropbr.render.geometry import height_to_normal
from neuropbr.render.noise import periodic_noise, smoothstep, uv_grid
from neuropbr.utils.seeding import derive_seed

#: Measured reflectance at normal incidence of metals, linear RGB (real-time rendering tables).
METAL_F0 = {
    "iron": (0.56, 0.57, 0.58),
    "steel": (0.63, 0.62, 0.60),
    "aluminium": (0.91, 0.92, 0.92),
    "silver": (0.95, 0.93, 0.88),
    "copper": (0.95, 0.64, 0.54),
    "gold": (1.00, 0.71, 0.29),
    "brass": (0.91, 0.78, 0.42),
    "chromium": (0.55, 0.56, 0.55),
    "nickel": (0.66, 0.61, 0.53),
    "titanium": (0.54, 0.50, 0.45),
}


@dataclass(frozen=True)
class Material:
    """A generated material.

    Attributes:
        family: the family's name (a key of :data:`FAMILIES`).
        params: the drawn parameters, JSON-serialisable.
        maps: ``albedo`` (3, R, R) sRGB, ``roughness`` and ``metallic`` (1, R, R), ``normal``
            (3, R, R) unit vectors, all float32 in their ranges.
    """

    family: str
    params: dict[str, Any]
    maps: dict[str, Tensor]


class _Builder:
    """Per-material helpers: seeded draws, noise fields, texel grid."""

    def __init__(self, seed: int, resolution: int, offset: tuple[int, int] = (0, 0)) -> None:
        self.seed = seed
        self.resolution = resolution
        self.offset = offset
        self.rng = random.Random(derive_seed(seed, "params"))
        u, v = uv_grid(resolution)
        # Patterns must handle coordinates past 1 themselves (that is what makes them tile).
        self.u, self.v = u + offset[0] / resolution, v + offset[1] / resolution
        self.texel = 1.0 / resolution  # anti-aliasing width in uv units
        self.params: dict[str, Any] = {}
        self._fields = 0

    def draw(self, name: str, low: float, high: float) -> float:
        """A uniform parameter, recorded in ``params``."""
        value = self.rng.uniform(low, high)
        self.params[name] = round(value, 5)
        return value

    def pick(self, name: str, options: list[Any]) -> Any:
        value = self.rng.choice(options)
        self.params[name] = value
        return value

    def noise(self, frequency: float, **kwargs: Any) -> Tensor:
        """A fresh, independent unit-variance periodic noise field (R, R)."""
        self._fields += 1
        seed = derive_seed(self.seed, "field", self._fields)
        field = periodic_noise(seed, self.resolution, frequency=frequency, **kwargs)
        # The field is exactly periodic on the texel grid: an offset is a roll.
        return torch.roll(field, shifts=(-self.offset[1], -self.offset[0]), dims=(0, 1))

    def table(self, *shape: int) -> Tensor:
        """Uniform [0, 1) values per pattern cell (bricks, tiles, planks), seeded."""
        self._fields += 1
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "table", self._fields))
        return torch.rand(*shape, generator=gen)

    def colour(
        self, name: str, hue: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]
    ) -> Tensor:
        """An sRGB colour (3, 1, 1) drawn in HSV (hue wraps), recorded in ``params``."""
        h = self.rng.uniform(*hue) % 1.0
        rgb = colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))
        self.params[name] = [round(c, 4) for c in rgb]
        return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)

    def edge(self, distance: Tensor, width: float) -> Tensor:
        """0 inside a line of half-width ``width`` (uv units), 1 outside, anti-aliased over a texel."""
        return smoothstep(width - 0.5 * self.texel, width + 0.5 * self.texel, distance)


def _lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a + (b - a) * t


def _metal_albedo(name: str) -> Tensor:
    """sRGB albedo (3, 1, 1) of a metal from its linear F0."""
    return linear_to_srgb(torch.tensor(METAL_F0[name]).view(3, 1, 1))


def _cell_edges(u: Tensor, v: Tensor, nx: int, ny: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cell column, row and distance to the nearest cell edge (uv units) of an nx x ny grid."""
    fx, fy = u * nx, v * ny
    col, row = fx.floor(), fy.floor()
    dx = torch.minimum(fx - col, col + 1 - fx) / nx
    dy = torch.minimum(fy - row, row + 1 - fy) / ny
    return col.long() % nx, row.long() % ny, torch.minimum(dx, dy)


# --- families ------------------------------------------------------------------------------------
# Each returns albedo (3, R, R) sRGB, roughness (R, R), metallic (R, R), height (R, R) world units.

Maps = tuple[Tensor, Tensor, Tensor, Tensor]


def tiles(b: _Builder) -> Maps:
    """Ceramic or stone tiles in a grid, grout lines, bevelled edges, per-tile variation."""
    nx = b.pick("tiles_x", [2, 3, 4, 4, 6, 8])
    ny = nx * b.pick("aspect", [1, 1, 1, 2])
    grout = b.draw("grout_width", 0.003, 0.012)
    bevel = b.draw("bevel", 0.004, 0.02)
    col, row, dist = _cell_edges(b.u, b.v, nx, ny)
    tile_col = b.colour("tile_colour", (0.0, 1.0), (0.0, 0.6), (0.3, 0.9))
    grout_col = b.colour("grout_colour", (0.05, 0.12), (0.0, 0.15), (0.25, 0.75))
    shade = (b.table(nx, ny)[col, row] - 0.5) * b.draw("tile_variation", 0.0, 0.25)
    mottling = b.noise(b.draw("mottle_frequency", 4.0, 16.0)) * 0.03
    albedo = _lerp(grout_col, (tile_col * (1.0 + shade + mottling)), b.edge(dist, grout))
    gloss = b.draw("tile_roughness", 0.05, 0.6)
    inside = b.edge(dist, grout)
    roughness = _lerp(
        torch.full_like(b.u, b.draw("grout_roughness", 0.8, 1.0)), gloss + 0.05 * mottling, inside
    )
    # Tiles are slightly uneven: each gets its own small tilt on top of the bevel.
    tilt_x = (b.table(nx, ny)[col, row] - 0.5) * 0.004
    tilt_y = (b.table(nx, ny)[col, row] - 0.5) * 0.004
    height = b.draw("depth", 0.004, 0.012) * smoothstep(grout, grout + bevel, dist)
    height = height + inside * (tilt_x * (b.u * nx % 1.0 - 0.5) + tilt_y * (b.v * ny % 1.0 - 0.5))
    height = height + 0.0004 * b.noise(32.0, beta=1.5)
    return albedo, roughness, torch.zeros_like(b.u), height


def bricks(b: _Builder) -> Maps:
    """Running-bond brick wall: half-offset rows, recessed mortar, chipped edges, speckles."""
    ny = 2 * b.pick("row_pairs", [2, 3, 4, 5])
    nx = max(1, ny // 2 + b.pick("extra_columns", [-1, 0, 0, 1]))
    row = (b.v * ny).floor()
    shifted = b.u + 0.5 * (row % 2) / nx  # every other row offset by half a brick
    col, _, dist = _cell_edges(shifted % 1.0, b.v, nx, ny)
    row = row.long() % ny
    chips = b.noise(24.0, beta=1.5) * 0.004  # ragged brick edges
    mortar = b.draw("mortar_width", 0.006, 0.016)
    inside = b.edge(dist + chips, mortar)
    brick_col = b.colour("brick_colour", (-0.02, 0.08), (0.35, 0.75), (0.3, 0.65))
    mortar_col = b.colour("mortar_colour", (0.06, 0.12), (0.0, 0.2), (0.45, 0.8))
    per_brick = b.table(nx, ny)[col, row] - 0.5
    speckle = b.noise(48.0, beta=1.0)
    face = brick_col * (1.0 + 0.3 * per_brick + 0.06 * speckle + 0.1 * b.noise(6.0))
    albedo = _lerp(mortar_col * (1.0 + 0.08 * speckle), face, inside)
    roughness = _lerp(
        torch.full_like(b.u, 0.95), b.draw("brick_roughness", 0.65, 0.9) + 0.05 * speckle, inside
    )
    height = b.draw("depth", 0.006, 0.015) * smoothstep(mortar, mortar + 0.01, dist + chips)
    height = height + 0.0012 * b.noise(16.0, beta=1.6) * inside + 0.0005 * speckle
    return albedo, roughness, torch.zeros_like(b.u), height


def wood(b: _Builder) -> Maps:
    """Planks with growth rings, fibres and joints; varnished or raw."""
    planks = b.pick("planks", [1, 2, 3, 4, 6])
    rings = b.pick("rings_per_plank", [3, 5, 8, 12])
    fibre_angle = 0.0
    plank_pos = b.v * planks
    plank = plank_pos.floor().long() % planks
    offsets = b.table(planks)[plank]
    joints = b.pick("joints_per_plank", [0, 1, 2])
    # Smooth, mostly along-grain waviness of the rings (knot-free plain-sawn boards).
    warp = b.noise(1.0, beta=3.5, stretch=4.0, angle_deg=fibre_angle, max_frequency=8) * b.draw(
        "warp", 0.3, 1.0
    )
    t = rings * (plank_pos - plank_pos.floor()) + warp + 7.0 * offsets
    ring = t - t.floor()
    latewood = smoothstep(0.55, 0.9, ring) * (1.0 - smoothstep(0.9, 1.0, ring))
    fibres = b.noise(48.0, beta=1.2, stretch=12.0, angle_deg=fibre_angle)
    light = b.colour("light_wood", (0.05, 0.11), (0.35, 0.65), (0.45, 0.85))
    dark_factor = b.draw("latewood_darkness", 0.45, 0.75)
    plank_tone = 1.0 + (b.table(planks)[plank] - 0.5) * 0.25
    albedo = light * plank_tone * (1.0 - (1.0 - dark_factor) * latewood) * (1.0 + 0.06 * fibres)
    varnished = b.pick("finish", ["varnished", "raw"]) == "varnished"
    base_rough = b.draw("roughness", 0.12, 0.35) if varnished else b.draw("roughness", 0.5, 0.8)
    roughness = base_rough + 0.08 * latewood + 0.04 * fibres
    # Grooves between planks and at the joints.
    edge_dist = torch.minimum(plank_pos - plank_pos.floor(), plank_pos.floor() + 1 - plank_pos) / planks
    gap = b.edge(edge_dist, 0.002)
    if joints:
        along = b.u * joints + b.table(planks)[plank]
        joint_dist = torch.minimum(along - along.floor(), along.floor() + 1 - along) / joints
        gap = gap * b.edge(joint_dist, 0.002)
    albedo = albedo * (0.35 + 0.65 * gap)
    height = 0.003 * gap + 0.0003 * fibres - 0.0004 * latewood
    return albedo, roughness, torch.zeros_like(b.u), height


def brushed_metal(b: _Builder) -> Maps:
    """Brushed metal: fine streaks along one direction, slight blotches."""
    metal = b.pick("metal", sorted(METAL_F0))
    angle = b.pick("brush_angle_deg", [0.0, 90.0, 0.0, 45.0])
    streaks = b.noise(
        b.draw("streak_frequency", 24.0, 64.0),
        beta=1.0,
        stretch=b.draw("stretch", 15.0, 40.0),
        angle_deg=angle,
    )
    blotches = b.noise(3.0)
    base = b.draw("roughness", 0.15, 0.45)
    roughness = base + 0.06 * streaks + 0.05 * blotches
    albedo = _metal_albedo(metal) * (1.0 + 0.03 * streaks - 0.04 * blotches.abs())
    height = 0.00025 * streaks
    return albedo, roughness, torch.ones_like(b.u), height


def painted_metal(b: _Builder) -> Maps:
    """Painted steel with chips showing bare metal and patches of rust."""
    paint = b.colour("paint_colour", (0.0, 1.0), (0.3, 0.9), (0.25, 0.85))
    paint_rough = b.draw("paint_roughness", 0.25, 0.65)
    chip_noise = b.noise(b.draw("chip_frequency", 3.0, 8.0), beta=2.4)
    chips = smoothstep(0.0, 0.15, chip_noise - b.draw("chip_threshold", 1.0, 2.0))
    rust_noise = b.noise(b.draw("rust_frequency", 2.0, 6.0), beta=2.0) + 1.5 * chips
    rust = smoothstep(0.0, 0.4, rust_noise - b.draw("rust_threshold", 0.8, 2.2))
    grain = b.noise(64.0, beta=1.0)
    rust_col = b.colour("rust_colour", (0.02, 0.08), (0.55, 0.85), (0.25, 0.5)) * (
        1.0 + 0.25 * b.noise(16.0, beta=1.2)
    )
    steel = _metal_albedo("steel")
    albedo = _lerp(_lerp(paint * (1.0 + 0.02 * grain), steel, chips), rust_col, rust)
    roughness = _lerp(
        _lerp(paint_rough + 0.03 * grain, torch.full_like(b.u, 0.35), chips), 0.9 + 0.08 * grain, rust
    )
    metallic = chips * (1.0 - rust)
    orange_peel = b.noise(40.0, beta=2.0)
    height = (
        0.0015 * (1.0 - chips) + 0.00015 * orange_peel + rust * (0.0008 + 0.0008 * b.noise(24.0, beta=1.4))
    )
    return albedo, roughness, metallic, height


def stone(b: _Builder) -> Maps:
    """Rock surfaces: rough fBm stone, speckled granite or veined polished marble."""
    style = b.pick("style", ["rough", "granite", "marble"])
    base = b.noise(b.draw("frequency", 2.0, 5.0), beta=2.2)
    detail = b.noise(32.0, beta=1.6)
    light = b.colour("light_colour", (0.05, 0.15), (0.0, 0.25), (0.55, 0.85))
    dark = b.colour("dark_colour", (0.0, 0.12), (0.0, 0.3), (0.15, 0.4))
    if style == "marble":
        warp = b.noise(2.0, beta=2.4) * 1.5
        veins = (
            torch.sin(2.0 * math.pi * (b.pick("vein_count", [1, 2, 3]) * (b.u + b.v)) + 3.0 * warp)
        ).abs() ** 0.25
        albedo = _lerp(dark, light, veins) * (1.0 + 0.03 * detail)
        roughness = b.draw("roughness", 0.06, 0.25) + 0.02 * detail
        height = 0.0001 * detail
    else:
        mix = smoothstep(-1.0, 1.0, base + 0.4 * detail)
        albedo = _lerp(dark, light, mix)
        if style == "granite":
            flecks = b.noise(64.0, beta=0.8)
            albedo = albedo * (1.0 - 0.5 * smoothstep(1.2, 1.6, flecks)) + 0.3 * smoothstep(1.4, 1.8, -flecks)
        cracks = 1.0 - smoothstep(0.0, 0.12, b.noise(3.0, beta=2.0).abs())
        albedo = albedo * (1.0 - 0.4 * cracks)
        roughness = b.draw("roughness", 0.55, 0.95) + 0.05 * detail
        height = 0.004 * base + 0.0012 * detail - 0.002 * cracks
    return albedo, roughness, torch.zeros_like(b.u), height


def fabric(b: _Builder) -> Maps:
    """Woven cloth: plain or twill weave of warp and weft threads, with fuzz."""
    threads = b.pick("threads", [16, 24, 32, 48])
    weave = b.pick("weave", ["plain", "twill"])
    fu, fv = b.u * threads, b.v * threads
    cu, cv = fu.floor(), fv.floor()
    period = 2 if weave == "plain" else 4
    warp_on_top = ((cu + cv) % period) < period / 2
    across_warp = (fu - cu) - 0.5  # position across the vertical (warp) thread, in [-0.5, 0.5)
    across_weft = (fv - cv) - 0.5
    # Round thread cross-sections; the thread on top bulges in the middle of its crossing.
    warp_h = torch.sqrt((0.25 - across_warp**2).clamp(min=0.0)) * (
        0.6 + 0.4 * torch.cos(math.pi * across_weft)
    )
    weft_h = torch.sqrt((0.25 - across_weft**2).clamp(min=0.0)) * (
        0.6 + 0.4 * torch.cos(math.pi * across_warp)
    )
    profile = torch.where(warp_on_top, warp_h, weft_h)  # in [0, 0.5]
    warp_col = b.colour("warp_colour", (0.0, 1.0), (0.1, 0.8), (0.2, 0.8))
    two_tone = b.pick("two_tone", [False, True])
    weft_col = b.colour("weft_colour", (0.0, 1.0), (0.0, 0.3), (0.5, 0.9)) if two_tone else warp_col
    fuzz = b.noise(96.0, beta=0.8)
    thread_col = torch.where(warp_on_top, warp_col, weft_col)
    albedo = thread_col * (0.55 + 0.9 * profile) * (1.0 + 0.05 * fuzz)
    roughness = b.draw("roughness", 0.65, 0.95) + 0.05 * fuzz - 0.1 * profile
    height = (2.0 / threads) * 0.12 * profile + 0.00015 * fuzz
    return albedo, roughness, torch.zeros_like(b.u), height


def plastic(b: _Builder) -> Maps:
    """Moulded plastic: saturated colour, smooth, orange-peel or stippled surface."""
    colour = b.colour("colour", (0.0, 1.0), (0.4, 0.95), (0.2, 0.9))
    finish = b.pick("finish", ["smooth", "orange_peel", "stipple"])
    base = b.draw("roughness", 0.05, 0.5)
    variation = b.noise(4.0)
    if finish == "stipple":
        bumps = b.noise(b.draw("stipple_frequency", 24.0, 48.0), beta=1.5)
        height = 0.0008 * bumps
        roughness = base + 0.15 + 0.04 * bumps
    elif finish == "orange_peel":
        bumps = b.noise(20.0, beta=2.5)
        height = 0.0002 * bumps
        roughness = base + 0.02 * bumps
    else:
        height = 0.00003 * variation
        roughness = base + 0.01 * variation
    albedo = colour * (1.0 + 0.02 * variation)
    return albedo, roughness, torch.zeros_like(b.u), height


FAMILIES: dict[str, Callable[[_Builder], Maps]] = {
    "tiles": tiles,
    "bricks": bricks,
    "wood": wood,
    "brushed_metal": brushed_metal,
    "painted_metal": painted_metal,
    "stone": stone,
    "fabric": fabric,
    "plastic": plastic,
}


def generate_material(
    seed: int, resolution: int, family: str | None = None, *, offset: tuple[int, int] = (0, 0)
) -> Material:
    """A procedural, tileable material.

    Args:
        seed: decides the family (unless given) and every parameter.
        resolution: side R of the square maps (>= 8).
        family: one of :data:`FAMILIES` (default: drawn from the seed).
        offset: ``(dx, dy)`` texels to shift the pattern by (right, down). Every material tiles,
            so this equals the unshifted maps rolled by ``(-dy, -dx)``; it picks which window of
            the endless texture the maps show.

    Returns:
        The material, with maps (C, R, R) in their ranges (albedo and roughness clamped to
        physically plausible [0.02, 0.98] and [0.02, 1]).
    """
    if resolution < 8:
        raise ValueError(f"generate_material: resolution={resolution}, expected >= 8")
    if family is None:
        family = random.Random(derive_seed(seed, "family")).choice(sorted(FAMILIES))
    elif family not in FAMILIES:
        raise ValueError(f"family={family!r}; choose one of {sorted(FAMILIES)}")
    builder = _Builder(seed, resolution, offset)
    albedo, roughness, metallic, height = FAMILIES[family](builder)
    # Bumps scale with the map's world size (2 units): slope = dh/dx in world units.
    normal = height_to_normal(height[None, None], strength=resolution / 2.0)[0]
    maps = {
        "albedo": albedo.expand(3, resolution, resolution).clamp(0.02, 0.98).contiguous(),
        "roughness": roughness.expand(1, resolution, resolution).clamp(0.02, 1.0).contiguous(),
        "metallic": metallic.expand(1, resolution, resolution).clamp(0.0, 1.0).contiguous(),
        "normal": normal.contiguous(),
    }
    return Material(family=family, params=builder.params, maps=maps)
