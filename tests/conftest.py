"""Shared fixtures: device from the CLI, composed configs, seeds, offline hub."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from neuropbr.config import config_dir, register_configs

# Tests never touch the network; set before anything imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)
# The suite runs tiny models: one intra-op thread beats two (tiny tensors don't amortise the
# threading) and avoids ~10x slowdowns when the cores are shared. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests (cpu|cuda)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--device") == "cuda" and torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs --device cuda and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/<config_name>.yaml`` with overrides, as the CLI would (no run dir needed).

    ``paths.*`` point into ``tmp_path`` so nothing is written outside it.
    """
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):

        def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=False)
            if "paths" in cfg:
                with open_dict(cfg):
                    cfg.paths.output_dir = str(tmp_path / "run")
                    cfg.paths.checkpoint_dir = str(tmp_path / "run" / "checkpoints")
            return cfg

        yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def train_tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``train_tiny(*overrides)``: train ``experiment=smoke tracking=none trainer.max_epochs=1``
    plus ``overrides`` once per session (per distinct overrides) and return its ``latest.pth``."""
    from neuropbr.train import train

    trained: dict[tuple[str, ...], Path] = {}

    def run(*overrides: str) -> Path:
        if overrides not in trained:
            register_configs()
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = compose(
                    "train",
                    overrides=["experiment=smoke", "tracking=none", "trainer.max_epochs=1", *overrides],
                )
            GlobalHydra.instance().clear()
            run_dir = tmp_path_factory.mktemp("tiny_run")
            with open_dict(cfg):
                cfg.paths.output_dir = str(run_dir)
                cfg.paths.checkpoint_dir = str(run_dir / "checkpoints")
            train(cfg)
            trained[overrides] = run_dir / "checkpoints" / "latest.pth"
        return trained[overrides]

    return run


@pytest.fixture
def tiny_cfg(compose_cfg: Callable[..., DictConfig]) -> DictConfig:
    """``experiment=smoke tracking=none``: every slot tiny, 64 px synthetic data, CPU."""
    return compose_cfg("experiment=smoke", "tracking=none")
