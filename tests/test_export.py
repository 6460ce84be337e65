"""``neuropbr.export``: ONNX / TorchScript / torch.export files that match PyTorch within 1e-4 (fp32).

The exported model is the smoke preset's generator, whose fusion is a ViT: the SDPA attention
call must export too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

import neuropbr.export as export_module
from neuropbr.export import ParityError, export_generator
from neuropbr.inference import LoadedGenerator, load_generator
from neuropbr.maps import PBR_MAPS
from neuropbr.training.checkpoint import load_checkpoint

#: The issue's bar: exported outputs match PyTorch within this (max abs diff, fp32).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint(train_tiny: Callable[..., Path]) -> Path:
    """A tiny model (ViT fusion, EMA on) trained for one epoch."""
    path = train_tiny("trainer.ema_decay=0.9")
    assert load_checkpoint(path)["config"]["fusion"]["_target_"].endswith("ViTFusion")
    return path


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> LoadedGenerator:
    return load_generator(checkpoint)


@pytest.fixture
def export_cfg(compose_cfg: Callable[..., DictConfig], checkpoint: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(f"checkpoint={checkpoint}", *overrides, config_name="export")

    return make


def _reference(model: LoadedGenerator, views: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        maps = model.generator(views)
    return [maps[name] for name in PBR_MAPS]


def _assert_matches(got: list, expected: list[torch.Tensor]) -> float:
    worst = 0.0
    for name, g, e in zip(PBR_MAPS, got, expected):
        g = torch.as_tensor(np.asarray(g)) if not isinstance(g, torch.Tensor) else g
        assert tuple(g.shape) == tuple(e.shape), name
        worst = max(worst, float((g - e).abs().max()))
    assert worst < TOLERANCE
    return worst


def _check_contract(path: Path, fmt: str, model: LoadedGenerator) -> dict:
    contract = json.loads(path.with_name(path.name + ".contract.json").read_text())
    assert contract["format"] == fmt and contract["file"] == path.name
    assert contract["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    (spec,) = contract["inputs"]
    assert spec["name"] == "views" and spec["shape"] == ["batch", 3, 3, 64, 64]
    assert spec["dtype"] == "float32" and spec["range"] == [0.0, 1.0] and "B, V, C, H, W" in spec["layout"]
    assert [o["name"] for o in contract["outputs"]] == list(PBR_MAPS)
    normal = contract["outputs"][3]
    assert normal["range"] == [-1.0, 1.0] and "OpenGL" in normal["encoding"] and "+Y up" in normal["encoding"]
    assert "sRGB" in contract["outputs"][0]["encoding"]
    assert (contract["num_views"], contract["training_resolution"], contract["sr_scale"]) == (3, 64, 1)
    assert contract["checkpoint"]["epoch"] == model.epoch and contract["checkpoint"]["step"] == model.step
    assert contract["checkpoint"]["weights"] == "ema"
    assert contract["parity"]["checked"] and contract["parity"]["max_abs_diff"] < TOLERANCE
    assert set(contract["parity"]["per_batch"]) == {"1", "3"}
    return contract


def test_onnx_matches_pytorch_with_a_dynamic_batch(
    export_cfg: Callable[..., DictConfig], model: LoadedGenerator, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime

    path = tmp_path / "generator.onnx"
    result = export_generator(export_cfg("format=onnx", f"out={path}"))
    assert result.path == path and result.max_abs_diff < TOLERANCE
    contract = _check_contract(path, "onnx", model)
    assert contract["onnx_opset"] == 18

    graph = onnx.load(str(path)).graph
    (views,) = graph.input
    dims = views.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 3, 64, 64]
    ops = {node.op_type for node in graph.node}
    assert {"Softmax", "MatMul"} <= ops  # the ViT fusion's SDPA, decomposed at opset 18

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(PBR_MAPS)
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3, 5):  # traced with 2
        x = torch.rand(batch, 3, 3, 64, 64, generator=generator)
        _assert_matches(session.run(None, {"views": x.numpy()}), _reference(model, x))


def test_torchscript_cli_exports_a_traced_module(
    checkpoint: Path, model: LoadedGenerator, tmp_path: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = tmp_path / "generator.pt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuropbr.export",
            f"checkpoint={checkpoint}",
            "format=torchscript",
            f"out={path}",
        ],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {path}" in proc.stdout and "parity vs PyTorch: max abs diff" in proc.stdout
    assert list(cwd.iterdir()) == []  # no outputs/, .hydra/ or log file
    _check_contract(path, "torchscript", model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still works
        loaded = torch.jit.load(str(path))
    for batch in (1, 3):
        x = torch.rand(batch, 3, 3, 64, 64)
        with torch.no_grad():
            _assert_matches(list(loaded(x)), _reference(model, x))


def test_pt2_export_program_matches_pytorch(
    export_cfg: Callable[..., DictConfig], model: LoadedGenerator, tmp_path: Path
) -> None:
    path = tmp_path / "generator.pt2"
    export_generator(export_cfg("format=pt2", f"out={path}"))
    _check_contract(path, "pt2", model)
    program = torch.export.load(str(path)).module()
    for batch in (1, 4):
        x = torch.rand(batch, 3, 3, 64, 64)
        with torch.no_grad():
            _assert_matches(list(program(x)), _reference(model, x))


@pytest.mark.parametrize("wrong_map", PBR_MAPS)
def test_parity_above_the_tolerance_in_any_one_map_fails_the_export(
    wrong_map: str, export_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One map off by 1e-3 (the others exact) is enough to fail, and the check says which."""
    real = export_module.load_exported
    index = PBR_MAPS.index(wrong_map)
    measured: list[dict[int, dict[str, float]]] = []
    real_parity = export_module.parity

    def one_map_off(path: str | Path, fmt: str) -> Callable:
        exported = real(path, fmt)
        return lambda views: tuple(out + 1e-3 if i == index else out for i, out in enumerate(exported(views)))

    def recording_parity(*args: object, **kwargs: object) -> dict[int, dict[str, float]]:
        measured.append(real_parity(*args, **kwargs))  # type: ignore[arg-type]
        return measured[-1]

    monkeypatch.setattr(export_module, "load_exported", one_map_off)
    monkeypatch.setattr(export_module, "parity", recording_parity)
    path = tmp_path / "generator.pt"
    with pytest.raises(
        ParityError,
        match=rf"tolerance=0.0001: the exported torchscript model differs .* by up to 1.0.*'{wrong_map}'",
    ):
        export_generator(export_cfg("format=torchscript", f"out={path}"))
    assert path.is_file() and not path.with_name(path.name + ".contract.json").exists()
    for per_map in measured[0].values():
        assert per_map[wrong_map] == pytest.approx(1e-3, rel=1e-2)
        assert all(per_map[name] < 1e-5 for name in PBR_MAPS if name != wrong_map)


def test_bad_keys_fail_before_exporting(export_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"opset=5: expected an ONNX opset in \[7, 23\]"):
        export_generator(export_cfg("format=onnx", "opset=5", f"out={tmp_path / 'g.onnx'}"))
    with pytest.raises(ValueError, match=r"tolerance=0.0: expected > 0"):
        export_generator(export_cfg("tolerance=0", f"out={tmp_path / 'g.onnx'}"))
    assert list(tmp_path.iterdir()) == []
