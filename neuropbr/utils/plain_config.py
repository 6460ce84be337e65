"""OmegaConf nodes as plain Python containers, typed as what they are."""

from __future__ import annotations

from typing import Any, cast

from omegaconf import DictConfig, OmegaConf


def plain_dict(node: DictConfig, *, resolve: bool = True, enum_to_str: bool = False) -> dict[str, Any]:
    """``OmegaConf.to_container`` of a mapping node: a plain ``dict`` (the configs' keys are strings).

    ``to_container`` is typed for any node (a dict with any OmegaConf key type, a list, a string
    or None); a :class:`DictConfig` always gives a dict.
    """
    plain = OmegaConf.to_container(node, resolve=resolve, enum_to_str=enum_to_str)
    if not isinstance(plain, dict):
        raise TypeError(f"expected a mapping node, got {type(node).__name__}")
    return cast(dict[str, Any], plain)
