"""Handheld photos of a flat sample -> rectified, mutually aligned views for inference.

A model trained on aligned views (``data.aligned=true``, the default) expects each view to show the
sample's square straight on, texel for texel the same in every view. Phone photos show it in
perspective, from different places, at different sizes. :func:`align_photos` turns them into
such views:

1. **Reference rectification.** The first photo is the reference. The sample's four corners in it
   come from the user (``corners``, in any order: they are sorted into a convex quadrilateral, top
   edge first, and validated) or from :func:`find_sample_corners` (a sample on a plain,
   contrasting background). The quadrilateral is warped to a square (or ``size``).
2. **Alignment.** SIFT features (kornia, no downloaded weights) of every photo, computed on a copy
   whose long side is ``feature_size``; mutual nearest neighbours passing Lowe's ratio test; a
   RANSAC homography onto the reference, scaled back to full resolution. The reference's
   rectification composed with it rectifies the photo. A photo with its own corners
   (``photo_corners``) is rectified by them instead, turned by the multiple of 90 degrees that
   matches the reference best.
3. **Quality gates.** A photo fails, with a reason, when it is blank, too dark or blown out, has
   too few RANSAC inliers (another material, too little overlap, blur), its homography folds
   the sample or scales it wildly, or the sample is not inside it. :class:`AlignmentError` lists
   every failed photo; nothing is returned for inference then. A rectified view whose fine
   structure correlates little with the reference's is logged as a warning.

Pixel coordinates are ``(x, y)``: x to the right, y down, the centre of the top-left pixel at
``(0, 0)``, in the photo as displayed (EXIF orientation applied, see
:func:`neuropbr.data.io.read_image`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from kornia.feature import SIFTFeature, get_laf_center, get_laf_scale, match_smnn
from kornia.filters import gaussian_blur2d
from kornia.geometry.ransac import RANSAC
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from torch import Tensor

from neuropbr.data.io import ImageReadError, read_image, save_image, to_chw
from neuropbr.render.color import srgb_to_linear
from neuropbr.utils.files import atomic_write
from neuropbr.utils.tensors import spatial_size

log = logging.getLogger(__name__)

#: File names written beside the maps.
REPORT_FILE = "align_report.json"
ALIGNED_DIR = "aligned"

#: Interior angles of the sample's quadrilateral outside this range (degrees) make it degenerate.
MIN_CORNER_ANGLE_DEG = 10.0
#: A photo's sample may be this many times larger or smaller (linear scale) than the reference's.
MAX_SCALE_CHANGE = 6.0
#: Share of the sample's area that must lie inside a photo.
MIN_COVERAGE = 0.98
#: Correlation of a rectified view's fine structure with the reference's below which a warning
#: asks to look at it. Not a gate: under another light a glossy or metallic sample shows other
#: highlights, and its views correlate little even when aligned exactly (the inlier count is the
#: gate for photos of other materials).
LOW_CORRELATION = 0.2
#: Lowe's ratio for the mutual nearest-neighbour matches.
MATCH_RATIO = 0.9
#: RANSAC inlier threshold, pixels of the feature-size copies.
INLIER_THRESHOLD_PX = 2.0
#: Photos smaller than the feature size are enlarged by up to this for feature detection.
MAX_FEATURE_ENLARGEMENT = 2.0
#: Exposure limits: the brightest 1 % of a view must reach this (sRGB) ...
MIN_BRIGHT_LEVEL = 0.1
#: ... at most this share of its pixels may be clipped white ...
MAX_CLIPPED_SHARE = 0.2
#: ... and its luminance must vary at least this much (standard deviation), else it is blank.
MIN_LUMINANCE_STD = 0.01
#: Automatic corner detection runs on a copy with this long side.
DETECTION_SIZE = 512
_LUMA = (0.2126, 0.7152, 0.0722)


class AlignmentError(ValueError):
    """Some photos could not be rectified or aligned; the message lists each and why.

    Attributes:
        report: the :class:`AlignmentReport` with every photo's status (written as
            ``align_report.json`` by the CLI even when alignment fails).
    """

    def __init__(self, message: str, report: AlignmentReport) -> None:
        super().__init__(message)
        self.report = report


class CornerError(ValueError):
    """Corners that are not those of a convex, non-degenerate quadrilateral, or none found."""


@dataclass
class PhotoReport:
    """How one photo was rectified, and how well.

    Attributes:
        index: position in the photo list (0 is the reference).
        path: the file.
        width, height: the photo's size as displayed (EXIF orientation applied).
        method: ``corners`` (given), ``auto`` (found on the background) or ``features`` (aligned
            to the reference by a homography).
        corners: the sample's corners in this photo, ``[[x, y] x 4]`` (top-left, top-right,
            bottom-right, bottom-left of the rectified view); estimated for ``features``.
        keypoints: SIFT features in the feature-size copy (``features`` only).
        matches: ratio-tested mutual nearest-neighbour matches with the reference.
        inliers: matches RANSAC kept.
        reprojection_error_px: mean distance between an inlier's reference feature and its match
            mapped by the homography, in reference-photo pixels; ``reprojection_error_median_px``
            the median.
        scale: linear size of the sample in this photo relative to the reference.
        coverage: share of the sample's area inside this photo.
        correlation: of the rectified view's fine structure with the reference's (1 = identical).
        status: ``ok`` or ``failed``; ``problem`` says why it failed.
    """

    index: int
    path: str
    width: int
    height: int
    method: str = ""
    corners: list[list[float]] | None = None
    keypoints: int | None = None
    matches: int | None = None
    inliers: int | None = None
    reprojection_error_px: float | None = None
    reprojection_error_median_px: float | None = None
    scale: float | None = None
    coverage: float | None = None
    correlation: float | None = None
    status: str = "ok"
    problem: str | None = None


@dataclass
class AlignmentReport:
    """Every photo's :class:`PhotoReport` and the settings; what ``align_report.json`` holds."""

    size: tuple[int, int]
    feature_size: int
    min_inliers: int
    photos: list[PhotoReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.photos) and all(photo.status == "ok" for photo in self.photos)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``size`` as ``[W, H]``)."""
        return {
            "ok": self.ok,
            "size": [self.size[1], self.size[0]],
            "feature_size": self.feature_size,
            "min_inliers": self.min_inliers,
            "photos": [asdict(photo) for photo in self.photos],
        }


@dataclass
class AlignedViews:
    """What :func:`align_photos` returns.

    Attributes:
        views: (V, 3, H, W) rectified views in [0, 1], sRGB as the photos.
        report: how each photo was handled.
    """

    views: Tensor
    report: AlignmentReport


# --- reading ------------------------------------------------------------------------------------


def read_photos(paths: Sequence[str | Path], key: str = "photos") -> list[Tensor]:
    """Read photos of any sizes as displayed (EXIF orientation applied).

    Args:
        paths: the files.
        key: the config key they came from (for messages).

    Returns:
        One (3, H, W) float32 tensor in [0, 1] per photo.

    Raises:
        ValueError: unreadable files (every one is listed).
    """
    images, problems = [], []
    for i, path in enumerate(paths):
        try:
            images.append(to_chw(read_image(path), 3))
        except ImageReadError as err:
            problems.append(f"  {key}[{i}]={path}: {err.reason}")
    if problems:
        raise ValueError(f"{key}: {len(problems)} photo(s) cannot be read:\n" + "\n".join(problems))
    return images


# --- corners ------------------------------------------------------------------------------------


def _cross(o: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """z of (a - o) x (b - o), batched over leading dims."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
        b[..., 0] - o[..., 0]
    )


def polygon_area(points: Tensor) -> float:
    """Signed area of a polygon (N, 2); positive when its vertices run clockwise on screen (y down)."""
    x, y = points[:, 0].double(), points[:, 1].double()
    return float(0.5 * (x * y.roll(-1) - x.roll(-1) * y).sum())


def order_corners(
    points: Sequence[Sequence[float]] | Tensor, image_size: tuple[int, int] | None = None
) -> Tensor:
    """Validate four corners given in any order and sort them into the sample's outline.

    The points are sorted by angle around their centroid (clockwise on screen); the start is the
    corner whose edge to the next one points most nearly to the right, so the rectified view keeps
    the photo's orientation within +-45 degrees.

    Args:
        points: four ``[x, y]`` pixel coordinates.
        image_size: ``(H, W)`` of the photo: corners must lie inside it (half a pixel plus 1 % of
            its long side of slack, for clicks on the border).

    Returns:
        (4, 2) float32: top-left, top-right, bottom-right, bottom-left.

    Raises:
        CornerError: not four finite pairs, outside the photo, repeated points, not convex, or
            a degenerate quadrilateral (an interior angle under 10 or over 170 degrees).
    """
    try:
        corners = torch.as_tensor(points, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise CornerError(f"expected four [x, y] pixel pairs, got {points!r} ({err})") from None
    if corners.shape != (4, 2):
        raise CornerError(
            f"expected four [x, y] pixel pairs, got shape {list(corners.shape)}: {corners.tolist()}"
        )
    if not torch.isfinite(corners).all():
        raise CornerError(f"corners must be finite numbers, got {corners.tolist()}")
    if image_size is not None:
        height, width = image_size
        slack = 0.5 + 0.01 * max(height, width)
        outside = [
            p
            for p in corners.tolist()
            if not (-slack <= p[0] <= width - 1 + slack and -slack <= p[1] <= height - 1 + slack)
        ]
        if outside:
            raise CornerError(f"corners {outside} lie outside the {width}x{height} photo")
    centre = corners.mean(dim=0)
    angles = torch.atan2(corners[:, 1] - centre[1], corners[:, 0] - centre[0])
    ring = corners[angles.argsort()]  # clockwise on screen
    span = float((ring - centre).norm(dim=1).max())
    distances = torch.cdist(ring, ring) + torch.eye(4, dtype=torch.float64) * 1e9
    if float(distances.min()) < max(1.0, 0.01 * span):
        raise CornerError(f"corners {corners.tolist()} repeat a point (expected four distinct corners)")
    turns = _cross(ring.roll(1, 0), ring, ring.roll(-1, 0))  # > 0 at a convex corner (clockwise ring)
    if bool((turns <= 0).any()):
        inner = ring[int(turns.argmin())].tolist()
        raise CornerError(
            f"corners {corners.tolist()} do not outline a convex quadrilateral: {inner} lies inside the "
            "triangle of the other three (expected the four outer corners of the sample)"
        )
    before, after = ring.roll(1, 0) - ring, ring.roll(-1, 0) - ring
    cosines = (before * after).sum(1) / (before.norm(dim=1) * after.norm(dim=1))
    angles_deg = torch.rad2deg(torch.acos(cosines.clamp(-1.0, 1.0)))
    if bool((angles_deg < MIN_CORNER_ANGLE_DEG).any() or (angles_deg > 180.0 - MIN_CORNER_ANGLE_DEG).any()):
        raise CornerError(
            f"corners {corners.tolist()} outline a degenerate quadrilateral (interior angles "
            f"{[round(a, 1) for a in angles_deg.tolist()]} degrees; expected each in "
            f"[{MIN_CORNER_ANGLE_DEG:g}, {180 - MIN_CORNER_ANGLE_DEG:g}])"
        )
    edges = ring.roll(-1, 0) - ring
    start = int(torch.atan2(edges[:, 1], edges[:, 0]).abs().argmin())  # edge closest to +x
    return ring.roll(-start, 0).float()


def _luminance(image: Tensor) -> Tensor:
    """(..., 3, H, W) -> (..., 1, H, W) luma of the sRGB values."""
    weights = torch.tensor(_LUMA, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(dim=-3, keepdim=True)


def _downscale(image: Tensor, long_side: int) -> tuple[Tensor, float]:
    """(C, H, W) -> a copy whose long side is at most ``long_side`` and its scale (new / old)."""
    height, width = image.shape[-2:]
    scale = min(1.0, long_side / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return small, size[1] / width


def _scaling(scale: float) -> Tensor:
    """Pixel coordinates of an image -> those of a copy resized by ``scale`` (pixel centres kept)."""
    shift = 0.5 * scale - 0.5
    return torch.tensor([[scale, 0.0, shift], [0.0, scale, shift], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _erode(mask: Tensor, radius: int) -> Tensor:
    return -F.max_pool2d(-mask, 2 * radius + 1, stride=1, padding=radius)


def _dilate(mask: Tensor, radius: int) -> Tensor:
    return F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)


def _otsu(values: Tensor, bins: int = 256) -> float:
    """Otsu's threshold of 1-D values (maximises the between-class variance)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    hist = torch.histc(values.float(), bins=bins, min=low, max=high).double()
    centres = low + (torch.arange(bins, dtype=torch.float64) + 0.5) * (high - low) / bins
    weight = hist.cumsum(0)
    mean = (hist * centres).cumsum(0)
    total_weight, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - mean * total_weight) ** 2 / (weight * (total_weight - weight)).clamp(
        min=1e-12
    )
    return float(centres[int(between[:-1].argmax())])


def _largest_blob(mask: Tensor) -> Tensor:
    """The connected region of a (1, 1, H, W) 0/1 mask with the deepest interior.

    Seeds at the pixels surviving the most erosions (the middle of the thickest region), then grows
    inside the mask (8-connectivity) until it stops changing.
    """
    seed, eroded = mask, mask
    while True:
        eroded = _erode(eroded, 2)
        if not bool(eroded.any()):
            break
        seed = eroded
    region = seed
    while True:
        grown = region
        for _ in range(16):
            grown = _dilate(grown, 1) * mask
        if torch.equal(grown, region):
            return region
        region = grown


def _convex_hull(points: Tensor) -> Tensor:
    """Convex hull of (N, 2) points (monotone chain), clockwise on screen."""
    pts = sorted({(float(x), float(y)) for x, y in points.tolist()})
    if len(pts) < 3:
        return torch.tensor(pts, dtype=torch.float64)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while (
                len(chain) >= 2
                and (
                    (chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                    - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])
                )
                <= 0
            ):
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return torch.tensor(lower[:-1] + upper[:-1], dtype=torch.float64)


def _simplify_to_quad(hull: Tensor) -> Tensor:
    """Drop hull vertices, the one whose removal loses the least area first, until four remain."""
    ring = hull.clone()
    while ring.shape[0] > 4:
        loss = _cross(ring.roll(1, 0), ring, ring.roll(-1, 0)).abs()
        keep = torch.ones(ring.shape[0], dtype=torch.bool)
        keep[int(loss.argmin())] = False
        ring = ring[keep]
    return ring


def _fit_line(points: Tensor) -> tuple[Tensor, Tensor]:
    """Total-least-squares line through (N, 2) points: (a point on it, its unit direction)."""
    centre = points.mean(dim=0)
    _, _, vh = torch.linalg.svd(points - centre, full_matrices=False)
    return centre, vh[0]


def _intersect(p: Tensor, d: Tensor, q: Tensor, e: Tensor) -> Tensor:
    """Intersection of the lines p + s d and q + t e."""
    det = d[0] * (-e[1]) - d[1] * (-e[0])
    rhs = q - p
    s = (rhs[0] * (-e[1]) - rhs[1] * (-e[0])) / det
    return p + s * d


_OUTLINE_PLACES = 64


def _outline_points(
    finder: Tensor, threshold: float, distance: Tensor, a: Tensor, b: Tensor, outward: Tensor, band: float
) -> Tensor:
    """Where the sample starts along one side: sub-pixel points of its outermost edge.

    Profiles run from ``band`` pixels outside the side ``a``-``b`` inwards, at 64 places along
    its middle 80 %. On each, the first sample where ``finder`` (the sRGB colour distance to the
    background) exceeds ``threshold`` finds the edge (texture inside the sample that resembles the
    background is never reached); the edge is then placed where ``distance`` (the same in linear
    light) crosses halfway between the background's level (the profile outside, up to 1 px from
    the edge) and the sample's just inside the edge (the next 2 px), which is where a blurred
    step is crossed whatever the global threshold.
    """
    per_px = 8
    steps = torch.linspace(band, -band, int(2 * per_px * band) + 1, dtype=torch.float64)  # outside -> inside
    along = torch.linspace(0.1, 0.9, _OUTLINE_PLACES, dtype=torch.float64)
    bases = a + along[:, None] * (b - a)  # (P, 2)
    samples = bases[:, None, :] + steps[None, :, None] * outward  # (P, S, 2)
    height, width = distance.shape
    grid = torch.stack(
        [samples[..., 0] * 2 / (width - 1) - 1, samples[..., 1] * 2 / (height - 1) - 1], dim=-1
    )
    maps = torch.stack([finder, distance])[None].double()  # (1, 2, H, W)
    both = F.grid_sample(maps, grid[None], align_corners=True, padding_mode="border")[0]
    values = both[1]  # (P, S)
    above = both[0] > threshold
    first = above.float().argmax(dim=1)  # first step inside the sample
    valid = above.any(dim=1) & (first > 0)
    points = []
    for row in torch.nonzero(valid)[:, 0].tolist():
        profile, edge = values[row], int(first[row])
        outside = float(profile[: max(1, edge - per_px)].median())
        inside = float(profile[edge : edge + 2 * per_px + 1].median())
        level = 0.5 * (outside + inside)
        crossing = torch.nonzero(profile[: edge + 2 * per_px + 1] > level)
        i = int(crossing[0]) if crossing.numel() else edge
        if i == 0:
            continue
        t = (level - float(profile[i - 1])) / max(float(profile[i] - profile[i - 1]), 1e-12)
        depth = float(steps[i - 1]) + min(max(t, 0.0), 1.0) * float(steps[i] - steps[i - 1])
        points.append(bases[row] + depth * outward)
    return torch.stack(points) if points else torch.zeros(0, 2, dtype=torch.float64)


#: Share of the places along a side where the sample's outline must lie on the fitted line.
MIN_OUTLINE_SUPPORT = 0.5


def _refine_quad(
    quad: Tensor, finder: Tensor, threshold: float, distance: Tensor, band: float
) -> tuple[Tensor | None, str]:
    """Fit a straight line to the sample's outline along each side of ``quad``; intersect them.

    Returns:
        (the refined (4, 2) corners, "") or (None, why): a side where the outline is found at
        fewer than :data:`MIN_OUTLINE_SUPPORT` of the places on one straight line (the sample's
        edge has the background's colour there, or the side is not straight).
    """
    centre = quad.mean(dim=0)
    lines = []
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        direction = (b - a) / (b - a).norm()
        outward = torch.stack([-direction[1], direction[0]])
        if float((a - centre) @ outward) < 0:
            outward = -outward
        found = _outline_points(finder, threshold, distance, a, b, outward, band)
        support, point, line_dir = 0.0, a, direction
        if found.shape[0] >= 16:
            # Where the sample's edge has the background's colour the edge is found too far in,
            # never too far out (outside is background): fit the outermost points, iteratively.
            chosen = found
            for _ in range(5):
                point, line_dir = _fit_line(chosen)
                normal = torch.stack([-line_dir[1], line_dir[0]])
                normal = normal if float(normal @ outward) > 0 else -normal
                signed = (found - point) @ normal  # > 0: further out than the line
                chosen = found[signed >= float(signed.quantile(0.4)) - 0.5]
            point, line_dir = _fit_line(chosen)
            normal = torch.stack([-line_dir[1], line_dir[0]])
            support = float((((found - point) @ normal).abs() <= 1.0).sum()) / _OUTLINE_PLACES
        if support < MIN_OUTLINE_SUPPORT:
            return None, (
                f"the sample's outline is unclear along one side: found on a straight line at {support:.0%} of "
                f"the places checked (expected >= {MIN_OUTLINE_SUPPORT:.0%}); its edge may have the background's colour"
            )
        lines.append((point, line_dir))
    return torch.stack([_intersect(*lines[k - 1], *lines[k]) for k in range(4)]), ""


def _background_model(image: Tensor, border: Tensor) -> Tensor:
    """The background's colour as a quadratic in x and y fitted to the border pixels: (6, 3).

    A lamp or window lights a table unevenly; a smooth fit follows that falloff into the middle of
    the photo, where the sample hides the table. Robust passes drop border pixels far off the fit
    (a sample reaching into the border, a stray object). Evaluate with :func:`_background`.
    """
    basis = _quadratic_basis(*image.shape[-2:])  # (H, W, 6)
    design = basis[border]  # (N, 6)
    values = image.double().permute(1, 2, 0)[border]  # (N, 3)
    keep = torch.ones(design.shape[0], dtype=torch.bool)
    for _ in range(3):
        coefficients = torch.linalg.lstsq(design[keep], values[keep]).solution  # (6, 3)
        residual = (design @ coefficients - values).norm(dim=1)
        keep = residual <= max(0.02, 3.0 * float(residual[keep].median()))
    return coefficients


def _quadratic_basis(height: int, width: int) -> Tensor:
    ys, xs = torch.meshgrid(
        torch.linspace(-1.0, 1.0, height, dtype=torch.float64),
        torch.linspace(-1.0, 1.0, width, dtype=torch.float64),
        indexing="ij",
    )
    return torch.stack([torch.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], dim=-1)


def _background_distance(image: Tensor, coefficients: Tensor) -> Tensor:
    """(H, W) colour distance of a (3, H, W) image to the background model."""
    background = (_quadratic_basis(*image.shape[-2:]) @ coefficients).permute(2, 0, 1).float()
    return (image - background).norm(dim=0)


def _blurred(image: Tensor, long_side: int) -> tuple[Tensor, float]:
    small, scale = _downscale(image.float(), long_side)
    return gaussian_blur2d(small[None], (5, 5), (1.0, 1.0), border_type="replicate")[0], scale


def find_sample_corners(image: Tensor) -> Tensor:
    """Find the corners of a flat sample lying on a plain background of another colour.

    What works: the whole sample inside the photo with a margin, on a background that fills the
    photo's border, is plain (a table, a sheet of paper, a cloth; evenly or unevenly lit) and
    differs from the sample in colour or brightness along the sample's whole outline. What does
    not: busy or patterned backgrounds, other objects touching the sample, a sample touching the
    photo's edge, a sample inside a printed frame or mat, a sample whose edge has the
    background's colour (pass ``corners`` then).

    The background's colour is a smooth fit to the photo's border; each pixel's colour distance
    to it is split by Otsu's threshold; the region with the deepest interior is the sample; its
    convex hull is reduced to four corners; each side is then re-fitted, on a copy twice as
    fine, to the sub-pixel points where the sample starts, and the sides are intersected.

    Args:
        image: (3, H, W) photo in [0, 1].

    Returns:
        (4, 2) corners in pixels of ``image``, ordered as by :func:`order_corners`.

    Raises:
        CornerError: no sample outline found; the message says why.
    """
    small, scale = _blurred(image, DETECTION_SIZE)
    height, width = small.shape[-2:]
    ring = max(2, round(0.03 * min(height, width)))
    border = torch.ones(height, width, dtype=torch.bool)
    border[ring:-ring, ring:-ring] = False
    coefficients = _background_model(small, border)
    distance = _background_distance(small, coefficients)
    border_spread = float(distance[border].quantile(0.5))
    threshold = _otsu(distance.flatten())
    if threshold < 4.0 * border_spread or threshold < 0.04:
        raise CornerError(
            f"no sample found on a plain background: the photo's border is not plain or the sample does not "
            f"stand out from it (border colour spread {border_spread:.3f}, sample/background split at {threshold:.3f})"
        )
    mask = (distance > threshold).float()[None, None]
    mask = _dilate(_erode(mask, 1), 1)  # drop specks
    close = max(2, round(0.015 * max(height, width)))
    mask = _erode(_dilate(mask, close), close)  # join pieces split by background-coloured lines (grout)
    blob = _largest_blob(mask)[0, 0]
    area = float(blob.sum())
    if area < 0.02 * height * width:
        raise CornerError(
            f"no sample found: the largest region off the background covers {area / (height * width):.1%} "
            "of the photo (expected >= 2%)"
        )
    if bool(blob[:ring].any() or blob[-ring:].any() or blob[:, :ring].any() or blob[:, -ring:].any()):
        raise CornerError(
            "the sample touches the photo's edge; the whole sample must be inside the photo with a margin"
        )
    rows, cols = torch.nonzero(blob, as_tuple=True)
    hull = _convex_hull(torch.stack([cols, rows], dim=1).double())
    if hull.shape[0] < 4:
        raise CornerError("no sample found: the region off the background has no area")
    quad = _simplify_to_quad(hull)
    hull_area, quad_area = abs(polygon_area(hull)), abs(polygon_area(quad))
    if quad_area < 0.88 * hull_area:
        raise CornerError(
            f"the region off the background is not a quadrilateral: the best four corners outline "
            f"{quad_area / hull_area:.0%} of its convex hull (expected >= 88%)"
        )
    if area < 0.5 * quad_area:
        raise CornerError(
            f"the sample hardly stands out from the background: {area / quad_area:.0%} of its outline differs "
            "from the background's colour (expected >= 50%)"
        )
    # Refine on a finer copy, the quad's corners scaled to it. The edge is found in sRGB (as the
    # region was) and placed in linear light: a pixel the outline crosses mixes the two sides'
    # radiance, so a blurred edge is crossed halfway in linear values (in sRGB the crossing leans
    # towards the darker side).
    fine, fine_scale = _blurred(image, 2 * DETECTION_SIZE)
    to_fine = _scaling(fine_scale) @ torch.linalg.inv(_scaling(scale))
    fine_quad = transform_points(to_fine, quad)
    finder = _background_distance(fine, coefficients)
    linear = srgb_to_linear(fine)
    fine_ring = max(2, round(0.03 * min(fine.shape[-2:])))
    fine_border = torch.ones(fine.shape[-2:], dtype=torch.bool)
    fine_border[fine_ring:-fine_ring, fine_ring:-fine_ring] = False
    fine_distance = _background_distance(linear, _background_model(linear, fine_border))
    # The coarse outline lies a few pixels inside the true one (cut corners, opening, blur).
    band = max(8.0, 0.03 * max(height, width)) * fine_scale / scale + 2.0
    refined, problem = _refine_quad(fine_quad, finder, threshold, fine_distance, band)
    if refined is None:
        raise CornerError(problem)
    if float((refined - fine_quad).norm(dim=1).max()) > 0.05 * max(fine.shape[-2:]):
        raise CornerError("the sample's sides are not straight (the fitted corners moved too far)")
    full = transform_points(torch.linalg.inv(_scaling(fine_scale)), refined)
    try:
        return order_corners(full, spatial_size(image))
    except CornerError as err:
        raise CornerError(f"the detected outline is unusable: {err}") from None


# --- rectification ------------------------------------------------------------------------------


def rectifying_homography(corners: Tensor, size: tuple[int, int]) -> Tensor:
    """(3, 3) float64 homography from photo pixels to the rectified view's pixels.

    Args:
        corners: (4, 2) ordered corners (top-left, top-right, bottom-right, bottom-left): the
            outer corners of the sample, which land on the outer corners of the view.
        size: (H, W) of the rectified view.
    """
    height, width = size
    target = torch.tensor(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
        dtype=torch.float64,
    )
    return get_perspective_transform(corners.double()[None], target[None])[0]


def warp_photo(image: Tensor, homography: Tensor, size: tuple[int, int]) -> Tensor:
    """Warp a photo by a pixel homography into a view of ``size`` = (H, W), without aliasing.

    When the photo is much finer than the view (a 12 MP photo into a 1024 px view), it is first
    shrunk (antialiased) to about 1.5 output pixels per photo pixel along the sample's longest
    side, so bilinear sampling does not skip details.

    Args:
        image: (3, H, W) photo.
        homography: (3, 3) photo pixels -> view pixels.
        size: (H, W) of the view.

    Returns:
        (3, H, W) view; pixels from outside the photo repeat its border.
    """
    height, width = size
    outline = torch.tensor(
        [[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]],
        dtype=torch.float64,
    )
    photo_outline = transform_points(torch.linalg.inv(homography), outline)
    sides = (photo_outline - photo_outline.roll(-1, 0)).norm(dim=1)
    ratio = float(sides.max()) / max(height, width)
    shrink = 1.5 / ratio if ratio > 1.5 else 1.0
    if shrink < 1.0:
        image, actual = _downscale(image, max(8, round(max(image.shape[-2:]) * shrink)))
        homography = homography @ torch.linalg.inv(_scaling(actual))
    warped = warp_perspective(
        image[None].float(), homography[None].float(), (height, width), mode="bilinear", padding_mode="border"
    )
    return warped[0].clamp(0.0, 1.0)


def transform_points(homography: Tensor, points: Tensor) -> Tensor:
    """(N, 2) points mapped by a (3, 3) homography."""
    homogeneous = torch.cat([points.double(), torch.ones_like(points[:, :1], dtype=torch.float64)], dim=1)
    mapped = homogeneous @ homography.double().T
    return mapped[:, :2] / mapped[:, 2:]


def _clip_area(polygon: Tensor, width: int, height: int) -> float:
    """Area of a convex polygon (N, 2) inside the photo rectangle (Sutherland-Hodgman clipping)."""
    pts = [tuple(p) for p in polygon.tolist()]
    edges = [(0, -0.5, 1.0), (0, width - 0.5, -1.0), (1, -0.5, 1.0), (1, height - 0.5, -1.0)]
    for axis, bound, sign in edges:
        if not pts:
            return 0.0
        clipped = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cur_in, prev_in = sign * (cur[axis] - bound) >= 0, sign * (prev[axis] - bound) >= 0
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                clipped.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
            if cur_in:
                clipped.append(cur)
        pts = clipped
    return abs(polygon_area(torch.tensor(pts, dtype=torch.float64))) if len(pts) >= 3 else 0.0


# --- checks -------------------------------------------------------------------------------------


def exposure_problem(view: Tensor) -> str | None:
    """Why a view (3, H, W) in [0, 1] cannot be used (blank, too dark, blown out), or None."""
    luma = _luminance(view.float())
    bright = float(luma.flatten().quantile(0.99)) if luma.numel() <= 16_000_000 else float(luma.max())
    if bright < MIN_BRIGHT_LEVEL:
        return (
            f"too dark: its brightest 1% of pixels reach {bright:.3f} (expected >= {MIN_BRIGHT_LEVEL}); "
            "expose longer or add light"
        )
    std = float(luma.std())
    if std < MIN_LUMINANCE_STD:
        return f"blank: its brightness hardly varies (standard deviation {std:.4f}, expected >= {MIN_LUMINANCE_STD})"
    clipped = float((view.amax(dim=0) >= 0.995).float().mean())
    if clipped > MAX_CLIPPED_SHARE:
        return (
            f"blown out: {clipped:.0%} of its pixels are clipped white (expected <= {MAX_CLIPPED_SHARE:.0%}); "
            "expose shorter or move the light"
        )
    return None


def structure_correlation(a: Tensor, b: Tensor, side: int = 256) -> float:
    """How alike two rectified views' fine structure is, in [-1, 1] (1 = the same).

    Both are shrunk to ``side``, turned to luminance, high-passed (minus a Gaussian blur, which
    removes the lighting's slow gradients), and their gradient magnitudes are correlated over the
    central 90 %. Gradient magnitudes do not flip sign when a light moves to the other side of a
    bump, as the shading does.
    """

    def detail(view: Tensor) -> Tensor:
        small = F.interpolate(_luminance(view.float())[None], size=(side, side), mode="area")
        small = gaussian_blur2d(small, (5, 5), (1.0, 1.0), border_type="reflect")  # sensor noise out
        high = small - gaussian_blur2d(small, (31, 31), (side / 32, side / 32), border_type="reflect")
        gx = high[..., :, 1:] - high[..., :, :-1]
        gy = high[..., 1:, :] - high[..., :-1, :]
        magnitude = (gx[..., :-1, :] ** 2 + gy[..., :, :-1] ** 2).sqrt()
        margin = side // 20
        return magnitude[..., margin:-margin, margin:-margin].flatten()

    x, y = detail(a), detail(b)
    x, y = x - x.mean(), y - y.mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else 0.0


# --- features -----------------------------------------------------------------------------------


@dataclass
class _Features:
    points: Tensor  # (N, 2) in full-resolution pixels
    descriptors: Tensor  # (N, 128)


def _polygon_mask(polygon: Tensor, height: int, width: int) -> Tensor:
    """(1, 1, H, W) float mask of the pixels inside a convex clockwise polygon (N, 2)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    inside = torch.ones(height, width, dtype=torch.bool)
    for k in range(polygon.shape[0]):
        a, b = polygon[k], polygon[(k + 1) % polygon.shape[0]]
        inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    return inside.float()[None, None]


def _sift(image: Tensor, feature_size: int, max_features: int, region: Tensor | None = None) -> _Features:
    """SIFT features of a photo's copy with long side ``feature_size``; ``region`` (4, 2) limits where.

    Photos smaller than that are enlarged, at most 2x (bicubic): small photos then give about three
    times as many inliers, and corners several times more accurate.
    """
    luma = _luminance(image.float())
    height, width = luma.shape[-2:]
    enlarge = min(MAX_FEATURE_ENLARGEMENT, feature_size / max(height, width))
    if enlarge > 1.0:
        size = (round(height * enlarge), round(width * enlarge))
        small = F.interpolate(luma[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0.0, 1.0)
        scale = size[1] / width
    else:
        small, scale = _downscale(luma, feature_size)
    mask = None
    if region is not None:
        centre = region.mean(dim=0)
        grown = centre + (region - centre) * 1.05  # features on the outline help too
        corners_small = transform_points(_scaling(scale), grown)
        mask = _polygon_mask(corners_small, *small.shape[-2:])
    detector = SIFTFeature(num_features=max_features, upright=False, rootsift=True)
    with torch.inference_mode():
        lafs, _, descriptors = detector(small[None], mask)
    filled = get_laf_scale(lafs)[0, :, 0, 0] > 0  # unfilled slots are zero LAFs
    points_small = get_laf_center(lafs)[0][filled].double()
    points = (
        transform_points(torch.linalg.inv(_scaling(scale)), points_small)
        if len(points_small)
        else points_small
    )
    return _Features(points=points, descriptors=descriptors[0][filled])


@dataclass
class _Homography:
    matrix: Tensor | None  # (3, 3) photo -> reference pixels
    keypoints: int
    matches: int
    inliers: int
    errors: Tensor  # (inliers,) transfer errors in reference pixels


def _match(photo: _Features, reference: _Features, inlier_px: float, seed: int) -> _Homography:
    """RANSAC homography from the photo's features to the reference's."""
    count = photo.points.shape[0]
    if count < 4 or reference.points.shape[0] < 4:
        return _Homography(None, count, 0, 0, torch.zeros(0))
    with torch.inference_mode():
        _, pairs = match_smnn(photo.descriptors, reference.descriptors, MATCH_RATIO)
    if pairs.shape[0] < 4:
        return _Homography(None, count, int(pairs.shape[0]), 0, torch.zeros(0))
    src = photo.points[pairs[:, 0]]
    dst = reference.points[pairs[:, 1]]
    # Estimate in normalised coordinates: float32 RANSAC on raw 4000 px coordinates loses precision.
    shift, norm = dst.mean(dim=0), float(dst.std()) + 1e-9
    to_unit = torch.tensor(
        [[1 / norm, 0, -shift[0] / norm], [0, 1 / norm, -shift[1] / norm], [0, 0, 1]], dtype=torch.float64
    )
    estimator = RANSAC("homography", inl_th=inlier_px / norm, max_iter=20, confidence=0.9999)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        matrix, inlier_mask = estimator(
            transform_points(to_unit, src).float(), transform_points(to_unit, dst).float()
        )
    inliers = int(inlier_mask.sum())
    if inliers < 4 or not bool(torch.isfinite(matrix).all()) or float(matrix.abs().sum()) == 0:
        return _Homography(None, count, int(pairs.shape[0]), inliers, torch.zeros(0))
    homography = torch.linalg.inv(to_unit) @ matrix.double() @ to_unit
    homography = homography / homography[2, 2]
    errors = (transform_points(homography, src[inlier_mask]) - dst[inlier_mask]).norm(dim=1)
    return _Homography(homography, count, int(pairs.shape[0]), inliers, errors)


# --- the pipeline -------------------------------------------------------------------------------


def default_view_size(corners: Tensor, limit: int = 2048) -> tuple[int, int]:
    """Square side for a rectified view: the sample's mean side in the reference, a multiple of 8."""
    sides = (corners - corners.roll(-1, 0)).norm(dim=1)
    side = int(min(limit, max(64, round(float(sides.mean()) / 8) * 8)))
    return side, side


def _corner_hint(index: int, count: int, corner_file: Path | None) -> str:
    """How to pass the sample's corners in photo ``index`` instead."""
    quad = "[[x,y],[x,y],[x,y],[x,y]]"
    if corner_file is not None:
        return f'give the sample\'s four corners in it (pixels, any order) in {corner_file}: {{"{index}": {quad}}}'
    if index == 0:
        return f"give the sample's four corners in it: corners={quad} (pixels, any order)"
    entries = ["null"] * count
    entries[index] = quad
    return f"give the sample's four corners in it: photo_corners=[{','.join(entries)}]"


def align_photos(
    photos: Sequence[Tensor],
    names: Sequence[str],
    *,
    corners: Sequence[Sequence[float]] | Tensor | None = None,
    photo_corners: Sequence[Sequence[Sequence[float]] | Tensor | None] | None = None,
    size: tuple[int, int] | None = None,
    feature_size: int = 1024,
    max_features: int = 4000,
    min_inliers: int = 30,
    seed: int = 0,
    key: str = "photos",
    corner_file: Path | None = None,
) -> AlignedViews:
    """Rectify the first photo (the reference) and align every other photo to it.

    Args:
        photos: (3, H_i, W_i) photos in [0, 1], any sizes; the first is the reference.
        names: one name per photo for the report and messages (e.g. the file paths).
        corners: the sample's four corners in the reference (pixels, any order); None finds them
            (:func:`find_sample_corners`).
        photo_corners: per photo, its own corners or None (aligned by features); entry 0 is the
            same as ``corners``.
        size: (H, W) of the rectified views (default: a square of the sample's size in the
            reference, at most 2048 px).
        feature_size: long side of the copies SIFT runs on.
        max_features: SIFT features per photo.
        min_inliers: a photo aligned with fewer RANSAC inliers fails.
        seed: RANSAC's seed (results are reproducible).
        key: what the photos are called in messages (``photos[i]=<name>``).
        corner_file: where a failure message tells the user to put corners (batch mode's
            ``corners.json``); None points at the ``corners`` / ``photo_corners`` keys.

    Returns:
        The :class:`AlignedViews` (views in the photos' order).

    Raises:
        AlignmentError: some photos failed a gate; the message names each, says why and how to
            pass its corners instead. ``err.report`` holds the full report.
        ValueError: mismatched argument lengths.
    """
    count = len(photos)
    if count == 0 or len(names) != count:
        raise ValueError(f"align_photos: got {count} photos and {len(names)} names (expected the same, >= 1)")
    own: list[Sequence[Sequence[float]] | Tensor | None] = (
        list(photo_corners) if photo_corners is not None else [None] * count
    )
    if len(own) != count:
        raise ValueError(
            f"photo_corners: {len(own)} entries for {count} photos (expected one per photo, null to align by features)"
        )
    if corners is not None:
        if own[0] is not None:
            raise ValueError(
                "corners and photo_corners[0] both give the reference's corners: pass one of them"
            )
        own[0] = corners
    reports = [
        PhotoReport(index=i, path=str(name), width=int(p.shape[-1]), height=int(p.shape[-2]))
        for i, (name, p) in enumerate(zip(names, photos))
    ]
    report = AlignmentReport(
        size=size or (0, 0), feature_size=feature_size, min_inliers=min_inliers, photos=reports
    )

    retake: set[int] = set()  # failed on exposure: corners would not help

    def fail(index: int, problem: str, exposure: bool = False) -> None:
        reports[index].status, reports[index].problem = "failed", problem
        if exposure:
            retake.add(index)

    def raise_failures() -> None:
        lines = [
            f"  {key}[{r.index}]={r.path}{' (the reference)' if r.index == 0 else ''}: {r.problem}; "
            + ("retake it" if r.index in retake else _corner_hint(r.index, count, corner_file))
            for r in reports
            if r.status == "failed"
        ]
        raise AlignmentError(
            f"align: {len(lines)} of {count} photo(s) failed; no maps written:\n" + "\n".join(lines), report
        )

    for i, photo in enumerate(photos):  # photos nothing can be found in, before spending time on features
        problem = exposure_problem(_downscale(photo, DETECTION_SIZE)[0])
        if problem is not None and problem.startswith(("blank", "too dark")):
            fail(i, problem, exposure=True)
    if reports[0].status == "failed":
        raise_failures()

    # 1. the reference
    reference = photos[0]
    try:
        if own[0] is not None:
            ref_corners, reports[0].method = order_corners(own[0], spatial_size(reference)), "corners"
        else:
            ref_corners, reports[0].method = find_sample_corners(reference), "auto"
    except CornerError as err:
        what = "its corners" if own[0] is not None else "no sample found automatically"
        fail(0, f"{what}: {err}")
        raise_failures()
    size = size or default_view_size(ref_corners)
    report.size = size
    rectify_ref = rectifying_homography(ref_corners, size)
    views: list[Tensor | None] = [None] * count
    views[0] = ref_view = warp_photo(reference, rectify_ref, size)
    reports[0].corners = ref_corners.tolist()
    reports[0].scale, reports[0].coverage = 1.0, 1.0
    problem = exposure_problem(ref_view)
    if problem is not None:
        fail(0, f"the rectified sample is {problem}", exposure=True)
        raise_failures()
    log.info(
        "align: reference %s, sample corners %s (%s), views %dx%d",
        names[0],
        [[round(v, 1) for v in p] for p in ref_corners.tolist()],
        reports[0].method,
        size[1],
        size[0],
    )

    # 2. the other photos
    ref_area = polygon_area(ref_corners)
    ref_features: _Features | None = None
    for i in range(1, count):
        entry = reports[i]
        if entry.status == "failed":
            continue
        photo = photos[i]
        given = own[i]
        if given is not None:
            try:
                quad = order_corners(given, spatial_size(photo))
            except CornerError as err:
                fail(i, f"its corners: {err}")
                continue
            entry.method = "corners"
            view = warp_photo(photo, rectifying_homography(quad, size), size)
            # Its own corners fix the sample up to a quarter turn: take the one matching the reference.
            turns = [
                torch.rot90(view, k, dims=(-2, -1)) if size[0] == size[1] or k % 2 == 0 else None
                for k in range(4)
            ]
            scores = [structure_correlation(ref_view, t) if t is not None else -1.0 for t in turns]
            best = int(torch.tensor(scores).argmax())
            turned = turns[best]
            # Turn 0 always exists and scores >= -1 (a correlation), so argmax never picks a missing turn.
            assert turned is not None
            view = turned
            quad = quad.roll(-best, 0)  # a quarter turn anticlockwise brings the next corner to the top-left
            entry.corners, entry.correlation = quad.tolist(), scores[best]
            entry.scale = math.sqrt(polygon_area(quad) / ref_area)
            entry.coverage = 1.0
        else:
            entry.method = "features"
            if ref_features is None:
                ref_features = _sift(reference, feature_size, max_features, ref_corners)
            found = _match(
                _sift(photo, feature_size, max_features),
                ref_features,
                INLIER_THRESHOLD_PX / min(MAX_FEATURE_ENLARGEMENT, feature_size / max(reference.shape[-2:])),
                seed,
            )
            entry.keypoints, entry.matches, entry.inliers = found.keypoints, found.matches, found.inliers
            if found.errors.numel():
                entry.reprojection_error_px = round(float(found.errors.mean()), 3)
                entry.reprojection_error_median_px = round(float(found.errors.median()), 3)
            if found.matrix is None or found.inliers < min_inliers:
                problem = exposure_problem(_downscale(photo, DETECTION_SIZE)[0])
                if problem is not None:  # the likelier cause of the failed match
                    fail(i, problem, exposure=True)
                    continue
                fail(
                    i,
                    f"too few feature matches with the reference ({found.inliers} RANSAC inliers of {found.matches} "
                    f"matches, {found.keypoints} features; expected >= {min_inliers}): it may show another material, "
                    "too little of the sample, or be blurred",
                )
                continue
            quad = transform_points(torch.linalg.inv(found.matrix), ref_corners)
            entry.corners = quad.tolist()
            problem = homography_problem(found.matrix, ref_corners)
            area = polygon_area(quad)
            entry.scale = math.sqrt(abs(area) / ref_area) if area > 0 else None
            entry.coverage = (
                _clip_area(quad, photo.shape[-1], photo.shape[-2]) / abs(area) if area > 0 else 0.0
            )
            if problem is not None:
                fail(i, problem)
                continue
            view = warp_photo(photo, rectify_ref @ found.matrix, size)
            entry.correlation = structure_correlation(ref_view, view)
        if entry.coverage is not None and entry.coverage < MIN_COVERAGE:
            fail(i, f"only {entry.coverage:.1%} of the sample is inside it (expected >= {MIN_COVERAGE:.0%})")
            continue
        problem = exposure_problem(view)
        if problem is not None:
            fail(i, f"the rectified sample is {problem}", exposure=True)
            continue
        if entry.correlation is not None and entry.correlation < LOW_CORRELATION:
            # Not a gate: glossy and metallic samples change their look with the light too much.
            log.warning(
                "align: %s[%d]=%s: its rectified view resembles the reference's little (structure "
                "correlation %.2f); glossy samples do, otherwise look at %s/%d.png",
                key, i, names[i], entry.correlation, ALIGNED_DIR, i,
            )  # fmt: skip
        for name in ("correlation", "scale", "coverage"):
            value = getattr(entry, name)
            if value is not None:
                setattr(entry, name, round(value, 4))
        views[i] = view
        log.info(
            "align: %s -> %s (%s inliers, reprojection error %s px, scale %.2f, correlation %.2f)",
            names[i], entry.method, entry.inliers, entry.reprojection_error_px, entry.scale or 0.0, entry.correlation or 0.0,
        )  # fmt: skip
    if not report.ok:
        raise_failures()
    return AlignedViews(views=torch.stack([v for v in views if v is not None]), report=report)


def homography_problem(homography: Tensor, ref_corners: Tensor) -> str | None:
    """Why a photo -> reference homography is implausible for photos of a flat sample, or None.

    Args:
        homography: (3, 3) photo pixels -> reference pixels.
        ref_corners: (4, 2) the sample's corners in the reference, ordered (clockwise on screen).

    Returns:
        None, or what is wrong: it folds the sample (its outline crosses the horizon, or maps to a
        twisted shape), mirrors it, or scales it by more than :data:`MAX_SCALE_CHANGE`.
    """
    inverse = torch.linalg.inv(homography.double())
    mapped = torch.cat([ref_corners.double(), torch.ones(4, 1, dtype=torch.float64)], dim=1) @ inverse.T
    if bool((mapped[:, 2] * mapped[0, 2] <= 0).any()):
        return "the homography folds the sample (its corners map to both sides of the horizon)"
    quad = mapped[:, :2] / mapped[:, 2:]
    try:
        order_corners(quad)
    except CornerError:
        return "the homography folds the sample (its outline maps to a twisted or degenerate shape)"
    area = polygon_area(quad)
    if area <= 0:
        return "the homography mirrors the sample (a photo of a flat sample from above cannot)"
    ratio = math.sqrt(area / polygon_area(ref_corners))
    if not 1.0 / MAX_SCALE_CHANGE <= ratio <= MAX_SCALE_CHANGE:
        return (
            f"the homography scales the sample by {ratio:.2f} relative to the reference (expected "
            f"within 1/{MAX_SCALE_CHANGE:g} to {MAX_SCALE_CHANGE:g})"
        )
    return None


def write_alignment(out_dir: str | Path, report: AlignmentReport, views: Tensor | None = None) -> Path:
    """Write ``align_report.json`` and, when given, ``aligned/<i>.png`` (the rectified views).

    Args:
        out_dir: the maps' folder (created).
        report: the alignment report.
        views: (V, 3, H, W) rectified views, or None (a failed alignment).

    Returns:
        The report's path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if views is not None:
        for i, view in enumerate(views):
            save_image(out_dir / ALIGNED_DIR / f"{i}.png", view)
    path = out_dir / REPORT_FILE
    with atomic_write(path, "w") as handle:
        json.dump(report.to_dict(), handle, indent=1)
        handle.write("\n")
    return path
