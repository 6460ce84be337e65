"""Value checks of a composed training config, run before any data or weights are touched.

The schemas in :mod:`neuropbr.config` reject unknown keys, wrong types and wrong choices while
Hydra composes; what a type cannot say is checked here, right after composing, so every error
names the key, its value and what was expected instead of surfacing later from a component
(after a dataset scan of minutes) under a component's own argument name:

- mandatory values left unset (``data=folder`` without ``data.root``);
- ranges (learning rates > 0, ...);
- ``data.resolution`` against the encoder's bottleneck reduction, and an encoder that stacks
  the views as channels against ``data.num_views`` (the encoder is built on the meta device: no
  memory, no weights, no download).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

#: ``key: (what is expected, test of a value)`` for keys that may be present in a training config.
RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "optimizer.g_lr": ("a learning rate > 0", lambda v: v > 0 and math.isfinite(v)),
    "optimizer.d_lr": ("a learning rate > 0", lambda v: v > 0 and math.isfinite(v)),
    "data.resolution": ("a side in pixels >= 8", lambda v: v >= 8),
    "data.num_views": (">= 1", lambda v: v >= 1),
    "data.batch_size": (">= 1", lambda v: v >= 1),
    "data.val_ratio": ("a share in [0, 1)", lambda v: 0 <= v < 1),
    "scheduler.warmup_epochs": (">= 0", lambda v: v >= 0),
    "trainer.grad_clip_norm": ("> 0 or null", lambda v: v is None or v > 0),
    "trainer.d_grad_clip_norm": ("> 0 or null", lambda v: v is None or v > 0),
    "trainer.ema_decay": ("a decay in (0, 1) or null", lambda v: v is None or 0 < v < 1),
}


class ConfigValueError(ValueError):
    """One or more config values are unset or out of range; the message lists each key."""


def check_train_config(cfg: DictConfig) -> None:
    """Check ``cfg`` (a composed ``conf/train.yaml``) as described in the module docstring.

    Raises:
        ConfigValueError: every unset or out-of-range key, one per line, then a resolution the
            encoder cannot take (built only when the other values are fine).
    """
    problems = [
        f"{key}: missing; {_MISSING_HINTS.get(key, 'set it on the command line')}"
        for key in _missing_keys(cfg)
    ]
    for key, (expected, test) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT or OmegaConf.is_missing(cfg, key):
            continue
        try:
            ok = bool(test(value))
        except TypeError:
            ok = False
        if not ok:
            problems.append(f"{key}={value}: expected {expected}")
    if problems:
        raise ConfigValueError("invalid config:\n  " + "\n  ".join(problems))
    from neuropbr.training.trainer import LoopSettings

    # The loop's own checks (trainer.max_epochs >= 1, ...), now rather than after the data scan.
    LoopSettings(**{k: v for k, v in cfg.trainer.items() if k in LoopSettings.__dataclass_fields__})
    _check_resolution(cfg)
    _check_light(cfg)


def _check_light(cfg: DictConfig) -> None:
    """``loss.weights.light > 0`` needs a light estimate to teach and targets to teach it with."""
    weight = OmegaConf.select(cfg, "loss.weights.light", default=0.0) or 0.0
    if float(weight) <= 0:
        return
    problems = []
    if not OmegaConf.select(cfg, "encoder.light_estimation", default=False):
        problems.append(
            "encoder.light_estimation=true (the estimate it teaches; encoder=unet or unet_stride)"
        )
    if not OmegaConf.select(cfg, "data.light_targets", default=False):
        problems.append("data.light_targets=true (the true light directions; data=synthetic, aligned views)")
    if problems:
        raise ConfigValueError(f"loss.weights.light={weight} needs " + " and ".join(problems))


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Dotted keys left at ``???``, without resolving interpolations (``${hydra:...}`` needs a run)."""
    missing = []
    for key in node.keys():
        name = str(key)  # a DictKeyType: a string, or an int/float/bool key written in YAML
        if OmegaConf.is_missing(node, key):
            missing.append(f"{prefix}{name}")
        elif (
            # omegaconf annotates this key as int | str, but looks up any DictKeyType (as is_missing)
            not OmegaConf.is_interpolation(node, key)  # type: ignore[arg-type]
            and isinstance(node[key], DictConfig)
        ):
            missing += _missing_keys(node[key], f"{prefix}{name}.")
    return missing


_ABSENT = object()
_MISSING_HINTS = {
    "data.root": "data=folder needs data.root=DIR (the dataset root holding input/ and output/)",
}


def _check_resolution(cfg: DictConfig) -> None:
    """``data.resolution`` must be a multiple of the encoder's bottleneck reduction."""
    from neuropbr.build import instantiate

    encoder_cfg = copy.deepcopy(cfg.encoder)
    if "pretrained" in encoder_cfg:
        with open_dict(encoder_cfg):
            encoder_cfg.pretrained = False  # the structure is all that matters here
    with torch.device("meta"):
        encoder = instantiate(encoder_cfg)
    stacked = int(getattr(encoder, "stacked_views", 0))
    if stacked and stacked != int(cfg.data.num_views):
        raise ConfigValueError(
            f"encoder.stacked_views={stacked}: expected data.num_views ({cfg.data.num_views}), the "
            "number of views the encoder takes as channels (or 0: a shared encoder per view)"
        )
    reduction = int(encoder.reductions[-1])
    resolution = int(cfg.data.resolution)
    if resolution % reduction:
        below = resolution // reduction * reduction
        raise ConfigValueError(
            f"data.resolution={resolution}: expected a multiple of {reduction}, the bottleneck reduction "
            f"of encoder {encoder_cfg.get('name', encoder_cfg._target_)} (e.g. {below or reduction} "
            f"or {below + reduction})"
        )
