"""Radiance RGBE (``.hdr``) images: read (flat and run-length encoded scanlines) and write.

Written here rather than pulled in as a dependency: the format is one text header, a resolution
line and 4 bytes per pixel (shared-exponent RGB), optionally run-length encoded per channel
(Greg Ward, "Real Pixels", Graphics Gems II).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neuropbr.utils.files import atomic_write

_MAGIC = (b"#?RADIANCE", b"#?RGBE")


class HDRFormatError(ValueError):
    """A ``.hdr`` file could not be decoded; the message names the path and the problem."""


def read_hdr(path: str | Path) -> Tensor:
    """Read a Radiance ``.hdr`` file.

    Args:
        path: file in RGBE format (``FORMAT=32-bit_rle_rgbe``), with the standard ``-Y H +X W``
            orientation; flat, old-style and new-style run-length encoded scanlines are accepted.

    Returns:
        (3, H, W) float32 linear radiance, row 0 at the top.

    Raises:
        FileNotFoundError: the file does not exist.
        HDRFormatError: bad header, unsupported orientation or format, or truncated data.
    """
    path = Path(path)
    data = path.read_bytes()
    pos = 0

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise HDRFormatError(f"{path}: truncated header")
        text, pos = data[pos:end], end + 1
        return text

    first = line()
    if not first.startswith(_MAGIC):
        raise HDRFormatError(
            f"{path}: not a Radiance HDR file (first line {first[:20]!r}, expected #?RADIANCE)"
        )
    while True:
        text = line().strip()
        if not text:
            break
        if text.startswith(b"FORMAT=") and text != b"FORMAT=32-bit_rle_rgbe":
            raise HDRFormatError(
                f"{path}: {text.decode(errors='replace')} is not supported (expected 32-bit_rle_rgbe)"
            )
    size = line().split()
    if len(size) != 4 or size[0] != b"-Y" or size[2] != b"+X":
        raise HDRFormatError(
            f"{path}: resolution line {b' '.join(size)!r}; only '-Y <height> +X <width>' is supported"
        )
    height, width = int(size[1]), int(size[3])
    rgbe = np.empty((height, width, 4), dtype=np.uint8)
    for row in range(height):
        pos = _read_scanline(data, pos, rgbe[row], path, row)
    return torch.from_numpy(_rgbe_to_float(rgbe)).permute(2, 0, 1).contiguous()


def _read_scanline(data: bytes, pos: int, out: np.ndarray, path: Path, row: int) -> int:
    """Decode one scanline into ``out`` (W, 4); returns the position after it."""
    width = out.shape[0]
    head = data[pos : pos + 4]
    if len(head) < 4:
        raise HDRFormatError(f"{path}: truncated at scanline {row}")
    if 8 <= width < 32768 and head[0] == 2 and head[1] == 2 and not head[2] & 0x80:
        if (head[2] << 8 | head[3]) != width:
            raise HDRFormatError(f"{path}: scanline {row} length {head[2] << 8 | head[3]} != width {width}")
        pos += 4
        for channel in range(4):  # new-style RLE: each channel encoded separately
            col = 0
            while col < width:
                if pos >= len(data):
                    raise HDRFormatError(f"{path}: truncated at scanline {row}")
                count = data[pos]
                if count > 128:  # a run of one value
                    count -= 128
                    if col + count > width:
                        raise HDRFormatError(f"{path}: bad run length at scanline {row}")
                    out[col : col + count, channel] = data[pos + 1]
                    pos += 2
                else:  # literal bytes
                    if count == 0 or col + count > width or pos + 1 + count > len(data):
                        raise HDRFormatError(f"{path}: bad literal run at scanline {row}")
                    out[col : col + count, channel] = np.frombuffer(data, np.uint8, count, pos + 1)
                    pos += 1 + count
                col += count
        return pos
    # Flat pixels, possibly with old-style runs: (1, 1, 1, n) repeats the previous pixel.
    col, shift = 0, 0
    while col < width:
        pixel = data[pos : pos + 4]
        if len(pixel) < 4:
            raise HDRFormatError(f"{path}: truncated at scanline {row}")
        pos += 4
        if pixel[0] == 1 and pixel[1] == 1 and pixel[2] == 1 and col > 0:
            repeat = pixel[3] << shift
            if col + repeat > width:
                raise HDRFormatError(f"{path}: bad run length at scanline {row}")
            out[col : col + repeat] = out[col - 1]
            col += repeat
            shift += 8
        else:
            out[col] = np.frombuffer(pixel, np.uint8)
            col += 1
            shift = 0
    return pos


def _rgbe_to_float(rgbe: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 RGBE -> (..., 3) float32; the +0.5 centres each mantissa bin (Radiance)."""
    exponent = rgbe[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - (128 + 8)), 0.0).astype(np.float32)
    return (rgbe[..., :3].astype(np.float32) + 0.5) * scale[..., None]


def _float_to_rgbe(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float -> (..., 4) uint8 RGBE (shared exponent of the largest channel)."""
    rgb = np.maximum(rgb.astype(np.float64), 0.0)
    peak = rgb.max(axis=-1)
    mantissa, exponent = np.frexp(peak)  # peak = mantissa * 2**exponent, mantissa in [0.5, 1)
    valid = peak > 1e-32
    scale = np.where(valid, mantissa * 256.0 / np.where(valid, peak, 1.0), 0.0)
    out = np.zeros((*rgb.shape[:-1], 4), dtype=np.uint8)
    out[..., :3] = np.clip(np.floor(rgb * scale[..., None]), 0, 255).astype(np.uint8)
    out[..., 3] = np.where(valid, exponent + 128, 0).astype(np.uint8)
    return out


def _rle_channel(values: np.ndarray) -> bytes:
    """New-style RLE of one channel of one scanline: runs of >= 4 equal bytes, literals otherwise."""
    out = bytearray()
    n, start = len(values), 0
    while start < n:
        # Find the next run of at least 4 equal bytes.
        run_start, run_len = start, 0
        while run_start < n:
            run_len = 1
            while (
                run_start + run_len < n and run_len < 127 and values[run_start + run_len] == values[run_start]
            ):
                run_len += 1
            if run_len >= 4:
                break
            run_start += run_len
        for lit in range(start, run_start, 128):  # literals before the run
            chunk = values[lit : min(lit + 128, run_start)]
            out.append(len(chunk))
            out += chunk.tobytes()
        if run_start < n:
            out += bytes((128 + run_len, int(values[run_start])))
            start = run_start + run_len
        else:
            start = n
    return bytes(out)


def write_hdr(path: str | Path, image: Tensor, *, rle: bool = True) -> None:
    """Write linear radiance as a Radiance ``.hdr`` file (atomically).

    Args:
        path: destination file.
        image: (3, H, W) non-negative linear radiance (negative values are written as 0).
        rle: run-length encode scanlines (new style; only for 8 <= W < 32768, flat otherwise).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"write_hdr: image must be (3, H, W), got {tuple(image.shape)}")
    rgbe = _float_to_rgbe(image.detach().cpu().double().permute(1, 2, 0).numpy())
    height, width = rgbe.shape[:2]
    parts = [b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n", f"-Y {height} +X {width}\n".encode()]
    encode = rle and 8 <= width < 32768
    for row in rgbe:
        if encode:
            parts.append(bytes((2, 2, width >> 8, width & 0xFF)))
            parts.extend(_rle_channel(row[:, channel]) for channel in range(4))
        else:
            parts.append(row.tobytes())
    with atomic_write(path) as handle:
        handle.write(b"".join(parts))


@functools.lru_cache(maxsize=32)
def equirect_directions(
    height: int, width: int, *, upper_only: bool = False, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Directions and solid angles of the texels of a z-up equirectangular map.

    Row 0 is the zenith (+z), the last row the nadir; column ``j`` has azimuth
    ``phi = -pi + 2 pi (j + 0.5) / W`` measured from +x towards +y.

    Args:
        upper_only: count only the part of each texel above the horizon (z >= 0), so a row that
            straddles it (odd H) gets its upper share and rows below get 0.

    Returns:
        ``(directions (H, W, 3), solid_angle (H, W))``; the solid angles sum to 4 pi (2 pi with
        ``upper_only``), exactly: each row's share is ``dphi (cos theta_top - cos theta_bottom)``.
        Cached (every sky and map of one size shares them): treat them as read-only.
    """
    theta_edges = torch.linspace(0.0, math.pi, height + 1, dtype=torch.float64, device=device)
    theta = 0.5 * (theta_edges[1:] + theta_edges[:-1])
    phi = -math.pi + 2.0 * math.pi * (torch.arange(width, dtype=torch.float64, device=device) + 0.5) / width
    cos_edges = torch.cos(theta_edges)
    if upper_only:
        cos_edges = cos_edges.clamp(min=0.0)
    band = cos_edges[:-1] - cos_edges[1:]  # exact solid angle per row / dphi
    grid_t, grid_p = torch.meshgrid(theta, phi, indexing="ij")
    directions = torch.stack(
        [torch.sin(grid_t) * torch.cos(grid_p), torch.sin(grid_t) * torch.sin(grid_p), torch.cos(grid_t)],
        dim=-1,
    )
    solid_angle = (band * (2.0 * math.pi / width))[:, None].expand(height, width)
    return directions.float(), solid_angle.float()
