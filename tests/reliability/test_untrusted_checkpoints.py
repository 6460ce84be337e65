"""A checkpoint's stored config may only rebuild the project's own components.

``infer``, ``evaluate`` and ``export`` rebuild the generator from the config inside a checkpoint
through Hydra's ``instantiate``; a crafted ``.pth`` (``weights_only=True`` loads it fine) could
otherwise make them construct or call anything importable. Each crafted checkpoint here is
refused by all three CLIs with the key and value named, and nothing is constructed: the named
callables are replaced by recorders, and ``instantiate`` itself is never reached.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

import neuropbr.build
from neuropbr.build import UnregisteredTargetError, build_generator, check_registered_targets
from neuropbr.config import config_dir, register_configs
from neuropbr.evaluate import evaluate
from neuropbr.export import export_generator
from neuropbr.infer import infer
from neuropbr.inference import load_generator
from neuropbr.training.checkpoint import CheckpointError, save_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _train_config(*overrides: str, smoke: bool = True) -> dict[str, Any]:
    register_configs()
    GlobalHydra.instance().clear()
    base = ["experiment=smoke", "tracking=none"] if smoke else []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[*base, *overrides])
    GlobalHydra.instance().clear()
    cfg.paths.output_dir = cfg.paths.checkpoint_dir = "unused"
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(container, dict)
    return container


def _write_checkpoint(path: Path, config: dict[str, Any], weights: dict[str, Any]) -> Path:
    save_checkpoint(path, {"generator": weights, "ema": None, "epoch": 1, "step": 4, "config": config})
    return path


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """The smoke preset's stored config and matching generator weights (no training needed)."""
    config = _train_config()
    weights = build_generator(OmegaConf.create(config)).state_dict()
    return config, weights


def _crafted(config: dict[str, Any], case: str, marker: Path) -> tuple[dict[str, Any], str, str]:
    """``config`` with one malicious ``_target_``; returns it, the offending key and its value."""
    config = {group: (dict(node) if isinstance(node, dict) else node) for group, node in config.items()}
    if case == "counter":
        config["encoder"] = {**config["encoder"], "_target_": "collections.Counter"}
        return config, "encoder._target_", "collections.Counter"
    if case == "os_system":
        config["fusion"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
        return config, "fusion._target_", "os.system"
    if case == "popen":
        config["decoder"] = {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]}
        return config, "decoder._target_", "subprocess.Popen"
    # nested: the encoder itself is genuine, one of its arguments is a node Hydra would build first
    config["encoder"] = {
        **config["encoder"],
        "norm": {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]},
    }
    return config, "encoder.norm._target_", "subprocess.Popen"


CASES = ("counter", "os_system", "popen", "nested")


@pytest.fixture
def recorders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace everything a crafted checkpoint names (and ``instantiate``) with call recorders."""
    calls: list[str] = []

    def recorder(name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            calls.append(name)

        return record

    monkeypatch.setattr(collections, "Counter", recorder("collections.Counter"))
    monkeypatch.setattr(os, "system", recorder("os.system"))
    monkeypatch.setattr(subprocess, "Popen", recorder("subprocess.Popen"))
    monkeypatch.setattr(neuropbr.build, "_instantiate", recorder("instantiate"))
    return calls


def _compose(config_name: str, *overrides: str) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def _run_cli(cli: str, checkpoint: Path, tmp_path: Path) -> None:
    if cli == "infer":
        views = [str(tmp_path / f"{i}.png") for i in range(3)]
        infer(_compose("infer", f"checkpoint={checkpoint}", f"views=[{','.join(views)}]", f"out={tmp_path}"))
    elif cli == "evaluate":
        overrides = [f"checkpoint={checkpoint}", "tracking=none", "device=cpu"]
        evaluate(_compose("evaluate", *overrides), overrides)
    else:
        export_generator(_compose("export", f"checkpoint={checkpoint}", "format=torchscript"))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cli", ["infer", "evaluate", "export"])
def test_crafted_checkpoint_is_refused_and_nothing_is_built(
    cli: str, case: str, genuine: tuple[dict, dict], recorders: list[str], tmp_path: Path
) -> None:
    marker = tmp_path / "constructed"
    config, key, value = _crafted(genuine[0], case, marker)
    checkpoint = _write_checkpoint(tmp_path / "crafted.pth", config, genuine[1])
    with pytest.raises(CheckpointError) as info:
        _run_cli(cli, checkpoint, tmp_path)
    message = str(info.value)
    assert f"{key}={value!r}" in message and str(checkpoint) in message
    assert "not NeuroPBR's own" in message
    assert recorders == []
    assert not marker.exists()


def test_genuine_checkpoint_of_the_same_fixture_loads(genuine: tuple[dict, dict], tmp_path: Path) -> None:
    """The control: the crafted files differ from a loadable one only by the targets."""
    model = load_generator(_write_checkpoint(tmp_path / "genuine.pth", *genuine))
    assert model.step == 4 and model.weights == "generator"


def test_every_shipped_option_is_accepted() -> None:
    """No false refusals: every option of every group and every preset passes the check."""
    groups = ("data", "encoder", "fusion", "decoder", "discriminator", "loss", "optimizer", "scheduler")
    overrides = [["experiment=" + p.stem] for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))]
    for group in groups:
        overrides += [[f"{group}={p.stem}"] for p in sorted((REPO / "conf" / group).glob("*.yaml"))]
    for extra in overrides:
        # The smoke preset sets synthetic-only data keys; other data options compose without it
        # (their unset mandatory keys stay ??? and do not matter here).
        other_data = extra[0].startswith("data=") and extra != ["data=synthetic"]
        check_registered_targets(_train_config(*extra, smoke=not other_data))


def test_target_at_an_unregistered_key_is_refused_even_when_it_names_a_component() -> None:
    config = {"trainer": {"hook": {"_target_": "neuropbr.models.fusion.pooling.MeanFusion"}}}
    with pytest.raises(
        UnregisteredTargetError, match=r"trainer\.hook\._target_=.*no component is registered"
    ):
        check_registered_targets(config)


@pytest.mark.slow
@pytest.mark.parametrize("cli", ["infer", "evaluate", "export"])
def test_cli_process_refuses_a_crafted_checkpoint(
    cli: str, genuine: tuple[dict, dict], tmp_path: Path
) -> None:
    """As a user runs it: the process exits non-zero naming the key, and the command never ran."""
    marker = tmp_path / "constructed"
    config, key, value = _crafted(genuine[0], "nested", marker)
    config["decoder"] = {
        **config["decoder"],
        "norm": {"_target_": "os.system", "_args_": [f"touch {marker}"]},
    }
    checkpoint = _write_checkpoint(tmp_path / "crafted.pth", config, genuine[1])
    args = {
        "infer": ["views=[a.png,b.png,c.png]", f"out={tmp_path / 'maps'}"],
        "evaluate": ["tracking=none", "device=cpu"],
        "export": ["format=torchscript"],
    }[cli]
    proc = subprocess.run(
        [sys.executable, "-m", f"neuropbr.{cli}", f"checkpoint={checkpoint}", *args],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert f"{key}={value!r}" in proc.stderr and "decoder.norm._target_='os.system'" in proc.stderr
    assert not marker.exists()


def test_mix_sources_take_any_data_option_and_nothing_else() -> None:
    source = {"_target_": "neuropbr.data.folder.FolderDataModule", "augment": {"_target_": "os.system"}}
    config = {"data": {"_target_": "neuropbr.data.mix.MixDataModule", "sources": {"mine": source}}}
    with pytest.raises(UnregisteredTargetError) as info:
        check_registered_targets(config)
    assert str(info.value).count("_target_=") == 1
    assert "data.sources.mine.augment._target_='os.system'" in str(info.value)
