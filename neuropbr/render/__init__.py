"""Differentiable metallic-roughness renderer: BRDF, colour, geometry, lights, cameras, artifacts.

The pieces, from maps to images::

    maps (B, C, H, W) --camera.observe--> per-pixel maps, positions, view directions
         --lights (brdf)--> linear radiance --develop--> sRGB image in [0, 1]

:func:`render` does all of it; :mod:`~neuropbr.render.scene` draws random cameras, lights and
artifacts and renders clean and dirty views of procedural materials (:mod:`materials`).
"""

from neuropbr.render.brdf import Surface, cook_torrance, shade, shade_many
from neuropbr.render.camera import AlignedCamera, Camera, PerspectiveCamera, SurfaceView
from neuropbr.render.lights import DirectionalLight, EnvironmentLight, Light, PointLight, procedural_sky
from neuropbr.render.renderer import develop, exposure_for, render, render_radiance, shade_surface

__all__ = [
    "AlignedCamera",
    "Camera",
    "DirectionalLight",
    "EnvironmentLight",
    "Light",
    "PerspectiveCamera",
    "PointLight",
    "Surface",
    "SurfaceView",
    "cook_torrance",
    "develop",
    "exposure_for",
    "procedural_sky",
    "render",
    "render_radiance",
    "shade",
    "shade_many",
    "shade_surface",
]
