"""Choice values: a composed config holds enum members, plain code passes strings."""

from __future__ import annotations

from typing import Any


def choice(value: Any) -> str:
    """The plain string of a choice field (an enum member from a composed config, or a str)."""
    return str(getattr(value, "value", value))
