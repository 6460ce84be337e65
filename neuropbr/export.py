"""``python -m neuropbr.export``: the generator alone, as ONNX, TorchScript or a torch.export program.

::

    python -m neuropbr.export checkpoint=best_model.pth format=onnx out=model.onnx
    python -m neuropbr.export checkpoint=best_model.pth format=torchscript   # best_model.pt
    python -m neuropbr.export checkpoint=best_model.pth format=pt2           # best_model.pt2

The exported graph takes ``views`` (B, V, 3, H, W) float32 in [0, 1] with a dynamic batch B and
V, H, W fixed at the training run's ``data.num_views`` and ``data.resolution``, and returns
``albedo``, ``roughness``, ``metallic``, ``normal`` (in that order). H and W are fixed because the
generator's Python control flow depends on them (the ViT fusion picks its token stride and
position-embedding grid from the bottleneck size, the decoder checks divisibility) and because
the model was trained at one resolution: resize or tile to it, as ``neuropbr.infer`` does.

Formats (PyTorch 2.14):

- ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter, the default
  since 2.9; the TorchScript-based one is deprecated). Needs ``onnx`` and ``onnxscript``; the
  parity check needs ``onnxruntime``: ``pip install 'neuropbr[onnx]'``. SDPA attention is
  exported as MatMul/Softmax at opset 18.
- ``torchscript``: ``torch.jit.trace`` -> ``.pt``, loadable with ``torch.jit.load`` in Python and
  LibTorch (C++), which is what users of TorchScript expect. ``torch.jit`` is deprecated in
  PyTorch (FutureWarning) but still works; ``torch.jit.script`` cannot compile the generator.
- ``pt2``: ``torch.export.export`` -> ``torch.export.save`` (``.pt2``), loadable with
  ``torch.export.load(path).module()``; the successor of TorchScript (also the input of
  AOTInductor for C++ deployment).

After writing, the file is reloaded (onnxruntime session, ``torch.jit.load``, ``torch.export.load``)
and compared with the PyTorch generator on random batches of 1 and 3 views-stacks (the export
traced a batch of 2, so this also proves the batch is dynamic); a max abs difference above
``tolerance`` (1e-4, fp32) fails the export. ``<out>.contract.json`` records the input/output
contract, the checkpoint, the file's SHA-256 and the parity numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from neuropbr.config import config_dir, register_configs
from neuropbr.inference import LoadedGenerator, load_generator
from neuropbr.maps import PBR_CHANNELS, PBR_MAPS
from neuropbr.models.generator import PBRGenerator
from neuropbr.utils.choices import choice

log = logging.getLogger(__name__)

#: File suffix of each format (the default ``out`` is the checkpoint path with it).
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
INPUT_NAME = "views"
#: Batch of the example input the exporters trace. Not 1: torch.export specialises size-1
#: dimensions to constants, which would make the batch static.
TRACE_BATCH = 2
#: Batches the reloaded export is compared on (both differ from TRACE_BATCH).
PARITY_BATCHES = (1, 3)
#: Upper bound of the dynamic batch dimension (torch.export needs a finite range to reason in).
MAX_BATCH = 4096

#: Value range and encoding of each output, for the contract.
_OUTPUT_DOCS: dict[str, tuple[tuple[float, float], str]] = {
    "albedo": ((0.0, 1.0), "base colour, sRGB-encoded (as albedo textures are stored)"),
    "roughness": ((0.0, 1.0), "perceptual roughness (GGX alpha = roughness^2), linear"),
    "metallic": ((0.0, 1.0), "metalness, linear"),
    "normal": (
        (-1.0, 1.0),
        "unit tangent-space normal vectors (x, y, z), OpenGL convention (+Y up); "
        "store as RGB = (n + 1) / 2, flip G for DirectX",
    ),
}


class ParityError(RuntimeError):
    """The reloaded export's outputs differ from PyTorch's by more than the tolerance."""


class ExportableGenerator(nn.Module):
    """The generator with positional outputs (exporters and runtimes want tuples, not dicts).

    Args:
        generator: the loaded generator (eval mode).
    """

    def __init__(self, generator: PBRGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, views: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Args: views: (B, V, 3, H, W) in [0, 1]. Returns: the maps in ``PBR_MAPS`` order."""
        maps = self.generator(views)
        return maps["albedo"], maps["roughness"], maps["metallic"], maps["normal"]


@dataclass
class ExportResult:
    """What :func:`export_generator` wrote and measured."""

    path: Path
    contract_path: Path
    sha256: str
    #: ``{batch: {map: max abs diff}}`` of the reloaded export vs PyTorch (empty without check).
    parity: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        """The largest difference over every checked batch and map (0 without a check)."""
        return max((d for per_map in self.parity.values() for d in per_map.values()), default=0.0)


# --- exporters ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Raise these loggers to WARNING for the duration (restored afterwards)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def _export_onnx(module: nn.Module, example: Tensor, path: Path, opset: int) -> None:
    try:
        import onnx  # noqa: F401 - the exporter needs both; fail early with the install hint
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"format=onnx needs onnx and onnxscript ({err.name} is missing): pip install 'neuropbr[onnx]'"
        ) from err
    with _quiet_loggers("onnxscript", "onnx_ir"):  # the graph optimiser logs every rewrite at INFO
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(PBR_MAPS),
            dynamic_shapes={INPUT_NAME: {0: _batch_dim()}},
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns an ONNXProgram
    program.save(str(path))


def _export_torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, (example,), check_trace=False)
    tracer = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if tracer:
        # They come from shape checks on the fixed V, H, W, which become constants; the batch
        # stays dynamic (the parity check runs other batch sizes).
        log.info("torch.jit.trace: %d TracerWarnings from shape checks (V, H, W are fixed)", len(tracer))
    log.info("format=torchscript uses torch.jit.trace, deprecated in PyTorch (format=pt2 is its successor)")
    traced.save(str(path))


def _export_pt2(module: nn.Module, example: Tensor, path: Path) -> None:
    program = torch.export.export(module, (example,), dynamic_shapes={INPUT_NAME: {0: _batch_dim()}})
    torch.export.save(program, str(path))


# --- reloading and parity -----------------------------------------------------------------------


def load_exported(path: str | Path, format: str) -> Any:
    """A callable ``views (B, V, 3, H, W) float32 tensor -> tuple of the four maps`` from the file.

    Args:
        path: the exported file.
        format: ``onnx`` (onnxruntime, CPU), ``torchscript`` or ``pt2``.

    Returns:
        The callable (its outputs are CPU tensors).
    """
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError(
                "the ONNX parity check needs onnxruntime: pip install 'neuropbr[onnx]' (or check=false)"
            ) from err
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_onnx(views: Tensor) -> tuple[Tensor, ...]:
            outputs = session.run(list(PBR_MAPS), {INPUT_NAME: views.numpy().astype(np.float32)})
            return tuple(torch.from_numpy(o) for o in outputs)

        return run_onnx
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            return torch.jit.load(str(path), map_location="cpu")
    if format == "pt2":
        return torch.export.load(str(path)).module()
    raise ValueError(f"format={format!r}; choose one of {sorted(SUFFIXES)}")


@torch.inference_mode()
def parity(
    module: nn.Module,
    exported: Any,
    num_views: int,
    resolution: int,
    batches: tuple[int, ...] = PARITY_BATCHES,
) -> dict[int, dict[str, float]]:
    """Max abs difference per map between ``exported`` and ``module`` on random views.

    Args:
        module: the PyTorch :class:`ExportableGenerator`.
        exported: a callable from :func:`load_exported`.
        num_views, resolution: V and H = W of the inputs.
        batches: batch sizes to compare on.

    Returns:
        ``{batch: {map: max |exported - pytorch|}}``.
    """
    generator = torch.Generator().manual_seed(0)
    result = {}
    for batch in batches:
        views = torch.rand(batch, num_views, 3, resolution, resolution, generator=generator)
        expected = module(views)
        got = exported(views)
        result[batch] = {
            name: float((g.float() - e.float()).abs().max()) for name, g, e in zip(PBR_MAPS, got, expected)
        }
    return result


# --- contract -----------------------------------------------------------------------------------


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_contract(model: LoadedGenerator, fmt: str, path: Path, opset: int | None) -> dict[str, Any]:
    """The input/output contract of the exported file (written as ``<out>.contract.json``)."""
    side, views, out_side = model.resolution, model.num_views, model.resolution * model.sr_scale
    loaders = {
        "onnx": "onnxruntime.InferenceSession(path).run(None, {'views': views})",
        "torchscript": "torch.jit.load(path)(views)",
        "pt2": "torch.export.load(path).module()(views)",
    }
    external = path.with_name(path.name + ".data")  # ONNX weights beyond the 2 GB protobuf limit
    return {
        "format": fmt,
        "file": path.name,
        "sha256": sha256(path),
        "external_data": {external.name: sha256(external)} if fmt == "onnx" and external.is_file() else {},
        "load": loaders[fmt],
        "onnx_opset": opset if fmt == "onnx" else None,
        "torch_version": torch.__version__,
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": ["batch", views, 3, side, side],
                "dynamic_dims": {"batch": f"any batch size in [1, {MAX_BATCH}]"},
                "dtype": "float32",
                "range": [0.0, 1.0],
                "layout": "B, V, C, H, W: batch, views, RGB channels, rows (top first), columns",
                "encoding": (
                    "sRGB-encoded photos as stored on disk (8-bit value / 255), no mean/std "
                    "normalisation (done inside); the V views of one sample are aligned to each "
                    "other (pixel (i, j) sees the same texel in every view), in any order"
                ),
            }
        ],
        "outputs": [
            {
                "name": name,
                "index": index,
                "shape": ["batch", PBR_CHANNELS[name], out_side, out_side],
                "dtype": "float32",
                "range": list(_OUTPUT_DOCS[name][0]),
                "encoding": _OUTPUT_DOCS[name][1],
            }
            for index, name in enumerate(PBR_MAPS)
        ],
        "num_views": views,
        "training_resolution": side,
        "sr_scale": model.sr_scale,
        "output_resolution": out_side,
        "why_fixed_hw": (
            "the generator's control flow depends on H, W (ViT token stride and position grid, "
            "decoder divisibility) and it was trained at one resolution: resize or tile inputs to "
            f"{side}x{side}"
        ),
        "checkpoint": {
            "path": str(model.checkpoint.resolve()),
            "epoch": model.epoch,
            "step": model.step,
            "weights": model.weights,
            "mlflow_run_id": model.mlflow_run_id,
            "encoder": model.config.encoder.get("_target_"),
            "fusion": model.config.fusion.get("_target_"),
            "decoder": model.config.decoder.get("_target_"),
        },
    }


# --- the command --------------------------------------------------------------------------------


def export_generator(cfg: DictConfig) -> ExportResult:
    """Export the checkpoint's generator as ``cfg`` says, check parity, write the contract.

    Args:
        cfg: the composed ``conf/export.yaml``.

    Returns:
        The :class:`ExportResult`.

    Raises:
        ValueError: bad keys.
        ParityError: parity above ``tolerance`` (the file is kept for inspection, the contract is
            not written).
        ImportError: the format's optional dependencies are missing.
        CheckpointError: an unusable checkpoint.
    """
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ValueError("checkpoint: missing; pass checkpoint=PATH (a .pth written by neuropbr.train)")
    fmt = choice(cfg.format)
    if not cfg.tolerance > 0:
        raise ValueError(f"tolerance={cfg.tolerance}: expected > 0")
    if fmt == "onnx" and not 7 <= cfg.opset <= 23:
        raise ValueError(f"opset={cfg.opset}: expected an ONNX opset in [7, 23] (18 is the default)")
    model = load_generator(cfg.checkpoint, "cpu", prefer_ema=cfg.ema)  # fp32 on CPU: exact reference
    path = Path(cfg.out).expanduser() if cfg.out else model.checkpoint.with_suffix(SUFFIXES[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ExportableGenerator(model.generator).eval()
    example = torch.rand(TRACE_BATCH, model.num_views, 3, model.resolution, model.resolution)
    log.info("exporting %s -> %s (format=%s)", model.checkpoint, path, fmt)
    if fmt == "onnx":
        _export_onnx(module, example, path, cfg.opset)
    elif fmt == "torchscript":
        _export_torchscript(module, example, path)
    else:
        _export_pt2(module, example, path)

    result = ExportResult(path=path, contract_path=path.with_name(path.name + ".contract.json"), sha256="")
    contract = build_contract(model, fmt, path, cfg.opset)
    result.sha256 = contract["sha256"]
    if cfg.check:
        result.parity = parity(module, load_exported(path, fmt), model.num_views, model.resolution)
        for batch, per_map in result.parity.items():
            log.info("parity B=%d: %s", batch, ", ".join(f"{k} {v:.2e}" for k, v in per_map.items()))
        if result.max_abs_diff > cfg.tolerance:
            raise ParityError(
                f"tolerance={cfg.tolerance}: the exported {fmt} model differs from PyTorch by up to "
                f"{result.max_abs_diff:.3e} ({result.parity}); {path} is kept for inspection"
            )
    else:
        log.warning("check=false: the export was not compared with PyTorch")
    contract["parity"] = {
        "checked": bool(cfg.check),
        "tolerance": cfg.tolerance,
        "max_abs_diff": result.max_abs_diff if cfg.check else None,
        "per_batch": {str(b): v for b, v in result.parity.items()},
        "reference": "PyTorch fp32 on CPU, random views in [0, 1]",
    }
    result.contract_path.write_text(json.dumps(contract, indent=2) + "\n")
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="export")
def _main(cfg: DictConfig) -> None:
    """Entry point: export, check, print the file, its hash and the parity numbers."""
    result = export_generator(cfg)
    parity_text = (
        f"max abs diff {result.max_abs_diff:.2e} (tolerance {cfg.tolerance:g})"
        if cfg.check
        else "not checked"
    )
    print(  # noqa: T201 - the CLI's human-readable result
        f"wrote {result.path} (sha256 {result.sha256[:16]}...) and {result.contract_path.name}; "
        f"parity vs PyTorch: {parity_text}"
    )


def main() -> None:
    """Console entry point: register the config schemas, then run the Hydra app."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
