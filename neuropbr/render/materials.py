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
from collections.abc import Callable, Sequence
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


def _lerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
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


def _voronoi(b: _Builder, cells: int) -> tuple[Tensor, Tensor, Tensor]:
    """Tileable cellular noise on a ``cells`` x ``cells`` grid of jittered seed points.

    Returns:
        ``(f1, f2, cell)``: distance to the nearest and second-nearest point (uv units) and the
        nearest point's cell id (R, R) (an index into ``b.table(cells * cells)``-sized tables).
    """
    jitter = b.table(cells, cells, 2) * 0.8 + 0.1  # point inside its cell, away from the border
    fx, fy = b.u * cells, b.v * cells
    cx, cy = fx.floor().long(), fy.floor().long()
    best = torch.full_like(b.u, 1e9)
    second = torch.full_like(b.u, 1e9)
    cell = torch.zeros_like(cx)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            nx, ny = cx + dx, cy + dy
            ix, iy = nx % cells, ny % cells  # periodic: the neighbour past the edge wraps
            px = nx.float() + jitter[ix, iy, 0]
            py = ny.float() + jitter[ix, iy, 1]
            dist = torch.sqrt((fx - px) ** 2 + (fy - py) ** 2) / cells
            closer = dist < best
            second = torch.where(closer, best, torch.minimum(second, dist))
            cell = torch.where(closer, ix * cells + iy, cell)
            best = torch.where(closer, dist, best)
    return best, second, cell


def concrete(b: _Builder) -> Maps:
    """Cast concrete or plaster: low-contrast grey mottling, pores, form lines, stains."""
    base = b.colour("colour", (0.05, 0.15), (0.0, 0.12), (0.35, 0.8))
    mottle = b.noise(b.draw("mottle_frequency", 2.0, 8.0), beta=2.0)
    grain = b.noise(64.0, beta=1.0)
    pores = smoothstep(1.6, 2.2, b.noise(48.0, beta=0.6))
    albedo = base * (1.0 + 0.08 * mottle + 0.04 * grain) * (1.0 - 0.35 * pores)
    roughness = b.draw("roughness", 0.7, 0.98) + 0.03 * grain
    height = 0.002 * b.noise(6.0, beta=2.2) + 0.0006 * grain - 0.003 * pores
    if b.pick("form_lines", [False, True]):
        lines = b.pick("board_count", [3, 4, 6])
        dist = (b.v * lines - (b.v * lines).round()).abs() / lines
        height = height - 0.003 * (1.0 - smoothstep(0.0, 0.006, dist))
    return albedo, roughness, torch.zeros_like(b.u), height


def leather(b: _Builder) -> Maps:
    """Leather: cellular pebble grain with creases between the cells, satin to matte."""
    cells = b.pick("grain_cells", [12, 16, 24, 32])
    f1, f2, cell = _voronoi(b, cells)
    crease = 1.0 - smoothstep(0.0, 0.25 / cells, f2 - f1)  # narrow valleys between grains
    colour = b.colour("colour", (0.0, 0.12), (0.3, 0.8), (0.08, 0.55))
    per_cell = b.table(cells * cells)[cell] - 0.5
    albedo = colour * (1.0 + 0.1 * per_cell) * (1.0 - 0.3 * crease)
    roughness = b.draw("roughness", 0.35, 0.75) + 0.15 * crease
    height = 0.004 * (1.0 - crease) * (1.0 - (f1 * cells) ** 2).clamp(min=0.0) + 0.0003 * b.noise(48.0)
    return albedo, roughness, torch.zeros_like(b.u), height


def cobblestone(b: _Builder) -> Maps:
    """Rounded stones or pebbles set in mortar, sand or soil: strongly relieved."""
    cells = b.pick("stones", [4, 6, 8, 12])
    f1, f2, cell = _voronoi(b, cells)
    gap = b.draw("gap", 0.04, 0.2) / cells
    edge = f2 - f1  # ~0 on the border between two stones
    inside = smoothstep(gap, gap * 2.0, edge)
    dome = (edge * cells).clamp(max=1.0).sqrt()
    stone = b.colour("stone_colour", (0.0, 0.15), (0.0, 0.35), (0.25, 0.75))
    filler = b.colour("filler_colour", (0.05, 0.14), (0.1, 0.5), (0.15, 0.6))
    per_stone = b.table(cells * cells)[cell] - 0.5
    detail = b.noise(32.0, beta=1.6)
    albedo = _lerp(filler * (1.0 + 0.1 * detail), stone * (1.0 + 0.35 * per_stone + 0.06 * detail), inside)
    roughness = _lerp(
        torch.full_like(b.u, 0.95), b.draw("stone_roughness", 0.4, 0.85) + 0.05 * detail, inside
    )
    height = b.draw("depth", 0.01, 0.03) * inside * dome + 0.0008 * detail
    return albedo, roughness, torch.zeros_like(b.u), height


def corroded_metal(b: _Builder) -> Maps:
    """Bare metal eaten by rust or patina: metal and non-metal mixed at texel scale."""
    metal = b.pick("metal", ["iron", "steel", "copper", "brass"])
    patina = metal in ("copper", "brass") and b.pick("patina", [False, True])
    coverage = b.noise(b.draw("frequency", 2.0, 6.0), beta=2.2, max_frequency=15)
    coverage = coverage + 0.4 * b.noise(12.0, beta=1.4, max_frequency=15)
    corrosion = smoothstep(-0.2, 0.3, coverage - b.draw("threshold", -0.8, 0.8))
    pits = smoothstep(1.4, 2.0, b.noise(40.0, beta=0.8)) * corrosion
    crust = (
        b.colour("patina_colour", (0.40, 0.50), (0.3, 0.6), (0.35, 0.65))
        if patina
        else b.colour("rust_colour", (0.02, 0.08), (0.55, 0.9), (0.18, 0.45))
    ) * (1.0 + 0.2 * b.noise(24.0, beta=1.2))
    albedo = _lerp(_metal_albedo(metal), crust, corrosion)
    roughness = _lerp(
        torch.full_like(b.u, b.draw("metal_roughness", 0.2, 0.5)), torch.full_like(b.u, 0.92), corrosion
    )
    metallic = 1.0 - corrosion
    height = 0.002 * corrosion * (1.0 + 0.5 * b.noise(16.0, beta=1.5)) - 0.002 * pits
    return albedo, roughness, metallic, height


def hammered_metal(b: _Builder) -> Maps:
    """Hand-hammered metal: overlapping shallow dimples, polished to satin."""
    metal = b.pick("metal", sorted(METAL_F0))
    cells = b.pick("dimples", [6, 8, 12, 16])
    f1, _, cell = _voronoi(b, cells)
    dimple = (f1 * cells).clamp(max=1.0) ** 2  # 0 at a hammer blow's centre, rising to its rim
    albedo = _metal_albedo(metal) * (1.0 + 0.03 * (b.table(cells * cells)[cell] - 0.5))
    roughness = b.draw("roughness", 0.08, 0.4) + 0.05 * b.noise(12.0)
    height = b.draw("depth", 0.004, 0.012) * dimple
    return albedo, roughness, torch.ones_like(b.u), height


def terrazzo(b: _Builder) -> Maps:
    """Terrazzo: coloured stone chips in a cement or resin matrix, ground flat and polished."""
    cells = b.pick("chips", [10, 14, 20])
    f1, f2, cell = _voronoi(b, cells)
    chip = smoothstep(0.1 / cells, 0.16 / cells, f2 - f1) * smoothstep(0.45 / cells, 0.3 / cells, f1)
    matrix = b.colour("matrix_colour", (0.0, 1.0), (0.0, 0.3), (0.5, 0.9))
    palette = torch.stack(
        [b.colour(f"chip_colour_{i}", (0.0, 1.0), (0.1, 0.8), (0.1, 0.95)) for i in range(3)]
    )
    pick = (b.table(cells * cells)[cell] * 3).long().clamp(max=2)  # (R, R) palette index
    chip_col = palette[pick, :, 0, 0].permute(2, 0, 1)  # (3, R, R)
    albedo = _lerp(matrix.expand(3, *b.u.shape), chip_col, chip)
    roughness = b.draw("roughness", 0.1, 0.45) + 0.1 * (1.0 - chip)
    height = 0.0003 * chip + 0.0002 * b.noise(32.0)
    return albedo, roughness, torch.zeros_like(b.u), height


def ground(b: _Builder) -> Maps:
    """Soil, sand or gravel ground: fractal relief, scattered pebbles, dry or damp."""
    relief = b.noise(b.draw("frequency", 3.0, 8.0), beta=1.8)
    cells = b.pick("pebbles", [8, 12, 16])
    f1, _, cell = _voronoi(b, cells)
    radius = b.draw("pebble_radius", 0.15, 0.4) / cells
    present = (b.table(cells * cells)[cell] < b.draw("pebble_density", 0.2, 0.8)).float()
    pebble = (1.0 - (f1 / radius).clamp(max=1.0) ** 2).clamp(min=0.0).sqrt() * present
    soil = b.colour("soil_colour", (0.04, 0.12), (0.2, 0.6), (0.12, 0.5))
    rock = b.colour("pebble_colour", (0.0, 0.15), (0.0, 0.3), (0.3, 0.8))
    grain = b.noise(64.0, beta=1.0)
    albedo = _lerp(soil * (1.0 + 0.15 * relief + 0.1 * grain), rock, smoothstep(0.0, 0.2, pebble))
    damp = b.draw("damp", 0.0, 1.0)
    roughness = (0.95 - 0.4 * damp * (relief > 0).float()) + 0.03 * grain
    albedo = albedo * (1.0 - 0.35 * damp * (relief > 0).float())
    height = 0.004 * relief + b.draw("pebble_height", 0.004, 0.012) * pebble + 0.0005 * grain
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
    "concrete": concrete,
    "leather": leather,
    "cobblestone": cobblestone,
    "corroded_metal": corroded_metal,
    "hammered_metal": hammered_metal,
    "terrazzo": terrazzo,
    "ground": ground,
}
#: Families whose surface is smooth by nature: their relief stays low (see :func:`_set_relief`).
SMOOTH_FAMILIES = frozenset({"plastic", "terrazzo"})
#: Mean tilt of the normals, in degrees, that a material's relief is scaled to: log-uniform in
#: this range (nearly flat to strongly relieved, like scanned material libraries), lower for
#: :data:`SMOOTH_FAMILIES`.
RELIEF_TILT_DEG = (1.0, 28.0)
SMOOTH_RELIEF_TILT_DEG = (0.3, 6.0)


# --- layers on top of any family: what real materials go through --------------------------------


def _relief_shape(height: Tensor, max_frequency: int = 8) -> Tensor:
    """The height's coarse shape (frequencies up to ``max_frequency`` cycles per tile), zero mean and
    unit variance: the same field at every resolution, unlike the height with its finest detail."""
    spectrum = torch.fft.rfft2(height)
    ky = torch.fft.fftfreq(height.shape[-2], 1.0 / height.shape[-2]).abs()[:, None]
    kx = torch.fft.rfftfreq(height.shape[-1], 1.0 / height.shape[-1])[None, :]
    coarse = torch.fft.irfft2(spectrum * ((kx <= max_frequency) & (ky <= max_frequency)), s=height.shape[-2:])
    return (coarse - coarse.mean()) / coarse.std().clamp(min=1e-12)


def _luma(rgb: Tensor) -> Tensor:
    return 0.2126 * rgb[0:1] + 0.7152 * rgb[1:2] + 0.0722 * rgb[2:3]


def _recolour(b: _Builder, albedo: Tensor, metallic: Tensor) -> Tensor:
    """Tint the dielectric parts towards a random hue at the same brightness (painted, dyed, stained)."""
    tint = b.colour("tint", (0.0, 1.0), (0.2, 0.9), (1.0, 1.0))
    tint = tint / _luma(tint)  # unit luminance: only the hue changes
    strength = b.draw("tint_strength", 0.3, 1.0)
    grey = _luma(albedo).expand_as(albedo)
    tinted = _lerp(albedo, grey * tint, strength)
    return _lerp(tinted, albedo, metallic)  # metals keep their measured colour


def _paint_over(b: _Builder, maps: Maps) -> Maps:
    """A coat of paint over the material, worn through where the noise says: mixes the paint
    (dielectric) with whatever is below (metal or not) at texel scale."""
    albedo, roughness, metallic, height = maps
    paint = b.colour("overpaint_colour", (0.0, 1.0), (0.0, 0.9), (0.15, 0.9))
    # Thresholded masks use band-limited noise (below 16 cycles), so the mask is the same at every
    # resolution of 32 px and up.
    wear = b.noise(b.draw("overpaint_frequency", 2.0, 6.0), beta=2.2, max_frequency=15)
    wear = wear + 0.3 * b.noise(12.0, beta=1.2, max_frequency=15)
    covered = smoothstep(-0.3, 0.3, wear - b.draw("overpaint_threshold", -1.2, 0.6))
    thickness = b.draw("overpaint_thickness", 0.0005, 0.002)
    albedo = _lerp(albedo, paint.expand_as(albedo), covered)
    roughness = _lerp(roughness, torch.full_like(roughness, b.draw("overpaint_roughness", 0.3, 0.8)), covered)
    return albedo, roughness, metallic * (1.0 - covered), height + thickness * covered


def _dirt(b: _Builder, maps: Maps) -> Maps:
    """Grime settled in the low parts of the relief: darker, rougher, never metallic."""
    albedo, roughness, metallic, height = maps
    low = height.mean() - height  # > 0 in cavities
    spread = height.std().clamp(min=1e-6)
    amount = smoothstep(-0.5, 1.5, low / spread + 0.7 * b.noise(4.0, beta=2.0, max_frequency=15)) * b.draw(
        "dirt_amount", 0.3, 0.9
    )
    grime = b.colour("dirt_colour", (0.05, 0.12), (0.2, 0.6), (0.08, 0.3))
    albedo = _lerp(albedo, grime.expand_as(albedo), amount)
    roughness = _lerp(roughness, torch.full_like(roughness, 0.95), amount)
    return albedo, roughness, metallic * (1.0 - amount), height


def _edge_wear(b: _Builder, maps: Maps) -> Maps:
    """Raised parts polished by use: smoother and a little lighter."""
    albedo, roughness, metallic, height = maps
    high = _relief_shape(height)
    worn = smoothstep(0.5, 2.0, high + 0.5 * b.noise(8.0, max_frequency=15)) * b.draw("wear_amount", 0.3, 1.0)
    albedo = albedo * (1.0 + 0.25 * worn)
    roughness = roughness * (1.0 - 0.5 * worn)
    return albedo, roughness, metallic, height


def _coat(b: _Builder, maps: Maps) -> Maps:
    """A clear varnish, wax or wet film: the whole surface much smoother."""
    albedo, roughness, metallic, height = maps
    level = b.draw("coat_roughness", 0.03, 0.25)
    return albedo * 0.9, _lerp(roughness, torch.full_like(roughness, level), 0.85), metallic, height


#: Layers applied on top of a family, each with its probability (drawn from the seed).
LAYERS: dict[str, tuple[float, Callable[[_Builder, Maps], Maps]]] = {
    "paint_over": (0.15, _paint_over),
    "dirt": (0.3, _dirt),
    "edge_wear": (0.2, _edge_wear),
    "coat": (0.12, _coat),
}
#: Probability that a material's dielectric colour is re-tinted to a random hue.
RECOLOUR_PROBABILITY = 0.35


def _set_relief(
    b: _Builder, family: str, height: Tensor, tilt_range: tuple[float, float] | None = None
) -> Tensor:
    """Scale the height field so the normals' mean tilt is a seeded draw (log-uniform in
    ``tilt_range`` degrees, default :data:`RELIEF_TILT_DEG`; :data:`SMOOTH_FAMILIES` keep theirs).

    The families' own amplitudes are nearly flat (a few thousandths of the sample's width), so a
    model trained on them learns to predict flat normals; real materials range from polished stone
    to cobbles. The tilt is measured at the resolution the maps are made at (finer relief that only
    a larger map can hold then counts too), so every resolution shows the drawn mean tilt.
    """
    low, high = SMOOTH_RELIEF_TILT_DEG if family in SMOOTH_FAMILIES else (tilt_range or RELIEF_TILT_DEG)
    target = math.radians(low * (high / low) ** b.draw("relief_u", 0.0, 1.0))
    b.params["relief_tilt_deg"] = round(math.degrees(target), 3)
    normal = height_to_normal(height[None, None], strength=height.shape[-1] / 2.0)
    slope = (normal[:, :2].square().sum(dim=1).sqrt() / normal[:, 2]).flatten().double()  # tan(tilt)
    if float(slope.mean()) < 1e-9:
        return height  # a perfectly flat family stays flat
    # mean(atan(k * slope)) grows monotonically with k: bisect log k for the target mean tilt.
    lo, hi = -12.0, 12.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if float(torch.atan(math.exp(mid) * slope).mean()) < target:
            lo = mid
        else:
            hi = mid
    return height * math.exp(0.5 * (lo + hi))


def check_relief_range(tilt_range: Sequence[float] | None, key: str) -> None:
    """``tilt_range`` must be None or ``[low, high]`` degrees with 0 < low <= high < 90."""
    if tilt_range is None:
        return
    values = list(tilt_range)
    if len(values) != 2 or not 0 < values[0] <= values[1] < 90:
        raise ValueError(
            f"{key}={values}: expected [low, high] mean normal tilt in degrees, 0 < low <= high < 90"
        )


def draw_family(seed: int) -> str:
    """The family :func:`generate_material` picks for ``seed`` when none is given (cheap: no maps)."""
    return random.Random(derive_seed(seed, "family")).choice(sorted(FAMILIES))


def generate_material(
    seed: int,
    resolution: int,
    family: str | None = None,
    *,
    offset: tuple[int, int] = (0, 0),
    relief_tilt_deg: tuple[float, float] | None = None,
    recolour: bool = True,
    weathering: bool = True,
) -> Material:
    """A procedural, tileable material.

    Args:
        seed: decides the family (unless given) and every parameter.
        resolution: side R of the square maps (>= 8).
        family: one of :data:`FAMILIES` (default: drawn from the seed).
        offset: ``(dx, dy)`` texels to shift the pattern by (right, down). Every material tiles,
            so this equals the unshifted maps rolled by ``(-dy, -dx)``; it picks which window of
            the endless texture the maps show.
        relief_tilt_deg: ``(low, high)`` mean normal tilt in degrees the relief is drawn from
            (log-uniform; default :data:`RELIEF_TILT_DEG`; smooth families keep their own range).
        recolour: let the seed re-tint the dielectric colour (false: the family's own colours).
        weathering: let the seed apply :data:`LAYERS` (false: the family's bare pattern).

    Returns:
        The material, with maps (C, R, R) in their ranges (albedo and roughness clamped to
        physically plausible [0.02, 0.98] and [0.02, 1]). On top of the family's own pattern the
        seed draws the relief (mean normal tilt, :data:`RELIEF_TILT_DEG`), an optional re-tint
        and weathering :data:`LAYERS` (recorded in ``params``).
    """
    if resolution < 8:
        raise ValueError(f"generate_material: resolution={resolution}, expected >= 8")
    check_relief_range(relief_tilt_deg, "relief_tilt_deg")
    if family is None:
        family = draw_family(seed)
    elif family not in FAMILIES:
        raise ValueError(f"family={family!r}; choose one of {sorted(FAMILIES)}")
    builder = _Builder(seed, resolution, offset)
    layers: Maps = FAMILIES[family](builder)
    expanded = (
        layers[0].expand(3, resolution, resolution),
        *(m.expand(resolution, resolution) for m in layers[1:]),
    )
    albedo, roughness, metallic, height = expanded
    if recolour and builder.rng.random() < RECOLOUR_PROBABILITY:
        albedo = _recolour(builder, albedo, metallic)
    layers = (albedo, roughness, metallic, _set_relief(builder, family, height, relief_tilt_deg))
    applied = []
    for name, (probability, layer) in LAYERS.items():
        if weathering and builder.rng.random() < probability:
            layers = layer(builder, layers)
            applied.append(name)
    builder.params["layers"] = applied
    albedo, roughness, metallic, height = layers
    # Bumps scale with the map's world size (2 units): slope = dh/dx in world units.
    normal = height_to_normal(height[None, None], strength=resolution / 2.0)[0]
    maps = {
        "albedo": albedo.expand(3, resolution, resolution).clamp(0.02, 0.98).contiguous(),
        "roughness": roughness.expand(1, resolution, resolution).clamp(0.02, 1.0).contiguous(),
        "metallic": metallic.expand(1, resolution, resolution).clamp(0.0, 1.0).contiguous(),
        "normal": normal.contiguous(),
    }
    return Material(family=family, params=builder.params, maps=maps)
