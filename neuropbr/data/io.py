"""Image files <-> arrays, with the value conventions of
docs/architecture.md, "What flows between the parts".

- Views and albedo are sRGB-encoded in [0, 1]; roughness/metallic take the first channel of any
  mode; normals on disk are ``RGB = (n + 1) / 2`` in the OpenGL convention (+Y up) unless told
  ``directx`` (G flipped), and are renormalised on decode.
- 8- and 16-bit PNGs, RGBA (alpha dropped), grayscale, palette and JPEG all load. 16-bit
  grayscale and 16-bit RGB(A) keep their full precision, also through resizing (Pillow has no
  48-bit mode and would round RGB to 8 bits, so those PNGs are decoded by torchvision's libpng).
- A truncated or unreadable file raises :class:`ImageReadError` naming the path; it is never
  silently filled with grey.
- :func:`inspect_image` checks a file without decoding it (header, PNG chunk CRCs up to IEND,
  JPEG end-of-image marker): what the folder dataset runs on every file at start-up.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from neuropbr.maps import PBR_CHANNELS
from neuropbr.utils.tensors import unit_vectors

log = logging.getLogger(__name__)

# Decode untrusted-size images but refuse absurd ones (PIL's decompression-bomb guard stays on).
Image.MAX_IMAGE_PIXELS = 16384 * 16384

#: Extensions the folder dataset looks for, in order of preference when several exist.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(OSError):
    """An image could not be read; the message names the path and why.

    ``reason`` holds the why alone (without the path), for reports that print the path apart.
    A single argument is taken as the whole message (how DataLoader workers re-raise errors).
    """

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        super().__init__(str(path) if reason is None else f"{path}: {reason}")
        self.path = None if reason is None else Path(path)
        self.reason = str(path) if reason is None else reason


# --- finding and inspecting files ---------------------------------------------------------------


def find_image(directory: str | Path, stem: str, names: set[str] | None = None) -> Path | None:
    """The file ``<directory>/<stem><ext>`` for the first of :data:`IMAGE_EXTENSIONS` that exists.

    Extensions match case-insensitively (``0.PNG`` is found).

    Args:
        directory: folder to look in.
        stem: file name without extension (``"0"``, ``"albedo"``).
        names: the folder's file names, when the caller has already listed it (saves a listing).

    Returns:
        The path, or None when no file with a supported extension exists.
    """
    directory = Path(directory)
    if names is None:
        try:
            names = {entry.name for entry in os.scandir(directory) if entry.is_file()}
        except OSError:
            return None
    by_lower = {name.lower(): name for name in sorted(names)}
    for ext in IMAGE_EXTENSIONS:
        name = by_lower.get(f"{stem}{ext}".lower())
        if name is not None:
            return directory / name
    return None


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`inspect_image` learnt about one file (no pixels).

    ``size_bytes`` and ``mtime_ns`` identify the file's version (the decoded cache keys on them).
    """

    path: Path
    width: int
    height: int
    format: str
    mode: str
    size_bytes: int
    mtime_ns: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height


def inspect_image(path: str | Path, *, integrity: bool = True, deep: bool = False) -> ImageInfo:
    """Read an image's header and check that the file is whole, without decoding it unless ``deep``.

    The integrity check reads the file once: a PNG must have valid chunks with matching CRCs up to
    IEND (catches truncation and corrupted bytes); a JPEG must have an end-of-image marker after
    its last scan (catches truncation). ``deep`` also decodes every pixel, which catches what
    neither check can see (e.g. a PNG written with valid CRCs around a broken zlib stream).

    Args:
        path: image file.
        integrity: run the read-once integrity check (header only when False).
        deep: fully decode the pixels too.

    Returns:
        The file's :class:`ImageInfo`.

    Raises:
        ImageReadError: missing, empty, unreadable, truncated or corrupted file.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as err:
        raise ImageReadError(path, f"cannot stat file ({err.strerror})") from err
    if stat.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            fmt, (width, height), mode = img.format or "unknown", img.size, img.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(path, f"cannot read image header ({err})") from err
    if integrity or deep:
        if fmt == "PNG":
            _check_png_chunks(path)
        elif fmt == "JPEG":
            _check_jpeg_markers(path)
    if deep:
        try:
            with Image.open(path) as img:
                img.load()
                problem = _value_problem(img)
        except (OSError, ValueError, SyntaxError) as err:
            raise ImageReadError(path, f"cannot decode pixels ({err})") from err
        if problem:
            raise ImageReadError(path, problem)
    return ImageInfo(path, width, height, fmt, mode, stat.st_size, stat.st_mtime_ns)


def _value_problem(img: Image.Image) -> str | None:
    """What is wrong with a decoded image's values, if anything: NaN/inf pixels, or float pixels
    outside [0, 1] / 32-bit integer pixels outside [0, 65535] (clipped when loading).

    8- and 16-bit modes cannot hold a wrong value; only float (F) and 32-bit integer (I) can.
    """
    if img.mode not in ("F", "I"):
        return None
    arr = np.asarray(img)
    low, high = (0.0, 1.0) if img.mode == "F" else (0, 65535)
    nonfinite = int(arr.size - np.count_nonzero(np.isfinite(arr))) if img.mode == "F" else 0
    if nonfinite:
        return (
            f"non-finite pixels: {nonfinite} of {arr.size} are NaN or inf (mode {img.mode}); training "
            "on them makes the loss NaN"
        )
    outside = int(np.count_nonzero((arr < low) | (arr > high)))
    if outside:
        return (
            f"out-of-range pixels: {outside} of {arr.size} outside [{low}, {high}] (min {arr.min():g}, "
            f"max {arr.max():g}, mode {img.mode}); loading clips them"
        )
    return None


def _check_png_chunks(path: Path) -> None:
    """Walk the PNG's chunks up to IEND, checking each CRC (bytes after IEND are ignored)."""
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageReadError(path, "corrupted: bad PNG signature")
    offset = len(_PNG_SIGNATURE)
    while True:
        if offset + 8 > len(data):
            raise ImageReadError(path, f"truncated: PNG ends at byte {len(data)} before its IEND chunk")
        length, tag = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 8 + length + 4
        if end > len(data):
            raise ImageReadError(
                path,
                f"truncated: PNG chunk {tag.decode('latin-1')!r} at byte {offset} needs {end} bytes, "
                f"file has {len(data)}",
            )
        payload = memoryview(data)[offset + 4 : offset + 8 + length]  # tag + chunk data
        (expected_crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(payload) != expected_crc:
            raise ImageReadError(
                path, f"corrupted: CRC mismatch in PNG chunk {tag.decode('latin-1')!r} at byte {offset}"
            )
        if tag == b"IEND":
            return
        offset = end


def _check_jpeg_markers(path: Path) -> None:
    """A whole JPEG has an end-of-image marker (FFD9) after the start of its last scan (FFDA).

    Entropy-coded data never contains FFD9/FFDA (0xFF bytes are stuffed), so a file cut inside a
    scan has no EOI after that scan's header; data appended after the EOI is tolerated.
    """
    data = path.read_bytes()
    if not data.startswith(b"\xff\xd8"):
        raise ImageReadError(path, "corrupted: bad JPEG start-of-image marker")
    last_scan = data.rfind(b"\xff\xda")
    if data.rfind(b"\xff\xd9") < max(last_scan, 2):
        raise ImageReadError(path, f"truncated: JPEG ends at byte {len(data)} without an end-of-image marker")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    return inspect_image(path, integrity=False).size


# --- decoding -----------------------------------------------------------------------------------


def read_image(path: str | Path, resolution: int | None = None) -> np.ndarray:
    """Read an image as (H, W, C) float32 in [0, 1], C = 1 or 3, optionally resized to a square.

    Alpha is dropped (not composited); palette, CMYK and other colour modes become RGB; 1-bit and
    grayscale(+alpha) become one channel; 16-bit grayscale is scaled by 65535 and resized in float.
    Shrinking uses a box filter (no aliasing), enlarging bicubic. Large JPEGs are decoded directly
    at a reduced scale (libjpeg's DCT scaling) when that still leaves at least ``resolution`` pixels.

    Args:
        path: image file (PNG, JPEG, or anything else Pillow reads).
        resolution: side of the square output; None keeps the file's size.

    Returns:
        (H, W, C) float32 array in [0, 1].

    Raises:
        ImageReadError: missing, unreadable or truncated file.
    """
    path = Path(path)
    if _is_png_rgb16(path):
        full_depth = _read_png_rgb16(path, resolution)
        if full_depth is not None:
            return full_depth
    try:
        with Image.open(path) as img:
            if resolution is not None and img.format == "JPEG":
                img.draft(img.mode, (resolution, resolution))
            img.load()  # decode now: a truncated file raises here, not later as grey pixels
            # Phone photos store their rotation as an EXIF tag: apply it, as image viewers do.
            upright = ImageOps.exif_transpose(img) if img.format in ("JPEG", "TIFF", "MPO") else img
            return _to_float_array(upright, resolution)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(path, f"cannot decode image ({err})") from err


_WARNED_RGB16 = False


def _is_png_rgb16(path: Path) -> bool:
    """Whether ``path`` is a PNG of 16-bit RGB or RGBA samples (from its IHDR chunk)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False  # Pillow's path reports the error
    # signature (8) | length (4) | "IHDR" (4) | width (4) | height (4) | bit depth | colour type
    return head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 6)


def _read_png_rgb16(path: Path, resolution: int | None) -> np.ndarray | None:
    """(H, W, 3) float32 in [0, 1] of a 16-bit RGB(A) PNG at full precision, alpha dropped.

    torchvision's libpng decoder is the one at hand that keeps 16-bit colour (torch already
    depends on it). torchvision 0.29 deprecated its image codecs in favour of TorchCodec; where
    they are gone, this returns None and Pillow's 8-bit reading is used, with a warning.
    """
    global _WARNED_RGB16  # warn once per process, not once per file
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_png, read_file
    except ImportError:
        if not _WARNED_RGB16:
            _WARNED_RGB16 = True
            log.warning("this torchvision cannot decode PNGs: 16-bit RGB PNGs are read at 8 bits")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # UNCHANGED keeps 16-bit samples (uint16; int32 in torchvision < 0.21).
            chw = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)  # (3 or 4, H, W)
    except RuntimeError as err:
        raise ImageReadError(path, f"cannot decode 16-bit PNG ({err})") from err
    arr = (chw[:3].to(torch.float32) / 65535.0).permute(1, 2, 0).numpy()  # (H, W, 3)
    if resolution is not None and arr.shape[:2] != (resolution, resolution):
        arr = np.stack([_resize_float(arr[..., c], resolution) for c in range(3)], axis=-1)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _to_float_array(img: Image.Image, resolution: int | None) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] from any PIL mode, alpha dropped, bit depth respected."""
    mode = img.mode
    target = None if resolution is None or img.size == (resolution, resolution) else resolution
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float32)
        if mode == "F" and not np.isfinite(arr).all():
            # Clipping keeps NaN: it would reach the loss. Refuse the file (its sample is skipped
            # with data.on_error=skip).
            raise ValueError(f"{_value_problem(img)}")
        if mode != "F":
            arr /= _integer_peak(img, arr)
        arr = np.clip(arr, 0.0, 1.0)
        if target is not None:
            arr = _resize_float(arr, target)
        return arr[..., None]
    # 8-bit modes: bring to L or RGB first so resampling never mixes in alpha or palette indices.
    img = img.convert("L") if mode in ("1", "L", "LA") else img.convert("RGB") if mode != "RGB" else img
    if target is not None:
        img = img.resize((target, target), _resample_filter(img.size, target))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr if arr.ndim == 3 else arr[..., None]


def _integer_peak(img: Image.Image, arr: np.ndarray) -> float:
    """Full-scale value of an integer image: 65535 for 16-bit data, 255 for 8-bit data in mode I."""
    if img.mode in _SIXTEEN_BIT_MODES or img.format == "PNG":
        # Pillow only opens 16-bit grayscale PNGs as I / I;16, so the depth is known, even for a
        # dark map whose values all sit below 256.
        return 65535.0
    return 65535.0 if arr.max(initial=0) > 255 else 255.0


def _resample_filter(size: tuple[int, int], target: int) -> Image.Resampling:
    return Image.Resampling.BOX if max(size) > target else Image.Resampling.BICUBIC


def _resize_float(arr: np.ndarray, target: int) -> np.ndarray:
    """Resize a (H, W) float32 array through Pillow's float mode (no 8-bit rounding)."""
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    resized = img.resize((target, target), _resample_filter(img.size, target))
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def load_views(paths: Sequence[str | Path], resolution: int) -> Tensor:
    """Decode V view images into one tensor.

    Args:
        paths: the V view files.
        resolution: side of the square output.

    Returns:
        (V, 3, resolution, resolution) float32 in [0, 1] (sRGB, as on disk).
    """
    return torch.stack([to_chw(read_image(path, resolution), 3) for path in paths])


def load_maps(
    paths: Mapping[str, str | Path], resolution: int, normal_convention: str = "opengl"
) -> dict[str, Tensor]:
    """Decode the four PBR maps of a material with the conventions above.

    Args:
        paths: ``{"albedo", "roughness", "metallic", "normal"} -> file``.
        resolution: side of the square output.
        normal_convention: ``opengl`` (+Y up, as stored by default) or ``directx`` (G flipped).

    Returns:
        ``{"albedo": (3, R, R) in [0, 1], "roughness": (1, R, R), "metallic": (1, R, R),
        "normal": (3, R, R) unit vectors}``.
    """
    maps = {
        name: to_chw(read_image(paths[name], resolution), channels) for name, channels in PBR_CHANNELS.items()
    }
    maps["normal"] = decode_normal(maps["normal"], normal_convention)
    return maps


# --- value conventions --------------------------------------------------------------------------

_NORMAL_CONVENTIONS = ("directx", "opengl")


def decode_normal(rgb: Tensor, convention: str = "opengl") -> Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> unit normals in [-1, 1] (G flipped for DirectX)."""
    if convention not in _NORMAL_CONVENTIONS:
        raise ValueError(f"normal_convention={convention!r}; choose one of {list(_NORMAL_CONVENTIONS)}")
    n = rgb * 2.0 - 1.0
    if convention == "directx":
        n = n * torch.tensor([1.0, -1.0, 1.0], dtype=n.dtype, device=n.device).view(3, 1, 1)
    # F.normalize spelt out (unit_vectors): it dominated loading from the decoded cache.
    return unit_vectors(n, dim=-3)


def encode_normal(normal: Tensor, convention: str = "opengl") -> Tensor:
    """Unit normals ``(..., 3, H, W)`` -> RGB ``(n + 1) / 2`` in [0, 1]."""
    if convention not in _NORMAL_CONVENTIONS:
        raise ValueError(f"normal_convention={convention!r}; choose one of {list(_NORMAL_CONVENTIONS)}")
    if convention == "directx":
        normal = normal * torch.tensor([1.0, -1.0, 1.0], dtype=normal.dtype, device=normal.device).view(
            3, 1, 1
        )
    return ((normal + 1.0) * 0.5).clamp(0.0, 1.0)


def to_chw(array: np.ndarray, channels: int) -> Tensor:
    """(H, W, C) array -> (channels, H, W) float32 tensor (first channel repeated or RGB kept)."""
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
    if channels == 1:
        return t[:1]
    if t.shape[0] == 1:
        return t.expand(channels, -1, -1).clone()
    return t[:channels]


def save_image(path: str | Path, image: Tensor, bit_depth: int = 8) -> None:
    """Write a (C, H, W) tensor in [0, 1] (C = 1 or 3) as an 8- or 16-bit PNG (or JPEG by suffix)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth={bit_depth}; choose 8 or 16")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image.detach().float().clamp(0.0, 1.0).cpu().permute(1, 2, 0).numpy()
    if bit_depth == 16:
        if path.suffix.lower() not in (".png",):
            raise ValueError(f"{path}: 16-bit output needs a .png file")
        data = np.round(arr * 65535.0).astype(np.uint16)
        if data.shape[2] == 1:
            Image.fromarray(data[..., 0]).save(path)  # uint16 -> mode "I;16"
        else:
            save_png16_color(path, data)
        return
    data = np.round(arr * 255.0).astype(np.uint8)
    Image.fromarray(data[..., 0] if data.shape[2] == 1 else data).save(path)


def save_png16_color(path: Path, data: np.ndarray) -> None:
    """Write (H, W, 3 or 4) uint16 as a 16-bit RGB or RGBA PNG.

    PIL cannot write 48/64-bit colour PNGs; write one with zlib (a PNG is small enough to spell out).
    """
    height, width, channels = data.shape
    colour_type = {3: 2, 4: 6}[channels]  # PNG colour types: RGB, RGBA
    raw = b"".join(b"\x00" + data[row].astype(">u2").tobytes() for row in range(height))

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    png = (
        _PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )
    path.write_bytes(png)
