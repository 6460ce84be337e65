"""What ``--help`` and shell completion offer: the conf/ options, never the schemas they extend."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from neuropbr.config import _SCHEMAS, config_dir, register_configs

CONF = Path(config_dir())
#: The groups ``--help`` lists, with their options: exactly the YAML files under conf/<group>/.
EXPECTED = {
    p.name: sorted(f.stem for f in p.glob("*.yaml"))
    for p in CONF.iterdir()
    if p.is_dir() and p.name != "hydra" and any(p.glob("*.yaml"))
}


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.train", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        check=True,
    )
    return result.stdout


def test_help_lists_the_options_of_each_group_and_no_schema() -> None:
    text = _run("--help")
    groups = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {
        line.split(":")[0]: sorted(line.split(":", 1)[1].replace(" ", "").split(","))
        for line in groups.splitlines()
        if ":" in line and not line.startswith("Compose")
    }
    assert listed == EXPECTED
    assert "base_" not in groups and "schema" not in groups


def test_completion_offers_the_options_and_no_schema() -> None:
    line = "neuropbr-train encoder="
    words = _run("-sc", "query=bash", env={"COMP_LINE": line, "COMP_POINT": str(len(line))}).split()
    assert sorted(words) == [f"encoder={option}" for option in EXPECTED["encoder"]]
    line = "neuropbr-train "
    words = _run("-sc", "query=bash", env={"COMP_LINE": line, "COMP_POINT": str(len(line))}).split()
    assert "encoder=" in words and not [w for w in words if "schema" in w or "base_" in w]


def test_every_option_is_still_typed_by_its_schema(compose_cfg: Callable[..., DictConfig]) -> None:
    """The schemas moved out of the groups still validate each option (a typo fails, naming it)."""
    register_configs()
    store = ConfigStore.instance().repo
    for group, schemas in _SCHEMAS.items():
        assert group not in store or not [name for name in store[group] if "schema" in name]
        assert all(f"{name}.yaml" in store for name in schemas)
    cfg = compose_cfg("encoder=timm", "data=mix", "scheduler=plateau")
    typed = {
        "data": "MixDataConfig",
        "data.sources.procedural": "SyntheticDataConfig",
        "encoder": "TimmEncoderConfig",
        "fusion": "ViTFusionConfig",
        "decoder": "UNetHeadsDecoderConfig",
        "discriminator": "PatchGANConfig",
        "loss": "LossConfig",
        "optimizer": "OptimizerConfig",
        "scheduler": "PlateauSchedulerConfig",
        "trainer": "TrainerConfig",
        "tracking": "MlflowTrackingConfig",
        "paths": "PathsConfig",
    }
    assert {key: OmegaConf.get_type(OmegaConf.select(cfg, key)).__name__ for key in typed} == typed


def test_every_console_script_is_a_documented_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    import importlib

    repo = CONF.parent
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    readme = (repo / "README.md").read_text()
    assert set(scripts) == {"neuropbr-train", "neuropbr-infer", "neuropbr-evaluate", "neuropbr-export"}
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target
        assert f"| `{name}` | `python -m {module}` |" in readme, name
