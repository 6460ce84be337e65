"""Deprecated alias of :mod:`neuropbr.summary` (the model-summary CLI moved to the top level).

``python -m neuropbr.summary`` is the command; ``python -m neuropbr.models.summary`` and
``from neuropbr.models.summary import ...`` still work. The names resolve lazily (PEP 562), so
importing ``neuropbr.models`` never pulls in the builders and configs above it
(docs/architecture.md, "Layers").
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("neuropbr.summary"), name)


if __name__ == "__main__":
    importlib.import_module("neuropbr.summary").main()
