"""Image decoding conventions (docs/architecture.md) and the start-up integrity check."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from folder_datasets import corrupt_middle, random_normal_rgb, truncate, write_png_with_bad_zlib
from PIL import Image

from neuropbr.data.io import (
    ImageReadError,
    decode_normal,
    encode_normal,
    find_image,
    inspect_image,
    load_maps,
    read_image,
    save_image,
    save_png16_color,
)

SIZE = 16


def _gray_ramp() -> np.ndarray:
    return (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 256).astype(np.uint8)


def _write(path: Path, kind: str) -> np.ndarray:
    """Write one image of ``kind``; return the expected (H, W, C) float values in [0, 1]."""
    rgb = np.stack([_gray_ramp(), 255 - _gray_ramp(), np.full((SIZE, SIZE), 7, np.uint8)], axis=-1)
    if kind == "rgb8":
        Image.fromarray(rgb).save(path)
        return rgb / 255.0
    if kind == "rgba8":
        Image.fromarray(np.concatenate([rgb, np.full((SIZE, SIZE, 1), 90, np.uint8)], axis=-1)).save(path)
        return rgb / 255.0  # alpha dropped, colour not premultiplied
    if kind == "l8":
        Image.fromarray(_gray_ramp()).save(path)
        return _gray_ramp()[..., None] / 255.0
    if kind == "la8":
        Image.fromarray(np.stack([_gray_ramp(), np.full((SIZE, SIZE), 3, np.uint8)], -1), mode="LA").save(
            path
        )
        return _gray_ramp()[..., None] / 255.0
    if kind == "palette":
        Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path)
        return np.asarray(Image.open(path).convert("RGB")) / 255.0
    if kind == "gray16":
        data = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 251).astype(np.uint16)
        Image.fromarray(data).save(path)
        return data[..., None] / 65535.0
    if kind == "gray16_dark":  # every value < 256: must still be read as 16-bit
        data = np.full((SIZE, SIZE), 200, np.uint16)
        Image.fromarray(data).save(path)
        return data[..., None] / 65535.0
    if kind == "rgb16":  # values no 8-bit file can hold: read back at full precision
        data = np.stack([_gray_ramp().astype(np.uint16) * 257 + 1, np.full((SIZE, SIZE), 12345, np.uint16),
                         np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) * 97], axis=-1)  # fmt: skip
        save_image(path, torch.from_numpy(data / 65535.0).permute(2, 0, 1), bit_depth=16)
        return data / 65535.0
    if kind == "rgba16":  # 16-bit RGBA, as image editors export normal maps; alpha dropped
        data = np.stack([np.full((SIZE, SIZE), v, np.uint16) for v in (40000, 123, 65535, 1000)], axis=-1)
        save_png16_color(path, data)
        return data[..., :3] / 65535.0
    if kind == "bilevel":
        Image.fromarray(_gray_ramp() > 127).save(path)
        return (_gray_ramp() > 127)[..., None].astype(np.float64)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["rgb8", "rgba8", "l8", "la8", "palette", "gray16", "gray16_dark", "rgb16", "rgba16", "bilevel"],
)
def test_every_png_mode_decodes_to_unit_range(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.png"
    expected = _write(path, kind)
    arr = read_image(path)
    assert arr.dtype == np.float32
    assert arr.shape == expected.shape
    assert 0.0 <= arr.min() and arr.max() <= 1.0
    np.testing.assert_allclose(arr, expected, atol=1e-6)


def test_jpeg_decodes_and_downscales(tmp_path: Path) -> None:
    rgb = np.full((64, 64, 3), (200, 40, 90), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "v.jpg", quality=95)
    arr = read_image(tmp_path / "v.jpg", resolution=16)  # 4x smaller: decoded at reduced DCT scale
    assert arr.shape == (16, 16, 3)
    np.testing.assert_allclose(arr.mean((0, 1)), np.array([200, 40, 90]) / 255.0, atol=3 / 255)


@pytest.mark.parametrize("kind", ["rgb8", "rgba8", "palette", "gray16"])
@pytest.mark.parametrize("resolution", [8, 32])
def test_resize_keeps_range_and_channels(tmp_path: Path, kind: str, resolution: int) -> None:
    path = tmp_path / f"{kind}.png"
    expected = _write(path, kind)
    arr = read_image(path, resolution)
    assert arr.shape == (resolution, resolution, expected.shape[2])
    assert 0.0 <= arr.min() and arr.max() <= 1.0


def test_sixteen_bit_precision_survives_resizing(tmp_path: Path) -> None:
    value = 12345  # not representable in 8 bits
    Image.fromarray(np.full((SIZE, SIZE), value, np.uint16)).save(tmp_path / "r.png")
    arr = read_image(tmp_path / "r.png", resolution=8)
    np.testing.assert_allclose(arr, value / 65535.0, atol=1e-6)
    colour = np.stack([np.full((SIZE, SIZE), v, np.uint16) for v in (12345, 54321, 777)], axis=-1)
    save_image(tmp_path / "n.png", torch.from_numpy(colour / 65535.0).permute(2, 0, 1), bit_depth=16)
    for resolution in (8, 40):
        arr = read_image(tmp_path / "n.png", resolution=resolution)
        assert arr.shape == (resolution, resolution, 3)
        np.testing.assert_allclose(arr, np.broadcast_to(colour[:1, :1] / 65535.0, arr.shape), atol=1e-6)


def test_sixteen_bit_rgb_falls_back_to_eight_bits_without_torchvision_codecs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """torchvision 0.29 deprecated its image codecs: once they are gone, Pillow reads at 8 bits."""
    colour = np.stack([np.full((SIZE, SIZE), v, np.uint16) for v in (12345, 54321, 777)], axis=-1)
    save_image(tmp_path / "n.png", torch.from_numpy(colour / 65535.0).permute(2, 0, 1), bit_depth=16)
    monkeypatch.setitem(sys.modules, "torchvision.io", None)  # import fails
    monkeypatch.setattr("neuropbr.data.io._WARNED_RGB16", False)
    arr = read_image(tmp_path / "n.png")
    np.testing.assert_allclose(arr, np.broadcast_to((colour[:1, :1] >> 8) / 255.0, arr.shape), atol=1e-6)
    assert "read at 8 bits" in caplog.text


def test_truncated_sixteen_bit_rgb_png_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "n.png"
    save_image(path, torch.rand(3, SIZE, SIZE), bit_depth=16)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ImageReadError, match=r"n\.png"):
        read_image(path)


def test_directx_flips_green_only() -> None:
    rgb = torch.rand(3, 4, 4)
    opengl, directx = decode_normal(rgb, "opengl"), decode_normal(rgb, "directx")
    torch.testing.assert_close(directx[1], -opengl[1])
    torch.testing.assert_close(directx[[0, 2]], opengl[[0, 2]])
    torch.testing.assert_close(encode_normal(directx, "directx"), encode_normal(opengl, "opengl"))
    with pytest.raises(ValueError, match="normal_convention='vulkan'"):
        decode_normal(rgb, "vulkan")


@pytest.mark.parametrize("resolution", [8, 16, 40])
def test_maps_load_with_unit_normals_after_resize(tmp_path: Path, resolution: int) -> None:
    rng = np.random.default_rng(0)
    paths = {}
    for name, channels in {"albedo": 3, "roughness": 1, "metallic": 1}.items():
        shape = (SIZE, SIZE, channels) if channels == 3 else (SIZE, SIZE)
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[name])
    paths["normal"] = tmp_path / "normal.png"
    Image.fromarray(random_normal_rgb(SIZE, rng)).save(paths["normal"])
    maps = load_maps(paths, resolution)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "albedo": (3, resolution, resolution),
        "roughness": (1, resolution, resolution),
        "metallic": (1, resolution, resolution),
        "normal": (3, resolution, resolution),
    }
    torch.testing.assert_close(maps["normal"].norm(dim=0), torch.ones(resolution, resolution))
    assert maps["normal"][2].min() > 0  # a height field's normals face up


def test_find_image_prefers_png_and_ignores_case(tmp_path: Path) -> None:
    for name in ("0.JPG", "1.jpeg", "1.png", "2.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert find_image(tmp_path, "0") == tmp_path / "0.JPG"
    assert find_image(tmp_path, "1") == tmp_path / "1.png"
    assert find_image(tmp_path, "2") is None
    assert find_image(tmp_path / "absent", "0") is None


def test_inspect_image_catches_truncated_and_corrupted_files(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    _write(good, "rgb8")
    info = inspect_image(good)
    assert (info.width, info.height, info.format, info.mode) == (SIZE, SIZE, "PNG", "RGB")
    assert info.size_bytes == good.stat().st_size

    def truncated(path: Path) -> None:
        _write(path, "rgb8")
        truncate(path)

    def bit_rot(path: Path) -> None:
        _write(path, "rgb8")
        corrupt_middle(path)

    cases: dict[str, tuple[Callable[[Path], object], str]] = {
        "truncated.png": (truncated, "truncated"),
        "bitrot.png": (bit_rot, "CRC mismatch"),
        "empty.png": (lambda p: p.write_bytes(b""), "empty file"),
        "text.png": (lambda p: p.write_text("not an image"), "cannot read image header"),
        "missing.png": (lambda p: None, "file not found"),
    }
    for name, (make, reason) in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises(ImageReadError, match=reason) as err:
            inspect_image(path)
        assert str(path) in str(err.value) and reason in err.value.reason
        with pytest.raises(ImageReadError):
            read_image(path)  # a broken file is an error, never grey pixels


def test_truncated_jpeg_is_caught_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "v.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    inspect_image(path)
    truncate(path, keep=0.7)
    with pytest.raises(ImageReadError, match="truncated: JPEG"):
        inspect_image(path)


def test_only_deep_inspection_decodes(tmp_path: Path) -> None:
    path = tmp_path / "bad_zlib.png"
    write_png_with_bad_zlib(path)
    inspect_image(path)  # the structure and CRCs are fine
    with pytest.raises(ImageReadError, match="cannot decode pixels"):
        inspect_image(path, deep=True)


def test_image_read_error_round_trips_through_pickle_and_one_argument() -> None:
    err = pickle.loads(pickle.dumps(ImageReadError(Path("/x/0.png"), "truncated")))
    assert str(err) == "/x/0.png: truncated"
    assert str(ImageReadError("whole message")) == "whole message"  # how loader workers re-raise


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A phone photo stored landscape with "rotate 90 CW to view" (EXIF orientation 6).
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, :8] = 255  # left half white as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    upright = read_image(tmp_path / "photo.jpg")
    assert upright.shape == (16, 8, 3)  # displayed portrait
    assert upright[:4].mean() > 0.9 and upright[-4:].mean() < 0.1  # stored left half is now on top
