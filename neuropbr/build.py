"""Builders shared by every CLI: the only place that calls ``hydra.utils.instantiate`` (STYLE R4).

Derived dimensions (channels, reductions, number of views) are passed in at build time, so no
config key has to match another by hand.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from neuropbr.losses.composite import CompositeLoss
from neuropbr.models.generator import PBRGenerator


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` on a plain copy of ``node``: interpolations resolved and enum
    choices turned into their strings, so components receive only plain Python values."""
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return _instantiate(plain, _convert_="all", **kwargs)


def build_generator(cfg: DictConfig) -> PBRGenerator:
    """Encoder, fusion and decoder from ``cfg.encoder``/``cfg.fusion``/``cfg.decoder``."""
    encoder = instantiate(cfg.encoder)
    fusion = instantiate(cfg.fusion, in_channels=encoder.out_channels[-1])
    decoder = instantiate(
        cfg.decoder,
        in_channels=fusion.out_channels,
        skip_channels=list(encoder.out_channels[:-1]),
        skip_reductions=list(encoder.reductions[:-1]),
        bottleneck_reduction=encoder.reductions[-1],
    )
    return PBRGenerator(encoder, fusion, decoder)


def build_discriminator(cfg: DictConfig) -> nn.Module | None:
    """The discriminator of ``cfg.discriminator``, or None for ``discriminator=none``."""
    if cfg.discriminator.get("_target_") is None:
        return None
    return instantiate(cfg.discriminator, num_views=cfg.data.num_views)


def build_loss(cfg: DictConfig) -> CompositeLoss:
    """The composite loss of ``cfg.loss``."""
    return instantiate(cfg.loss)


def build_datamodule(cfg: DictConfig) -> Any:
    """The data module of ``cfg.data`` (not yet set up).

    Targets are served at ``data.resolution * decoder.sr_scale``: a super-resolving decoder
    (e.g. 1024 px views -> 2048 px maps) is trained against maps of its output size.
    """
    map_resolution = cfg.data.resolution * cfg.decoder.get("sr_scale", 1)
    if "sources" in cfg.data:  # data=mix: every source shares the mix's data shape, split and augmentation
        from neuropbr.data.mix import SHARED_KEYS

        plain = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
        shared = {key: plain[key] for key in SHARED_KEYS}  # type: ignore[index]
        sources = {
            name: instantiate(node, map_resolution=map_resolution, **shared)
            for name, node in cfg.data.sources.items()
        }
        return instantiate(cfg.data, map_resolution=map_resolution, sources=sources)
    return instantiate(cfg.data, map_resolution=map_resolution)


# --- configs from untrusted files (checkpoints) ---------------------------------------------------


class UnregisteredTargetError(ValueError):
    """A config names a ``_target_`` that is not one of the project's registered components."""


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every ``_target_`` in a nested container, at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if key == "_target_":
                yield dotted, value
            else:
                yield from _targets(value, f"{dotted}.")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _targets(value, f"{prefix}{index}.")


_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


@functools.cache
def registered_targets() -> dict[str, frozenset[str]]:
    """Every component the project registers, by the key that names it.

    The targets of the group schemas in :mod:`neuropbr.config` (``encoder._target_``:
    ``...TimmEncoder``, ``data.augment._target_``: ``...Augmentation``, ...) and of the options in
    ``conf/`` (``fusion=max`` names ``...MaxFusion``).

    Returns:
        ``{dotted key: targets allowed there}``.
    """
    from neuropbr.config import _SCHEMAS, config_dir

    allowed: dict[str, set[str]] = {}

    def add(tree: Any, prefix: str) -> None:
        for key, value in _targets(tree, prefix):
            if isinstance(value, str) and value != "???":
                allowed.setdefault(key, set()).add(value)

    for group, schemas in _SCHEMAS.items():
        for schema in schemas.values():
            add(OmegaConf.to_container(OmegaConf.structured(schema), resolve=False), f"{group}.")
    for path in sorted(Path(config_dir()).glob("*/*.yaml")):
        text = path.read_text()
        package = _PACKAGE.search(text)
        prefix = path.parent.name if package is None else package.group(1)
        if prefix in ("_group_", path.parent.name):
            prefix = f"{path.parent.name}."
        elif prefix == "_global_":
            prefix = ""
        else:  # e.g. hydra.launcher: never part of a job's config
            continue
        tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        if isinstance(tree, dict):
            tree.pop("defaults", None)
            add(tree, prefix)
    # A data source of data=mix may be any data option (its own target and augment's).
    for key, values in list(allowed.items()):
        if key.startswith("data.") and not key.startswith(f"{_MIX_SOURCES}."):
            allowed.setdefault(f"{_MIX_SOURCES}.*.{key[len('data.') :]}", set()).update(values)
    return {key: frozenset(values) for key, values in allowed.items()}


#: Where ``data=mix`` keeps its sources: ``{name: a data config}`` with names users choose.
_MIX_SOURCES = "data.sources"


def _registered_key(key: str) -> str:
    """``data.sources.<name>.X`` -> ``data.sources.*.X`` (source names are free)."""
    if key.startswith(f"{_MIX_SOURCES}."):
        _, _, rest = key[len(_MIX_SOURCES) + 1 :].partition(".")
        return f"{_MIX_SOURCES}.*.{rest}"
    return key


def check_registered_targets(config: Mapping[str, Any]) -> None:
    """Refuse a config (e.g. one stored in a checkpoint) that names anything but the project's own
    components: building it through ``instantiate`` would construct or call whatever it names.

    Args:
        config: a plain nested config.

    Raises:
        UnregisteredTargetError: one line per offending ``_target_`` with its key and value.
    """
    allowed = registered_targets()
    refused = []
    for key, value in _targets(config):
        if value is None:  # discriminator=none: nothing is built
            continue
        registered = allowed.get(_registered_key(key))
        if registered is None:
            refused.append(f"{key}={value!r} (no component is registered at this key)")
        elif value not in registered:
            refused.append(f"{key}={value!r} (expected one of {sorted(registered)})")
    if refused:
        raise UnregisteredTargetError(
            "names components that are not NeuroPBR's own, so nothing was built: "
            + "; ".join(refused)
            + ". A checkpoint may only rebuild the components registered in neuropbr/config.py and "
            "conf/; one from an untrusted source may have been crafted to run code"
        )
