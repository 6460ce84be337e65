"""Rectification and alignment of handheld photos (neuropbr.align) against the project's renderer.

One material is photographed by :func:`~neuropbr.render.capture.handheld_setups`: three
perspective cameras (tilted 12-30 degrees, turned in-plane, from three sides), three lamps, +-0.3 EV
and sensor noise, the sample lying on a plain table. Every capture knows where the sample's corners
are, and :func:`~neuropbr.render.capture.aligned_render` renders what its rectified view must
show (same eye, light and exposure, texel for texel), so the checks are exact up to resampling.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from neuropbr.align import (
    AlignmentError,
    CornerError,
    align_photos,
    find_sample_corners,
    homography_problem,
    order_corners,
    read_photos,
    rectifying_homography,
    transform_points,
    warp_photo,
)
from neuropbr.render.capture import (
    aligned_render,
    handheld_setups,
    render_captures,
)
from neuropbr.render.materials import generate_material

PHOTO = 320  # px, square renders; one is cropped and one enlarged below
VIEW = 160  # px, side of the rectified views
DARK_TABLE = (0.05, 0.05, 0.06)  # contrasts with the bricks and with their light mortar


@pytest.fixture(scope="module")
def scene() -> dict:
    """Bricks on a dark table, three handheld photos of different sizes, and the truth."""
    torch.manual_seed(0)
    material = generate_material(3, 256, "bricks")
    setups = handheld_setups()
    captures = render_captures(material.maps, setups, resolution=PHOTO, background_albedo=DARK_TABLE)
    photos = [c.image for c in captures]
    corners = [c.corners.double() for c in captures]  # texture order: top-left, top-right, ...
    # Photo 1 taken with a finer sensor (enlarged 1.25x), photo 2 cropped to 290x270: sizes differ.
    big = round(PHOTO * 1.25)
    photos[1] = torch.nn.functional.interpolate(photos[1][None], size=(big, big), mode="bicubic")[0].clamp(
        0, 1
    )
    corners[1] = (corners[1] + 0.5) * (big / PHOTO) - 0.5
    photos[2] = photos[2][:, 30:300, 10:300]
    corners[2] = corners[2] - torch.tensor([10.0, 30.0], dtype=torch.float64)
    truth = [aligned_render(material.maps, setup, VIEW) for setup in setups]
    return {"material": material, "setups": setups, "photos": photos, "corners": corners, "truth": truth}


def _rotate_to(view: torch.Tensor, corners_in_view_order: torch.Tensor, texture_corners: torch.Tensor) -> int:
    """Quarter turns between a rectified view and texture space: which texture corner is its top-left."""
    distances = (texture_corners - corners_in_view_order[0]).norm(dim=1)
    return int(distances.argmin())


def _in_texture_orientation(view: torch.Tensor, start: int) -> torch.Tensor:
    """The view turned so that its top-left is texture corner 0 (``start`` = texture corner at its top-left)."""
    return torch.rot90(view, -start, dims=(-2, -1))


def test_corners_in_any_order_give_the_same_outline() -> None:
    square = [[10.0, 10.0], [90.0, 12.0], [95.0, 80.0], [8.0, 85.0]]
    expected = order_corners(square)
    for order in ([2, 0, 3, 1], [3, 2, 1, 0], [1, 3, 0, 2]):
        assert torch.equal(order_corners([square[i] for i in order]), expected)
    assert expected[0].tolist() == [10.0, 10.0]  # top-left first, then clockwise on screen
    assert expected[1].tolist() == [90.0, 12.0]


def test_bad_corners_are_refused_with_the_reason() -> None:
    with pytest.raises(
        CornerError, match=r"do not outline a convex quadrilateral: \[40.0, 30.0\] lies inside"
    ):
        order_corners([[0, 0], [100, 0], [40, 30], [50, 100]])
    with pytest.raises(CornerError, match="degenerate quadrilateral"):
        order_corners([[0, 0], [50, -1], [100, 0], [50, 80]])  # a 178-degree corner
    with pytest.raises(CornerError, match="repeat a point"):
        order_corners([[0, 0], [0, 0], [100, 0], [50, 80]])
    with pytest.raises(CornerError, match="expected four"):
        order_corners([[0, 0], [100, 0], [50, 80]])
    with pytest.raises(CornerError, match=r"lie outside the 100x50 photo"):
        order_corners([[0, 0], [99, 0], [99, 80], [0, 49]], image_size=(50, 100))


def test_rectifying_with_the_true_corners_reproduces_the_aligned_render(scene: dict) -> None:
    view = warp_photo(
        scene["photos"][0], rectifying_homography(scene["corners"][0], (VIEW, VIEW)), (VIEW, VIEW)
    )
    error = (view - scene["truth"][0]).abs().mean()
    assert error < 0.03, f"mean abs error {error:.4f} between rectified capture and aligned render"


def test_sample_corners_are_found_on_a_contrasting_table(scene: dict) -> None:
    for photo, corners in zip(scene["photos"], scene["corners"]):
        found = find_sample_corners(photo)
        truth = order_corners(corners)
        error = (found - truth).norm(dim=1).max()
        assert error < 2.5, f"corner error {error:.2f} px: found {found.tolist()}, truth {truth.tolist()}"


def test_no_corners_are_found_without_a_sample_or_on_a_busy_background(scene: dict) -> None:
    plain = torch.full((3, 200, 260), 0.5) + 0.01 * torch.randn(3, 200, 260)
    with pytest.raises(CornerError, match="no sample found"):
        find_sample_corners(plain.clamp(0, 1))
    busy = torch.rand(3, 200, 260)
    with pytest.raises(CornerError, match="no sample found"):
        find_sample_corners(busy)
    cut = scene["photos"][0][:, 60:, :]  # the sample runs off the photo's top edge
    with pytest.raises(CornerError, match="touches the photo's edge"):
        find_sample_corners(cut)


@pytest.fixture(scope="module")
def aligned(scene: dict):
    shuffled = scene["corners"][0][[2, 0, 3, 1]].tolist()  # any order is accepted
    return align_photos(scene["photos"], ["a.png", "b.png", "c.png"], corners=shuffled, size=(VIEW, VIEW))


def test_aligned_views_match_the_aligned_renders(scene: dict, aligned) -> None:
    assert aligned.views.shape == (3, 3, VIEW, VIEW)
    assert aligned.report.ok
    start = _rotate_to(aligned.views[0], torch.tensor(aligned.report.photos[0].corners), scene["corners"][0])
    for i, (view, truth) in enumerate(zip(aligned.views, scene["truth"])):
        error = (_in_texture_orientation(view, start) - truth).abs().mean()
        assert error < 0.04, f"photo {i}: mean abs error {error:.4f} against the aligned render"


def test_estimated_corners_reproject_onto_the_true_ones(scene: dict, aligned) -> None:
    photos = aligned.report.photos
    start = _rotate_to(aligned.views[0], torch.tensor(photos[0].corners), scene["corners"][0])
    for i in (1, 2):
        estimated = torch.tensor(photos[i].corners, dtype=torch.float64)
        truth = scene["corners"][i].roll(-start, 0)  # texture corners in the views' order
        error = (estimated - truth).norm(dim=1).max()
        assert error < 1.5, f"photo {i}: corner reprojection error {error:.2f} px"
        assert photos[i].method == "features"
        assert photos[i].inliers >= 30 and photos[i].reprojection_error_px < 1.0
        assert photos[i].coverage == 1.0 and 0.5 < photos[i].scale < 2.0
    assert [p.status for p in photos] == ["ok", "ok", "ok"]


def test_a_photo_with_its_own_corners_is_turned_to_match_the_reference(scene: dict, aligned) -> None:
    own = scene["corners"][1][[1, 3, 0, 2]].tolist()
    result = align_photos(
        scene["photos"],
        ["a", "b", "c"],
        corners=scene["corners"][0].tolist(),
        photo_corners=[None, own, None],
        size=(VIEW, VIEW),
    )
    assert result.report.photos[1].method == "corners"
    error = (result.views[1] - aligned.views[1]).abs().mean()
    assert error < 0.03, f"corners-rectified view differs from the feature-aligned one by {error:.4f}"


def test_a_photo_of_another_material_fails_naming_it_and_how_to_pass_corners(scene: dict) -> None:
    other = generate_material(21, 256, "wood")
    impostor = render_captures(
        other.maps, scene["setups"][2:], resolution=PHOTO, background_albedo=DARK_TABLE
    )[0]
    photos = [scene["photos"][0], scene["photos"][1], impostor.image]
    with pytest.raises(AlignmentError) as info:
        align_photos(
            photos, ["a.png", "b.png", "wood.png"], corners=scene["corners"][0].tolist(), size=(VIEW, VIEW)
        )
    message = str(info.value)
    assert "photos[2]=wood.png: too few feature matches with the reference" in message
    assert "photo_corners=[null,null,[[x,y],[x,y],[x,y],[x,y]]]" in message
    assert "photos[1]" not in message
    statuses = [p.status for p in info.value.report.photos]
    assert statuses == ["ok", "ok", "failed"]


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda p: torch.full_like(p, 0.4), "blank"),
        (lambda p: p * 0.03, "too dark"),
        (lambda p: (p * 6.0).clamp(0, 1), "blown out"),
    ],
)
def test_blank_dark_and_blown_out_photos_fail(scene: dict, spoil, reason: str) -> None:
    photos = [scene["photos"][0], spoil(scene["photos"][1]), scene["photos"][2]]
    with pytest.raises(AlignmentError, match=rf"photos\[1\]=b: (the rectified sample is )?{reason}"):
        align_photos(photos, ["a", "b", "c"], corners=scene["corners"][0].tolist(), size=(VIEW, VIEW))


def test_a_bad_reference_fails_before_any_alignment(scene: dict) -> None:
    with pytest.raises(AlignmentError, match=r"photos\[0\]=a \(the reference\): its corners: .*convex"):
        align_photos(scene["photos"], ["a", "b", "c"], corners=[[0, 0], [100, 0], [40, 30], [50, 100]])
    with pytest.raises(AlignmentError, match=r"photos\[0\]=a \(the reference\): blank.*; retake it"):
        align_photos([torch.full((3, 64, 64), 0.5), *scene["photos"][1:]], ["a", "b", "c"])


def test_implausible_homographies_are_named() -> None:
    reference = torch.tensor(
        [[100.0, 100.0], [200.0, 100.0], [200.0, 200.0], [100.0, 200.0]], dtype=torch.float64
    )
    mirror = torch.tensor([[-1.0, 0, 300], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    assert "mirrors" in homography_problem(mirror, reference)
    shrink = torch.diag(torch.tensor([0.1, 0.1, 1.0], dtype=torch.float64))  # photo px -> reference px
    assert "scales the sample by 10.00" in homography_problem(shrink, reference)
    # The photo's horizon (w = y - 150 in reference pixels) runs through the sample.
    fold = torch.linalg.inv(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, -150]], dtype=torch.float64))
    assert "folds" in homography_problem(fold, reference)
    shift = torch.tensor([[1.0, 0, 5], [0, 1, -3], [0, 0, 1]], dtype=torch.float64)
    assert homography_problem(shift, reference) is None


def test_photos_are_read_upright_from_their_exif_orientation(tmp_path) -> None:
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 7), size=(40, 60), mode="bilinear")[0]
    upright = (smooth * 255).to(torch.uint8)  # smooth: JPEG keeps it close
    image = Image.fromarray(upright.permute(1, 2, 0).numpy())
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: a viewer rotates it 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=98)
    (photo,) = read_photos([path])
    assert photo.shape == (3, 40, 60)
    assert (photo - upright.float() / 255).abs().mean() < 0.03


def test_rectifying_homography_maps_corners_to_the_view_corners() -> None:
    corners = order_corners([[30.0, 20.0], [250.0, 40.0], [230.0, 200.0], [20.0, 180.0]])
    homography = rectifying_homography(corners, (100, 150))
    mapped = transform_points(homography, corners)
    expected = torch.tensor([[-0.5, -0.5], [149.5, -0.5], [149.5, 99.5], [-0.5, 99.5]], dtype=torch.float64)
    assert torch.allclose(mapped, expected, atol=1e-6)
