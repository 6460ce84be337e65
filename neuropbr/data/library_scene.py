"""Samples from a material library: a random crop of a material rendered into V views.

Sample ``k`` of material ``M`` depends only on ``(seed, M's name, k, M's aspect ratio)``: a crop
(:func:`~neuropbr.render.texture_crop.draw_crop`: centre, side at a random scale, a random
turn), the scene of :func:`~neuropbr.render.scene.draw_sample` (cameras, lights, exposure, dirt)
and, with ``hdri`` maps, whether an environment map lights it and which. So ``python -m
neuropbr.synth materials=...`` and ``data=library`` give the same samples, and adding materials
or samples never changes existing ones.

The sample's target maps are the crop at ``resolution`` px (normals turned with it). Aligned
views see exactly those maps. Perspective views look at the crop from a tilted camera, which also
sees the texture around it: the camera is handed a larger window with the same centre and turn
(``context`` times the side, just enough for the view's corners), so what it sees beyond the crop
is the real texture, not a wrapped copy of the crop (a crop does not tile).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.data.library import LibraryMaterial
from neuropbr.maps import PBR_MAPS
from neuropbr.render.camera import PerspectiveCamera
from neuropbr.render.hdr import read_hdr
from neuropbr.render.scene import CAMERAS, VARIANTS, build_camera, draw_sample, render_sample
from neuropbr.render.texture_crop import crop_maps, draw_crop
from neuropbr.utils.seeding import derive_seed

#: Height environment maps are kept at: the lights integrate them into a few cells anyway.
_ENVIRONMENT_HEIGHT = 128


def find_hdris(path: str | Path | None) -> list[Path]:
    """The ``.hdr`` files of ``path`` (a file, or a folder searched recursively), sorted.

    Raises:
        FileNotFoundError: ``path`` does not exist, or the folder holds no ``.hdr`` file.
    """
    if path is None:
        return []
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"hdri={path}: no such file or folder (expected .hdr environment maps)")
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".hdr" and p.is_file())
    if not found:
        raise FileNotFoundError(f"hdri={path}: the folder holds no .hdr file (equirectangular Radiance maps)")
    return found


@functools.lru_cache(maxsize=4)
def load_environment(path: Path) -> Tensor:
    """(3, He, We) radiance of an ``.hdr`` file, box-filtered to at most 128 rows (cached)."""
    image = read_hdr(path)
    if image.shape[-2] > _ENVIRONMENT_HEIGHT:
        width = max(1, round(image.shape[-1] * _ENVIRONMENT_HEIGHT / image.shape[-2]))
        image = F.interpolate(image[None], size=(_ENVIRONMENT_HEIGHT, width), mode="area")[0]
    return image.contiguous()


def view_extent(camera_spec: dict[str, Any]) -> float:
    """How far a perspective view sees on the plane: max |x|, |y| of its image corners' hits,
    in units where the sample's square is [-1, 1] (with tiling 1 and no offset)."""
    camera = build_camera({**camera_spec, "tiling": 1.0, "offset": [0.0, 0.0]})
    assert isinstance(camera, PerspectiveCamera)  # only called for perspective views
    half = math.tan(float(camera.fov[0]) / 2)
    corners = torch.tensor([[x * half, y * half, -1.0] for x in (-1, 1) for y in (-1, 1)])  # camera frame
    rays = corners @ camera.rotation[0].T
    eye = camera.eye[0]
    hits = eye[None, :2] + (-eye[2] / rays[:, 2:3]) * rays[:, :2]
    return float(hits.abs().max())


class LibraryScene:
    """Seeded samples of library materials (see the module docstring).

    Args:
        resolution: side of the views and target maps.
        num_views: V.
        camera: ``aligned`` or ``perspective``.
        artifact_strength: scale of the dirty artifacts (0 disables them).
        seed: the dataset's seed.
        crop_scale: ``(low, high)`` share of the largest crop that fits, drawn log-uniformly.
        rotate: turn crops by a random angle (else axis-aligned).
        hdris: ``.hdr`` environment maps; each sample uses one with ``hdri_probability``.
        hdri_probability: share of samples lit by an environment map when ``hdris`` are given.
    """

    def __init__(
        self,
        *,
        resolution: int,
        num_views: int,
        camera: str = "aligned",
        artifact_strength: float = 1.0,
        seed: int = 0,
        crop_scale: Sequence[float] = (0.25, 1.0),
        rotate: bool = True,
        hdris: Sequence[str | Path] = (),
        hdri_probability: float = 0.5,
    ) -> None:
        if camera not in CAMERAS:
            raise ValueError(f"camera={camera!r}: expected one of {list(CAMERAS)}")
        if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale={list(crop_scale)}: expected [low, high] with 0 < low <= high <= 1")
        if not 0.0 <= hdri_probability <= 1.0:
            raise ValueError(f"hdri_probability={hdri_probability}: expected a value in [0, 1]")
        if artifact_strength < 0:
            raise ValueError(f"artifact_strength={artifact_strength}: expected >= 0")
        self.resolution = resolution
        self.num_views = num_views
        self.camera = camera
        self.artifact_strength = artifact_strength
        self.seed = seed
        self.crop_scale = (float(crop_scale[0]), float(crop_scale[1]))
        self.rotate = rotate
        self.hdris = [Path(p) for p in hdris]
        self.hdri_probability = hdri_probability if self.hdris else 0.0

    def texture_side(self) -> int:
        """Shorter side textures are decoded at (at most): the smallest crop, 2x turned or seen
        with its surround, still gets about one texel per pixel."""
        return math.ceil(2 * self.resolution / self.crop_scale[0])

    def spec(self, material: LibraryMaterial, index: int) -> dict[str, Any]:
        """The random choices of sample ``index`` of ``material`` (JSON-serialisable)."""
        sample_seed = derive_seed(self.seed, "library-sample", material.name, index)
        rng = random.Random(derive_seed(sample_seed, "library-scene"))
        environment = None
        if self.hdris and rng.random() < self.hdri_probability:
            environment = str(self.hdris[rng.randrange(len(self.hdris))])
        scene = draw_sample(
            sample_seed,
            num_views=self.num_views,
            camera=self.camera,
            artifact_strength=self.artifact_strength,
            hdr=environment is not None,
        )
        context = 1.0
        if self.camera == "perspective":
            # The views frame one crop (tiling 1, centred); the surround covers their far corners.
            extent = max(view_extent(view["camera"]) for view in scene["views"])
            # A whole number of pixels: the surround is rendered at the crop's texel density.
            context = math.ceil(self.resolution * (max(1.0, extent) * 1.02) + 2) / self.resolution
            for view in scene["views"]:
                view["camera"].update(tiling=1.0 / context, offset=[0.0, 0.0])
        crop = draw_crop(
            rng, material.size, self.resolution, scale=self.crop_scale, rotate=self.rotate, context=context
        )
        return {"material": material.name, "index": index, "crop": {**crop, "context": context},
                "hdri": environment, **scene}  # fmt: skip

    def render(
        self, texture: dict[str, Tensor], spec: dict[str, Any], variants: Sequence[str] = VARIANTS
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Target maps and renders of a sample.

        Args:
            texture: the material's decoded maps (:func:`~neuropbr.data.library.load_material`).
            spec: from :meth:`spec`.
            variants: ``clean`` and/or ``dirty``.

        Returns:
            ``({albedo, roughness, metallic, normal}: (C, R, R), {variant: (V, 3, R, R)})``.
        """
        maps = {name: texture[name] for name in PBR_MAPS}
        crop = spec["crop"]
        target = crop_maps(maps, crop, self.resolution)
        environment = load_environment(Path(spec["hdri"])) if spec.get("hdri") else None
        if crop["context"] > 1.0:
            size = round(self.resolution * crop["context"])
            seen = crop_maps(maps, crop, size, scale_side=crop["context"])
        else:
            seen = target
        renders = render_sample(
            seen, spec, resolution=self.resolution, variants=variants, environment=environment
        )
        return target, renders
