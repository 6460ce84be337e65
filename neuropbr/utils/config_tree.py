"""The resolved config as a tree, for the start of ``train.log`` (the YAML is saved in ``.hydra/``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_tree(
    config: Mapping[str, Any], choices: Mapping[str, Any] | None = None, title: str = "config"
) -> str:
    """``config`` drawn as a tree; a group picked on the command line shows its option.

    Example::

        config
        ├── data (synthetic)
        │   ├── resolution: 64
        │   └── num_views: 3
        └── seed: 7
    """
    lines = [title]
    _branch(config, "", lines, dict(choices or {}), "")
    return "\n".join(lines)


def _branch(
    node: Mapping[str, Any], indent: str, lines: list[str], choices: dict[str, Any], path: str
) -> None:
    items = list(node.items())
    for index, (key, value) in enumerate(items):
        last = index == len(items) - 1
        name = f"{path}{key}"
        option = choices.get(name)
        label = f"{key} ({option})" if option is not None and isinstance(value, Mapping) else str(key)
        joint = "└── " if last else "├── "
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}{joint}{label}")
            _branch(value, indent + ("    " if last else "│   "), lines, choices, f"{name}/")
        else:
            lines.append(f"{indent}{joint}{label}: {value}")
