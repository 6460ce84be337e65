"""Synthetic samples: a procedural material rendered into V views, clean and dirty.

A sample's *spec* is a JSON-serialisable dict drawn from one seed: per view a camera, lights,
exposure and screen-space artifacts, plus the sample's surface artifacts (dirt on the material,
the same in every view). :func:`render_sample` turns a material and a spec into images; the clean
and dirty renders of a view share camera, lights and exposure and differ only by the artifacts.
:class:`SyntheticGenerator` ties seeds, materials and specs together; ``data=synthetic`` and
``python -m neuropbr.synth`` both use it, so the same seed gives the same data on the fly and on
disk.

Light levels are set from irradiance at the sample's centre (a white diffuse patch there shows
radiance ~0.6-1.2 before exposure and tone mapping), so every view is exposed alike whatever its lights.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from neuropbr.render.artifacts import ARTIFACTS, apply_artifacts
from neuropbr.render.brdf import Surface
from neuropbr.render.camera import AlignedCamera, Camera, PerspectiveCamera
from neuropbr.render.color import apply_exposure
from neuropbr.render.geometry import directional_light, point_light, texel_positions
from neuropbr.render.lights import DirectionalLight, EnvironmentLight, Light, PointLight, procedural_sky
from neuropbr.render.materials import Material, check_relief_range, draw_family, generate_material
from neuropbr.render.renderer import develop, shade_surface
from neuropbr.utils.seeding import derive_seed
from neuropbr.utils.tensors import unit_vectors

CAMERAS = ("aligned", "perspective")
VARIANTS = ("clean", "dirty")
#: Directional cells an environment is integrated into: few for a soft fill next to a key light
#: (each cell costs as much as a light), more when the environment is the only light.
FILL_SAMPLES = 3
KEY_ENV_SAMPLES = 12
_SURFACE = [name for name, a in ARTIFACTS.items() if a.stage == "surface"]
_SCREEN = [name for name, a in ARTIFACTS.items() if a.stage != "surface"]
_LUMA = (0.2126, 0.7152, 0.0722)


def _round(values: Sequence[float] | float, digits: int = 5) -> Any:
    if isinstance(values, (int, float)):
        return round(float(values), digits)
    return [round(float(v), digits) for v in values]


def _light_colour(rng: random.Random) -> list[float]:
    """A white light between warm (~3000 K) and cool (~7000 K), luminance 1."""
    t = rng.random()
    warm, cool = (1.0, 0.82, 0.64), (0.86, 0.92, 1.0)
    rgb = [w + (c - w) * t for w, c in zip(warm, cool)]
    luma = sum(c * k for c, k in zip(rgb, _LUMA))
    return [c / luma for c in rgb]


def _white_balance(rng: random.Random) -> list[float]:
    """Per-channel gains of a camera's white balance error, luminance 1 (up to ~+-12 % per channel)."""
    gains = [1.0 + rng.uniform(-0.12, 0.12) for _ in range(3)]
    luma = sum(g * k for g, k in zip(gains, _LUMA))
    return [g / luma for g in gains]


def _direction(elevation_deg: float, azimuth_deg: float) -> list[float]:
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]


def _draw_camera(rng: random.Random, camera: str) -> dict[str, Any]:
    if camera == "aligned":
        # A phone held roughly above the sample; views stay rectified to texture space.
        eye = [rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(2.0, 4.0)]
        return {"kind": "aligned", "eye": _round(eye)}
    distance = rng.uniform(2.5, 4.0)
    half_extent = rng.uniform(0.6, 1.0)  # half-width of the view at the target, world units
    return {
        "kind": "perspective",
        "tilt_deg": _round(rng.uniform(0.0, 40.0)),
        "azimuth_deg": _round(rng.uniform(0.0, 360.0)),
        "roll_deg": _round(rng.uniform(0.0, 360.0)),
        "distance": _round(distance),
        "fov_deg": _round(math.degrees(2.0 * math.atan(half_extent / distance))),
        "tiling": _round(rng.uniform(1.0, 2.0)),
        "offset": _round([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)]),
    }


def _camera_eye(spec: dict[str, Any]) -> list[float]:
    if spec["kind"] == "aligned":
        return list(spec["eye"])
    camera = build_camera(spec)
    assert isinstance(camera, PerspectiveCamera)  # internal invariant: the only other kind
    return camera.eye[0].tolist()


def _point_light(position: list[float], irradiance: float, colour: list[float]) -> dict[str, Any]:
    """A point light whose irradiance on the sample's centre (an upward patch) is ``irradiance``."""
    dist2 = sum(p * p for p in position)
    cosine = position[2] / math.sqrt(dist2)
    intensity = irradiance * dist2 / cosine
    return {
        "kind": "point",
        "position": _round(position),
        "intensity": _round([intensity * c for c in colour]),
    }


def _draw_sky(rng: random.Random, sun: list[float] | None, irradiance: float) -> dict[str, Any]:
    style = (
        rng.choice(["clear", "overcast", "indoor"])
        if sun is None
        else rng.choice(["clear", "clear", "overcast"])
    )
    if style == "clear":
        zenith = [rng.uniform(0.15, 0.3), rng.uniform(0.3, 0.5), rng.uniform(0.8, 1.0)]
        horizon = [rng.uniform(0.8, 1.0), rng.uniform(0.85, 1.0), 1.0]
    elif style == "overcast":
        grey = rng.uniform(0.7, 1.0)
        zenith, horizon = [grey] * 3, [grey * 0.8] * 3
    else:  # indoor: warm, nearly uniform ceiling and walls
        zenith = _light_colour(rng)
        horizon = [c * rng.uniform(0.5, 0.9) for c in zenith]
    return {
        "kind": "sky",
        "style": style,
        "sun_direction": _round(sun if sun is not None else [0.0, 0.0, 1.0]),
        "zenith": _round(zenith),
        "horizon": _round(horizon),
        "glow": _round(rng.uniform(0.5, 2.0) if sun is not None and style == "clear" else 0.0),
        "irradiance": _round(irradiance),
        "samples": FILL_SAMPLES,
    }


#: How often each lighting setup lights a view (``sun`` is the environment map's own key light
#: when one is given): what phone captures meet, from a flash beside the lens to a softbox.
LIGHT_SETUPS: dict[str, float] = {"flash": 0.3, "point": 0.25, "sun": 0.2, "multi": 0.15, "area": 0.1}


def check_exposure_shift(shift_range: Sequence[float] | None, key: str) -> None:
    """``shift_range`` must be None or ``[low, high]`` stops with -8 <= low <= high <= 8."""
    if shift_range is None:
        return
    values = list(shift_range)
    if (
        len(values) != 2
        or not all(math.isfinite(float(v)) for v in values)
        or not -8 <= values[0] <= values[1] <= 8
    ):
        raise ValueError(
            f"{key}={values}: expected [low, high] exposure shift in stops, -8 <= low <= high <= 8"
        )


def check_light_setups(weights: Mapping[str, float] | None, key: str) -> None:
    """``weights`` must be None or non-negative weights of :data:`LIGHT_SETUPS` names, not all 0."""
    if weights is None:
        return
    unknown = sorted(set(weights) - set(LIGHT_SETUPS))
    if unknown or any(not w >= 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(
            f"{key}={dict(weights)}: expected weights >= 0 (not all 0) of {list(LIGHT_SETUPS)}"
            + (f"; unknown: {unknown}" if unknown else "")
        )


def _draw_lights(
    rng: random.Random,
    camera_spec: dict[str, Any],
    hdr: bool,
    setup_weights: Mapping[str, float] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """One view's lighting: a key light (flash, point or sun) plus environment fill."""
    key = rng.uniform(0.55, 0.85) * math.pi  # irradiance of the key light at the centre
    fill = key * rng.uniform(0.15, 0.45)
    weights = {**{name: 0.0 for name in LIGHT_SETUPS}, **(setup_weights or LIGHT_SETUPS)}
    setups = list(LIGHT_SETUPS)
    setup = rng.choices(setups, weights=[weights[name] for name in setups])[0]
    if setup == "sun" and hdr:
        setup = "environment"
    lights: list[dict[str, Any]] = []
    if setup == "flash":  # a phone flash next to the lens
        eye = _camera_eye(camera_spec)
        position = [eye[0] + rng.uniform(-0.15, 0.15), eye[1] + rng.uniform(-0.15, 0.15), eye[2]]
        lights.append(_point_light(position, key, _light_colour(rng)))
    elif setup == "point":
        # Near lights too (height down to 0.8): strong fall-off and raking angles across the sample.
        radius, azimuth = rng.uniform(0.0, 2.5), rng.uniform(0.0, 2.0 * math.pi)
        position = [radius * math.cos(azimuth), radius * math.sin(azimuth), rng.uniform(0.8, 4.0)]
        lights.append(_point_light(position, key, _light_colour(rng)))
    elif setup == "multi":  # several lamps in a room, each with its own colour and share
        count = rng.choice([2, 3])
        shares = [rng.uniform(0.3, 1.0) for _ in range(count)]
        for share in shares:
            radius, azimuth = rng.uniform(0.5, 3.0), rng.uniform(0.0, 2.0 * math.pi)
            position = [radius * math.cos(azimuth), radius * math.sin(azimuth), rng.uniform(1.0, 4.0)]
            lights.append(_point_light(position, key * share / sum(shares), _light_colour(rng)))
    elif setup == "area":  # a softbox or window: a grid of points over a rectangle, soft highlights
        centre_r, azimuth = rng.uniform(0.0, 2.0), rng.uniform(0.0, 2.0 * math.pi)
        centre = [centre_r * math.cos(azimuth), centre_r * math.sin(azimuth), rng.uniform(1.5, 3.5)]
        half = rng.uniform(0.3, 0.9)
        colour = _light_colour(rng)
        for dx in (-half, half):
            for dy in (-half, half):
                position = [centre[0] + dx, centre[1] + dy, centre[2]]
                lights.append(_point_light(position, key / 4.0, colour))
    elif setup == "sun":
        sun = _direction(rng.uniform(20.0, 75.0), rng.uniform(0.0, 360.0))
        colour = [1.0, rng.uniform(0.9, 1.0), rng.uniform(0.8, 0.95)]
        lights.append(
            {
                "kind": "directional",
                "direction": _round(sun),
                "irradiance": _round([key / sun[2] * c for c in colour]),
            }
        )
        lights.append(_draw_sky(rng, sun, fill))
        return setup, lights
    if hdr:
        irradiance = fill if setup != "environment" else key
        lights.append(
            {
                "kind": "hdr",
                "rotation_deg": _round(rng.uniform(0.0, 360.0)),
                "irradiance": _round(irradiance),
                "samples": FILL_SAMPLES if setup != "environment" else KEY_ENV_SAMPLES,
            }
        )
    else:
        lights.append(_draw_sky(rng, None, fill))
    return setup, lights


def _draw_artifacts(
    rng: random.Random, names: list[str], probability: float, strength: float
) -> list[dict[str, Any]]:
    return [
        {"name": name, "strength": _round(strength * rng.uniform(0.4, 1.0)), "seed": rng.getrandbits(62)}
        for name in names
        if rng.random() < probability
    ]


def draw_sample(
    seed: int,
    *,
    num_views: int,
    camera: str = "aligned",
    artifact_strength: float = 1.0,
    hdr: bool = False,
    light_setups: Mapping[str, float] | None = None,
    exposure_shift_ev: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The random choices of one sample, as a JSON-serialisable dict.

    Args:
        seed: the sample's seed; nothing else is random.
        num_views: V.
        camera: ``aligned`` or ``perspective`` (see :mod:`neuropbr.render.camera`).
        artifact_strength: scale of every artifact's strength; 0 makes dirty renders clean.
        hdr: an environment map will be supplied (lights then use it instead of a sky).
        light_setups: weights of the lighting setups a view draws from.
        exposure_shift_ev: ``(low, high)`` stops: one shift per sample, drawn uniformly and added
            to every view's own -1..+1 EV (a camera that meters the whole capture brighter or
            darker). None or ``(0, 0)``: no shift, and the same spec as without the option.

    Returns:
        ``{"seed", "surface_artifacts": [...], "views": [{"camera", "setup", "lights",
        "exposure_ev", "tonemap", "artifacts"}, ...]}``.
    """
    if camera not in CAMERAS:
        raise ValueError(f"camera={camera!r}; choose one of {list(CAMERAS)}")
    rng = random.Random(derive_seed(seed, "sample-spec"))
    shift = 0.0
    if exposure_shift_ev is not None and tuple(exposure_shift_ev) != (0.0, 0.0):
        # Its own stream: the other draws, and so every spec without a shift, stay as they were.
        shift = random.Random(derive_seed(seed, "exposure-shift")).uniform(*exposure_shift_ev)
    surface = _draw_artifacts(rng, _SURFACE, 0.5, artifact_strength) if artifact_strength > 0 else []
    views = []
    for _ in range(num_views):
        camera_spec = _draw_camera(rng, camera)
        setup, lights = _draw_lights(rng, camera_spec, hdr, light_setups)
        screen: list[dict[str, Any]] = []
        if artifact_strength > 0:
            screen = _draw_artifacts(rng, _SCREEN, 0.35, artifact_strength)
            if not screen:  # every dirty view shows at least one capture artifact
                screen = _draw_artifacts(rng, [rng.choice(_SCREEN)], 1.0, artifact_strength)
        views.append(
            {
                "camera": camera_spec,
                "setup": setup,
                "lights": lights,
                # Auto-exposure and white balance of a phone differ from shot to shot.
                "exposure_ev": _round(rng.uniform(-1.0, 1.0) + shift),
                "white_balance": _round(_white_balance(rng)),
                "tonemap": "aces",
                "artifacts": screen,
            }
        )
    return {"seed": seed, "surface_artifacts": surface, "views": views}


def build_camera(spec: dict[str, Any]) -> Camera:
    """The camera of a view spec (see :func:`draw_sample`)."""
    if spec["kind"] == "aligned":
        return AlignedCamera(eye=torch.tensor(spec["eye"]))
    if spec["kind"] == "perspective":
        return PerspectiveCamera(
            tilt_deg=spec["tilt_deg"],
            azimuth_deg=spec["azimuth_deg"],
            roll_deg=spec["roll_deg"],
            distance=spec["distance"],
            fov_deg=spec["fov_deg"],
            tiling=spec["tiling"],
            offset=tuple(spec["offset"]),
        )
    raise ValueError(f"camera kind {spec['kind']!r}; choose one of {list(CAMERAS)}")


def _scaled_environment(env: EnvironmentLight, irradiance: float) -> EnvironmentLight:
    """``env`` scaled so that an upward patch at the centre receives ``irradiance`` (luminance)."""
    received = env.irradiance(torch.zeros(3)) @ torch.tensor(_LUMA)
    return env.scaled(irradiance / received.clamp(min=1e-8))


def build_lights(specs: list[dict[str, Any]], environment: Tensor | None = None) -> list[Light]:
    """The lights of a view spec.

    Args:
        specs: the view's ``lights`` entries (see :func:`draw_sample`).
        environment: (3, He, We) equirectangular HDR map for ``hdr`` entries.
    """
    lights: list[Light] = []
    for spec in specs:
        kind = spec["kind"]
        if kind == "point":
            lights.append(PointLight(torch.tensor(spec["position"]), torch.tensor(spec["intensity"])))
        elif kind == "directional":
            lights.append(DirectionalLight(torch.tensor(spec["direction"]), torch.tensor(spec["irradiance"])))
        elif kind == "sky":
            sky = procedural_sky(
                torch.tensor(spec["sun_direction"]),
                torch.tensor(spec["zenith"]),
                torch.tensor(spec["horizon"]),
                glow=spec["glow"],
            )
            env = EnvironmentLight.from_equirect(sky, num_samples=spec["samples"])
            lights.append(_scaled_environment(env, spec["irradiance"]))
        elif kind == "hdr":
            if environment is None:
                raise ValueError("a light spec asks for an HDR environment but no environment map was given")
            env = EnvironmentLight.from_equirect(
                environment, num_samples=spec["samples"], rotation_deg=spec["rotation_deg"]
            )
            lights.append(_scaled_environment(env, spec["irradiance"]))
        else:
            raise ValueError(f"light kind {kind!r}; choose one of ['directional', 'hdr', 'point', 'sky']")
    return lights


#: Side of the key-light direction maps a sample stores (the field is smooth: the views'
#: resolution is reached by bilinear upsampling, see :func:`key_light_directions`).
LIGHT_MAP_RESOLUTION = 16


def key_light_directions(view_lights: list[dict[str, Any]], resolution: int = LIGHT_MAP_RESOLUTION) -> Tensor:
    """Per texel of an aligned view, the unit direction the view's key light comes from.

    The direction is the sum of the unit directions to the view's point and directional lights,
    each weighted by the radiance (luminance) it brings to that texel; the sky or HDR fill is left
    out (it lights every texel from everywhere and fixes no direction). It is what the light
    estimator of the generator (``encoder.light_estimation``) is taught to predict.

    Args:
        view_lights: a view's ``lights`` entries (see :func:`draw_sample`).
        resolution: side of the map, over the whole sample as an aligned view sees it.

    Returns:
        (3, resolution, resolution) unit vectors (+x right, +y up the image, +z up from the
        sample), float32; straight up where the view has no point or directional light.
    """
    positions = texel_positions(resolution, resolution)  # (1, 3, R, R)
    luma = torch.tensor(_LUMA)
    total = torch.zeros(1, 3, resolution, resolution)
    for spec in view_lights:
        if spec["kind"] == "point":
            direction, radiance = point_light(
                torch.tensor([spec["position"]]), torch.tensor([spec["intensity"]]), positions
            )
        elif spec["kind"] == "directional":
            direction, radiance = directional_light(
                torch.tensor([spec["direction"]]), torch.tensor([spec["irradiance"]])
            )
        else:
            continue
        weight = (radiance * luma.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)  # (1, 1, R or 1, R or 1)
        total = total + weight * direction
    total[:, 2] += 1e-6  # no key light: straight up
    return unit_vectors(total)[0]


def upsample_light_directions(light: Tensor, size: int) -> Tensor:
    """(..., 3, r, r) direction maps -> (..., 3, size, size), bilinear, renormalised to unit length."""
    if light.shape[-1] == size:
        return light
    lead = light.shape[:-3]
    flat = light.reshape(-1, 3, *light.shape[-2:]).float()
    up = torch.nn.functional.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return unit_vectors(up).reshape(*lead, 3, size, size)


def render_sample(
    maps: dict[str, Tensor],
    spec: dict[str, Any],
    *,
    resolution: int | None = None,
    variants: Sequence[str] = VARIANTS,
    environment: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render every view of a sample.

    Args:
        maps: the material's maps, (C, R, R) each (albedo sRGB, unit normals).
        spec: from :func:`draw_sample`.
        resolution: side of the views (default R).
        variants: which renders to make: ``clean`` and/or ``dirty``.
        environment: (3, He, We) HDR map if the spec uses one.

    Returns:
        ``{variant: (V, 3, H, W) sRGB in [0, 1]}``.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        raise ValueError(f"variants={list(variants)}; choose from {list(VARIANTS)}")
    clean = {k: v.unsqueeze(0) for k, v in maps.items()}  # (1, C, R, R)
    # apply_artifacts returns its input when the sample has no surface dirt: both variants then
    # share one render.
    dirty = apply_artifacts(clean, "surface", spec["surface_artifacts"]) if "dirty" in variants else clean
    by_variant = {"clean": clean, "dirty": dirty}
    shaded: list[dict[str, Tensor]] = []  # distinct maps, one batch row each
    for variant in variants:
        if not any(m is by_variant[variant] for m in shaded):
            shaded.append(by_variant[variant])
    row = {v: next(i for i, m in enumerate(shaded) if m is by_variant[v]) for v in variants}
    stacked = {k: torch.cat([m[k] for m in shaded]) for k in maps}  # (1 or 2, C, R, R)
    surface = Surface.from_maps(stacked)  # texture space, shared by every view
    out: dict[str, list[Tensor]] = {v: [] for v in variants}
    for view in spec["views"]:
        camera, lights = build_camera(view["camera"]), build_lights(view["lights"], environment)
        radiance = shade_surface(surface, camera, lights, resolution=resolution)
        radiance = apply_exposure(radiance, view["exposure_ev"])
        if "white_balance" in view:  # specs written before white balance was drawn have none
            radiance = radiance * torch.tensor(view["white_balance"], dtype=radiance.dtype).view(1, 3, 1, 1)
        for variant in variants:
            image = radiance[row[variant] : row[variant] + 1]
            if variant == "dirty":
                image = apply_artifacts(image, "linear", view["artifacts"])
            image = develop(image, tonemap_kind=view["tonemap"])
            if variant == "dirty":
                image = apply_artifacts(image, "display", view["artifacts"])
            out[variant].append(image)
    return {v: torch.cat(images) for v, images in out.items()}


def _float_pair(values: Sequence[float] | None) -> tuple[float, float] | None:
    """A checked ``[low, high]`` setting as a plain tuple (configs hand over ListConfigs)."""
    return None if values is None else (float(values[0]), float(values[1]))


class SyntheticGenerator:
    """Seeded synthetic samples: sample ``i`` uses material ``i // samples_per_material``.

    A sample's material, cameras, lights and artifacts depend only on ``(seed, index)``.

    Args:
        resolution: side of the views and maps.
        num_views: V.
        camera: ``aligned`` or ``perspective``.
        artifact_strength: scale of the dirty artifacts (0 disables them).
        seed: the dataset's seed.
        samples_per_material: samples sharing one material.
        environment: optional (3, He, We) HDR map lighting the scenes (else procedural skies).
        relief_tilt_deg: ``(low, high)`` mean normal tilt of the materials' relief, degrees
            (default: :data:`~neuropbr.render.materials.RELIEF_TILT_DEG`).
        light_setups: weights of the lighting setups a view draws from (default
            :data:`LIGHT_SETUPS`; names left out get 0).
        exposure_shift_ev: ``(low, high)`` stops every view of a sample is shifted by (one draw
            per sample; see :func:`draw_sample`); None: no shift.
        recolour: materials may re-tint their dielectric colour (see :func:`generate_material`).
        weathering: materials may carry weathering layers (paint over, dirt, edge wear, coat).
    """

    def __init__(
        self,
        *,
        resolution: int,
        num_views: int,
        camera: str = "aligned",
        artifact_strength: float = 1.0,
        seed: int = 0,
        samples_per_material: int = 1,
        environment: Tensor | None = None,
        relief_tilt_deg: Sequence[float] | None = None,
        light_setups: Mapping[str, float] | None = None,
        exposure_shift_ev: Sequence[float] | None = None,
        recolour: bool = True,
        weathering: bool = True,
    ) -> None:
        check_relief_range(relief_tilt_deg, "relief_tilt_deg")
        check_light_setups(light_setups, "light_setups")
        check_exposure_shift(exposure_shift_ev, "exposure_shift_ev")
        if camera not in CAMERAS:
            raise ValueError(f"camera={camera!r}; choose one of {list(CAMERAS)}")
        if samples_per_material < 1:
            raise ValueError(f"samples_per_material={samples_per_material}: expected >= 1")
        if artifact_strength < 0:
            raise ValueError(f"artifact_strength={artifact_strength}: expected >= 0")
        self.resolution = resolution
        self.num_views = num_views
        self.camera = camera
        self.artifact_strength = artifact_strength
        self.seed = seed
        self.samples_per_material = samples_per_material
        self.environment = environment
        self.light_setups = None if light_setups is None else {k: float(v) for k, v in light_setups.items()}
        self.relief_tilt_deg = _float_pair(relief_tilt_deg)
        self.exposure_shift_ev = _float_pair(exposure_shift_ev)
        self.recolour = recolour
        self.weathering = weathering

    def material_index(self, index: int) -> int:
        return index // self.samples_per_material

    def material_family(self, material_index: int) -> str:
        """The family of material ``material_index``, without generating its maps."""
        return draw_family(derive_seed(self.seed, "synthetic-material", material_index))

    def material(self, material_index: int) -> Material:
        """The procedural material ``material_index``."""
        return generate_material(
            derive_seed(self.seed, "synthetic-material", material_index),
            self.resolution,
            relief_tilt_deg=self.relief_tilt_deg,
            recolour=self.recolour,
            weathering=self.weathering,
        )

    def spec(self, index: int) -> dict[str, Any]:
        """The random choices of sample ``index`` (see :func:`draw_sample`)."""
        return draw_sample(
            derive_seed(self.seed, "synthetic-sample", index),
            num_views=self.num_views,
            camera=self.camera,
            artifact_strength=self.artifact_strength,
            hdr=self.environment is not None,
            light_setups=self.light_setups,
            exposure_shift_ev=self.exposure_shift_ev,
        )

    def render(
        self, index: int, variants: Sequence[str] = VARIANTS, material: Material | None = None
    ) -> tuple[Material, dict[str, Any], dict[str, Tensor]]:
        """Material, spec and ``{variant: (V, 3, R, R)}`` renders of sample ``index``."""
        material = material or self.material(self.material_index(index))
        spec = self.spec(index)
        return (
            material,
            spec,
            render_sample(material.maps, spec, variants=variants, environment=self.environment),
        )
