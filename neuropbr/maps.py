"""The shared vocabulary of every layer: the PBR maps, their order and channel counts.

The bottom of the package (it imports nothing from ``neuropbr``): datasets serve these maps,
decoders predict them, losses, metrics, the renderer and the CLIs read them. What each map holds
(docs/architecture.md, "What flows between the parts"):

- ``albedo``: 3 channels, sRGB-encoded base colour in [0, 1] (as stored in an 8-bit texture; the
  renderer linearises it);
- ``roughness``, ``metallic``: 1 channel each, linear values in [0, 1];
- ``normal``: 3 channels of unit vectors in [-1, 1], tangent space, OpenGL convention (+Y up);
  on disk encoded as ``(n + 1) / 2`` in [0, 1] (:mod:`neuropbr.data.io`).
"""

from __future__ import annotations

#: The four maps every decoder predicts and every dataset serves, with their channel counts.
#: albedo/roughness/metallic are in [0, 1]; normal holds unit vectors in [-1, 1].
PBR_CHANNELS: dict[str, int] = {"albedo": 3, "roughness": 1, "metallic": 1, "normal": 3}
PBR_MAPS: tuple[str, ...] = tuple(PBR_CHANNELS)
#: Channels of the maps concatenated in PBR_MAPS order (the discriminator's input).
PBR_TOTAL_CHANNELS: int = sum(PBR_CHANNELS.values())
