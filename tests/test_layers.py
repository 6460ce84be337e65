"""The layer rule of docs/architecture.md: a package imports only the layers below it.

Each package is imported in a fresh interpreter, with every one of its modules, and
``sys.modules`` then lists what it pulled in. Peers of one layer do not import each other either
(``data``, ``models`` and ``losses`` share only ``maps``, ``utils`` and ``render``). Imports
inside functions (a CLI's optional dependency, the tracker logging a model) are not seen here;
module-level imports are what this checks.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pytest

import neuropbr

#: Bottom to top. The CLIs at the top may import anything below them and each other.
LAYERS: list[tuple[str, ...]] = [
    ("neuropbr.maps", "neuropbr.utils"),
    ("neuropbr.render",),
    ("neuropbr.data", "neuropbr.models", "neuropbr.losses"),
    ("neuropbr.metrics",),
    ("neuropbr.training",),
    ("hydra_plugins.neuropbr_optuna",),  # the sweeper: reaches the trainer only through build
    ("neuropbr.config", "neuropbr.config_checks", "neuropbr.build"),
    ("neuropbr.inference",),  # checkpoint loading, tiling, map writing
    ("neuropbr.mlflow_model",),
]
#: The command-line entry points (``python -m neuropbr.X``) and their helpers (align, synth_library, benchmarks).
CLIS: tuple[str, ...] = (
    "neuropbr.train",
    "neuropbr.check",
    "neuropbr.summary",
    "neuropbr.infer",
    "neuropbr.evaluate",
    "neuropbr.export",
    "neuropbr.synth",
    "neuropbr.synth_library",
    "neuropbr.align",
    "neuropbr.bench",
    "neuropbr.benchmarks",
)

_PROBE = """
import importlib, json, pkgutil, sys
name = sys.argv[1]
module = importlib.import_module(name)
for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + "."):
    importlib.import_module(info.name)
seen = set()
for loaded in list(sys.modules):
    parts = loaded.split(".")
    if parts[0] in ("neuropbr", "hydra_plugins") and len(parts) > 1:
        seen.add(".".join(parts[:2]))
print(json.dumps(sorted(seen - {name})))
"""


def _layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    return len(LAYERS)  # the CLIs


def test_every_top_level_module_has_a_layer() -> None:
    names = {f"neuropbr.{info.name}" for info in pkgutil.iter_modules(neuropbr.__path__)}
    placed = {name for layer in LAYERS for name in layer} | set(CLIS)
    assert names == placed - {"hydra_plugins.neuropbr_optuna"}, (
        "a module was added or removed: place it in tests/test_layers.py and docs/architecture.md"
    )


@pytest.mark.parametrize("package", [name for layer in LAYERS for name in layer])
def test_package_imports_only_the_layers_below(package: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, package],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    level = _layer_of(package)
    above = [name for name in imported if _layer_of(name) >= level]
    assert not above, f"{package} (layer {level}) imports {above}: only layers below it may be imported"


def test_former_summary_module_is_a_lazy_alias() -> None:
    """``neuropbr.models.summary`` resolves to the CLI's names without importing it up front."""
    import neuropbr.models.summary as alias
    import neuropbr.summary

    assert alias.build_on_meta is neuropbr.summary.build_on_meta
