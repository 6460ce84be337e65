"""``python -m neuropbr.infer photos=[...] align=true``: handheld photos -> rectified views -> maps.

Photos are rendered by the project's renderer (:mod:`neuropbr.render.capture`); the model is the
tiny one ``tests/test_infer.py`` trains (3 views, 64 px).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig
from PIL import Image

from neuropbr.align import AlignmentError
from neuropbr.data.io import read_image, save_image
from neuropbr.infer import infer
from neuropbr.maps import PBR_MAPS
from neuropbr.render.capture import handheld_setups, render_captures
from neuropbr.render.materials import generate_material

MAP_FILES = [f"{name}.png" for name in PBR_MAPS]
DARK_TABLE = (0.05, 0.05, 0.06)  # contrasts with the bricks and with their light mortar


@pytest.fixture(scope="module")
def checkpoint(train_tiny: Callable[..., Path]) -> Path:
    return train_tiny("trainer.ema_decay=0.9")


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three 320 px photos of bricks on a dark table (the second as a JPEG stored turned, with an
    EXIF orientation tag), one photo of wood, and the reference's true corners."""
    folder = tmp_path_factory.mktemp("photos")
    bricks = generate_material(3, 256, "bricks").maps
    shots = render_captures(bricks, handheld_setups(), resolution=320, background_albedo=DARK_TABLE)
    paths = []
    for i, shot in enumerate(shots):
        path = folder / f"{i}.png"
        save_image(path, shot.image)
        paths.append(path)
    # A phone writes its pixels as the sensor saw them and an EXIF tag saying how to turn them.
    upright = Image.open(paths[1])
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed after a 90-degree clockwise turn
    paths[1] = folder / "1.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(paths[1], exif=exif, quality=95)
    wood = generate_material(21, 256, "wood").maps
    other = render_captures(wood, handheld_setups()[2:], resolution=320, background_albedo=DARK_TABLE)[0]
    save_image(folder / "wood.png", other.image)
    return {"paths": paths, "wood": folder / "wood.png", "corners": shots[0].corners.tolist()}


@pytest.fixture
def infer_cfg(
    compose_cfg: Callable[..., DictConfig], checkpoint: Path, tmp_path: Path
) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(
            f"checkpoint={checkpoint}",
            f"out={tmp_path / 'maps'}",
            "device=cpu",
            *overrides,
            config_name="infer",
        )

    return make


def _as_list(items: list) -> str:
    return "[" + ",".join(str(p) for p in items) + "]"


def _corners_arg(corners: list[list[float]]) -> str:
    return "[" + ",".join(f"[{x:.2f},{y:.2f}]" for x, y in corners) + "]"


def test_photos_are_aligned_then_predicted(
    infer_cfg: Callable[..., DictConfig], captures: dict, tmp_path: Path
) -> None:
    shuffled = [captures["corners"][i] for i in (3, 1, 0, 2)]
    (out,) = infer(
        infer_cfg(
            f"photos={_as_list(captures['paths'])}",
            "align=true",
            f"corners={_corners_arg(shuffled)}",
            "align_resolution=96",
            "preview=true",
        )
    )
    for name in [*MAP_FILES, "preview.png", "aligned/0.png", "aligned/1.png", "aligned/2.png"]:
        assert (out / name).is_file(), name
    assert read_image(out / "albedo.png").shape == (96, 96, 3)
    report = json.loads((out / "align_report.json").read_text())
    assert report["ok"] and report["size"] == [96, 96]
    photos = report["photos"]
    assert [p["method"] for p in photos] == ["corners", "features", "features"]
    assert all(p["status"] == "ok" for p in photos)
    for photo in photos[1:]:
        assert photo["inliers"] >= 30 and photo["reprojection_error_px"] < 1.0
    assert (photos[1]["width"], photos[1]["height"]) == (320, 320)  # read upright from its EXIF tag


def test_corners_are_found_when_not_given(infer_cfg: Callable[..., DictConfig], captures: dict) -> None:
    (out,) = infer(infer_cfg(f"photos={_as_list(captures['paths'])}", "align=true", "align_resolution=64"))
    report = json.loads((out / "align_report.json").read_text())
    assert report["photos"][0]["method"] == "auto"
    found = torch.tensor(report["photos"][0]["corners"])
    truth = torch.tensor(captures["corners"])
    nearest = torch.cdist(found, truth).min(dim=1).values  # same corners, possibly another start
    assert float(nearest.max()) < 2.5


def test_a_photo_of_another_material_writes_no_maps_and_says_which(
    infer_cfg: Callable[..., DictConfig], captures: dict, tmp_path: Path
) -> None:
    photos = [*captures["paths"][:2], captures["wood"]]
    with pytest.raises(
        AlignmentError, match=r"photos\[2\]=.*wood.png: too few feature matches.*photo_corners="
    ):
        infer(
            infer_cfg(
                f"photos={_as_list(photos)}", "align=true", f"corners={_corners_arg(captures['corners'])}"
            )
        )
    out = tmp_path / "maps"
    assert not any((out / name).exists() for name in MAP_FILES)
    report = json.loads((out / "align_report.json").read_text())
    assert not report["ok"]
    assert [p["status"] for p in report["photos"]] == ["ok", "ok", "failed"]


def test_batch_mode_aligns_each_sample_with_its_corner_file(
    infer_cfg: Callable[..., DictConfig], captures: dict, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    for sample in ("sample_0", "sample_1"):
        folder = root / "input" / "clean" / sample
        folder.mkdir(parents=True)
        for i, path in enumerate(captures["paths"]):
            save_image(folder / f"{i}.png", torch.from_numpy(read_image(path)).permute(2, 0, 1))
    good = root / "input" / "clean" / "sample_0"
    (good / "corners.json").write_text(json.dumps({"0": captures["corners"]}))
    bad = root / "input" / "clean" / "sample_1"
    save_image(bad / "2.png", torch.full((3, 320, 320), 0.5))  # a blank photo
    with pytest.raises(ValueError, match=r"(?s)1 of 2 sample\(s\) failed alignment.*sample_1"):
        infer(infer_cfg(f"input_dir={root}", "align=true", "align_resolution=64", "naming=sample"))
    out = tmp_path / "maps"
    assert all((out / "sample_0" / name).is_file() for name in MAP_FILES)
    assert (
        json.loads((out / "sample_0" / "align_report.json").read_text())["photos"][0]["method"] == "corners"
    )
    assert not any((out / "sample_1" / name).exists() for name in MAP_FILES)
    failed = json.loads((out / "sample_1" / "align_report.json").read_text())
    assert failed["photos"][2]["status"] == "failed" and failed["photos"][2]["problem"].startswith("blank")


def test_alignment_keys_are_checked_before_loading_anything(infer_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ValueError, match=r"photos: raw photos need align=true"):
        infer(infer_cfg("photos=[a.jpg,b.jpg,c.jpg]"))
    with pytest.raises(ValueError, match=r"align=true: views= are already rectified"):
        infer(infer_cfg("views=[a.png,b.png,c.png]", "align=true"))
    with pytest.raises(ValueError, match=r"corners=\[\[0, 0\], \[10, 0\], \[5, 5\]\]: expected four"):
        infer(infer_cfg("photos=[a.jpg,b.jpg,c.jpg]", "align=true", "corners=[[0,0],[10,0],[5,5]]"))
    with pytest.raises(ValueError, match=r"corners=.*not outline a convex quadrilateral"):
        infer(
            infer_cfg("photos=[a.jpg,b.jpg,c.jpg]", "align=true", "corners=[[0,0],[100,0],[40,30],[50,100]]")
        )
    with pytest.raises(ValueError, match=r"photo_corners: 2 entries for 3 photos"):
        infer(infer_cfg("photos=[a.jpg,b.jpg,c.jpg]", "align=true", "photo_corners=[null,null]"))
    with pytest.raises(ValueError, match=r"photo_corners\[1\]=.*repeat a point"):
        infer(
            infer_cfg(
                "photos=[a.jpg,b.jpg,c.jpg]",
                "align=true",
                "photo_corners=[null,[[0,0],[0,0],[9,0],[5,9]],null]",
            )
        )
    with pytest.raises(ValueError, match=r"corners: applies to photos=\[...\] align=true only"):
        infer(infer_cfg("input_dir=somewhere", "align=true", "corners=[[0,0],[9,0],[9,9],[0,9]]"))
    with pytest.raises(ValueError, match=r"align_resolution=8: expected >= 16"):
        infer(infer_cfg("photos=[a.jpg,b.jpg,c.jpg]", "align=true", "align_resolution=8"))
    with pytest.raises(ValueError, match=r"corners=\[\[0, 'zero'\], .*expected four \[x, y\] pixel pairs"):
        infer(infer_cfg("photos=[a.jpg,b.jpg,c.jpg]", "align=true", "corners=[[0,zero],[9,0],[9,9],[0,9]]"))
    with pytest.raises(ConfigCompositionException):  # typed: a list of [x, y] lists
        infer_cfg("corners=5")
