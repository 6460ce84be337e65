"""The generator as an MLflow model: load it with PyTorch, predict with pyfunc, serve it.

A training run logs its generator (the EMA weights when the run keeps them) with
:func:`log_generator`; the model directory holds

- the ``pytorch`` flavor (``mlflow.pytorch.save_model``): ``mlflow.pytorch.load_model(uri)``
  returns the generator, an ``nn.Module`` that maps views (B, V, 3, H, W) in [0, 1] at the
  training resolution to ``{"albedo": (B, 3, H', W') in [0, 1], "roughness": (B, 1, H', W'),
  "metallic": (B, 1, H', W'), "normal": (B, 3, H', W') unit vectors}`` (H' = H x the decoder's
  ``sr_scale``). Its pickle imports ``neuropbr`` classes: load it where NeuroPBR is installed.
- the ``python_function`` flavor, loaded by this module (PyTorch's own pyfunc wants one output
  tensor): ``mlflow.pyfunc.load_model(uri).predict(...)`` and ``mlflow models serve -m uri
  --env-manager local`` take the V views of each sample as arrays of any size (``{"views": (N, V,
  3, H, W) floats in [0, 1]}``) or as base64-encoded image files (``{"views_png": [[b64, ...],
  ...]}``, PNG or JPEG), resize them to the training resolution as ``neuropbr.infer`` does, and
  return ``{map: (N, C, H, W)}`` arrays at the views' size (``params={"output": "png"}``: base64
  PNGs per sample, normals encoded (n + 1) / 2).
- ``neuropbr_model.json``: the training config, which weights, epoch, step and the baseline maps,
  so ``python -m neuropbr.infer model=runs:/<id>/model`` works like ``checkpoint=``.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from neuropbr.inference import LoadedGenerator, predict_resized
from neuropbr.maps import PBR_CHANNELS, PBR_MAPS

log = logging.getLogger(__name__)

#: Written beside the flavors in the model directory.
METADATA_FILE = "neuropbr_model.json"
#: URI schemes ``model=`` accepts (anything MLflow resolves).
MODEL_URI_SCHEMES = ("runs:/", "models:/", "file:", "mlflow-artifacts:/")
#: What the pyfunc takes, for error messages.
EXPECTED_INPUT = (
    "{'views': an array (N, V, 3, H, W) or (V, 3, H, W) of floats in [0, 1]} or "
    '{\'views_png\': [[base64 PNG/JPEG] * V] per sample} (as JSON: {"inputs": {"views": [...]}} or '
    '{"inputs": {"views_png": [[...]]}}; V = data.num_views of the training run)'
)


# --- saving (a flavor module for mlflow.models.Model.log) --------------------------------------


def save_model(
    path: str,
    mlflow_model: Any,
    *,
    generator: nn.Module,
    neuropbr_metadata: Mapping[str, Any],
    pip_requirements: Sequence[str] | None = None,
    **kwargs: Any,
) -> None:
    """Write the model directory (``mlflow.models.Model.log`` calls this with ``flavor=`` this module).

    Args:
        path: the new model directory.
        mlflow_model: the ``mlflow.models.Model`` being logged.
        generator: the network (copied to the CPU in eval mode; the caller's stays untouched).
        neuropbr_metadata: ``config`` (the resolved training config), ``weights``, ``epoch``,
            ``step``, ``baseline_maps``, ``run_id``; written to :data:`METADATA_FILE`.
        pip_requirements: the environment's requirements (default: this torch, mlflow, neuropbr).
        kwargs: ``signature``, ``input_example`` ... passed to ``mlflow.pytorch.save_model``.
    """
    from mlflow.models import Model

    module = copy.deepcopy(generator).cpu().eval().requires_grad_(False)
    # MLflow warns about pickles on every save; the README says where these models may be loaded.
    pytorch_log = logging.getLogger("mlflow.pytorch")
    level = pytorch_log.level
    pytorch_log.setLevel(logging.ERROR)
    try:
        _save_pytorch(module, path, mlflow_model, pip_requirements, kwargs)
    finally:
        pytorch_log.setLevel(level)
    Path(path, METADATA_FILE).write_text(json.dumps(dict(neuropbr_metadata), indent=1, default=str))
    # Our loader serves dict outputs and image inputs; the PyTorch flavor stays as written.
    saved = Model.load(path)
    saved.flavors["python_function"]["loader_module"] = __name__
    saved.save(str(Path(path, "MLmodel")))
    mlflow_model.flavors = saved.flavors


def _save_pytorch(
    module: nn.Module,
    path: str,
    mlflow_model: Any,
    pip_requirements: Sequence[str] | None,
    kwargs: dict[str, Any],
) -> None:
    import mlflow.pytorch

    mlflow.pytorch.save_model(
        module,
        path,
        mlflow_model=mlflow_model,
        pip_requirements=list(pip_requirements or default_requirements()),
        # A pickled module (dict outputs, any batch size); pt2 traces one example's shapes.
        serialization_format="pickle",
        **kwargs,
    )


def default_requirements() -> list[str]:
    """Pinned torch, mlflow and neuropbr (the generator's pickle imports NeuroPBR's classes)."""
    from importlib import metadata

    import mlflow

    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]
    try:
        requirements.append(f"neuropbr=={metadata.version('neuropbr')}")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        requirements.append("neuropbr")
    return requirements


def signature(num_views: int) -> Any:
    """Inputs ``views`` (arrays) or ``views_png`` (base64 images), both optional: one of them per
    request; outputs the four maps; param ``output`` = ``array`` | ``png``."""
    from mlflow.models import ModelSignature
    from mlflow.types import DataType
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    inputs = Schema(
        [
            # Any: per sample a (V, 3, H, W) array of any size (MLflow's column arrays are 1-D).
            ColSpec(AnyType(), "views", required=False),
            ColSpec(AnyType(), "views_png", required=False),  # one sample's list, or a list of them
        ]
    )
    outputs = Schema(
        [TensorSpec(np.dtype(np.float32), (-1, PBR_CHANNELS[name], -1, -1), name) for name in PBR_MAPS]
    )
    params = ParamSchema([ParamSpec("output", DataType.string, "array")])
    log.debug("signature for %d views", num_views)
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(num_views: int, size: int = 16) -> dict[str, np.ndarray]:
    """A small example request (one sample; the pyfunc resizes views of any size)."""
    rng = np.random.default_rng(0)
    return {"views": rng.random((1, num_views, 3, size, size), dtype=np.float32)}


def log_generator(
    generator: nn.Module,
    metadata: Mapping[str, Any],
    *,
    tracking_uri: str,
    run_id: str,
    name: str = "model",
    step: int = 0,
    registered_model_name: str | None = None,
) -> Any:
    """Log ``generator`` as the MLflow model ``name`` of ``run_id`` (``runs:/<run_id>/<name>``).

    Args:
        generator: the network to log (EMA or plain weights).
        metadata: ``neuropbr_metadata`` of :func:`save_model`; ``config.data.num_views`` shapes
            the example.
        tracking_uri: the store of the run (also the registry's).
        run_id: the training run.
        name: the model's name in the run.
        step: the training step of these weights (MLflow links that step's metrics to the model).
        registered_model_name: also register it as a new version of this registered model.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version`` ...).
    """
    import sys

    import mlflow
    from mlflow.models import Model
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    num_views = int(metadata["config"]["data"]["num_views"])
    with _use_tracking_uri(tracking_uri):
        # The raw setting, not get_registry_uri(): that resolves an unset registry to the current
        # tracking URI, and restoring it would pin every later registry lookup to this store.
        previous_registry = registry_utils._registry_uri
        mlflow.set_registry_uri(tracking_uri)
        try:
            # Created here, in the run's experiment: Model.log alone would put a model of a run
            # that is not the active one in the default experiment, where runs:/<id>/<name>
            # does not look.
            client = mlflow.MlflowClient(tracking_uri)
            logged = client.create_logged_model(
                experiment_id=client.get_run(run_id).info.experiment_id,
                name=name,
                source_run_id=run_id,
                model_type="neuropbr-generator",
            )
            info = Model.log(
                artifact_path=None,
                name=name,
                flavor=sys.modules[__name__],
                run_id=run_id,
                model_id=logged.model_id,
                step=step,
                registered_model_name=registered_model_name,
                await_registration_for=0,
                generator=generator,
                neuropbr_metadata={**metadata, "run_id": run_id},
                signature=signature(num_views),
                input_example=input_example(num_views),
            )
        finally:
            registry_utils._registry_uri = previous_registry
    log.info("MLflow: logged the generator as %s (step %d)", info.model_uri, step)
    return info


# --- loading -----------------------------------------------------------------------------------


def is_model_uri(text: str) -> bool:
    """Whether ``text`` names an MLflow model (``runs:/...``, ``models:/...``) or a local model directory."""
    return text.startswith(MODEL_URI_SCHEMES) or Path(text, "MLmodel").is_file()


def load_model(uri: str, device: str | torch.device = "cpu") -> LoadedGenerator:
    """The generator of an MLflow model written by :func:`log_generator`, ready for
    :mod:`neuropbr.inference` (``predict_resized``, ``predict_tiled``).

    Args:
        uri: ``runs:/<run id>/model``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``
            or a local model directory; the tracking URI is ``$MLFLOW_TRACKING_URI`` (else
            ``sqlite:///mlflow.db`` in the working directory, as for training).
        device: where the generator runs.

    Raises:
        ValueError: the URI does not resolve (names the URI and the tracking store), or the model
            was not written by NeuroPBR.
    """
    local = Path(download(uri))
    meta_path = local / METADATA_FILE
    if not meta_path.is_file():
        raise ValueError(
            f"model={uri}: not a NeuroPBR model ({METADATA_FILE} is missing in {local}); log one by "
            "training with tracking=mlflow (tracking.log_model=true)"
        )
    import mlflow.pytorch

    metadata = json.loads(meta_path.read_text())
    generator = mlflow.pytorch.load_model(str(local), map_location=torch.device(device))
    generator.to(device).eval().requires_grad_(False)
    config = OmegaConf.create(metadata["config"])
    log.info(
        "loaded %s (%s weights, epoch %s, step %s): V=%d, %d px",
        uri,
        metadata.get("weights"),
        metadata.get("epoch"),
        metadata.get("step"),
        int(config.data.num_views),
        int(config.data.resolution),
    )
    return LoadedGenerator(
        generator=generator,
        config=config,
        checkpoint=local,
        weights=str(metadata.get("weights", "generator")),
        epoch=int(metadata.get("epoch") or 0),
        step=int(metadata.get("step") or 0),
        mlflow_run_id=metadata.get("run_id"),
        baseline_maps=metadata.get("baseline_maps"),
    )


def download(uri: str) -> str:
    """A local copy of the model directory at ``uri`` (a local directory is used in place)."""
    if Path(uri, "MLmodel").is_file():
        return uri
    import os

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    try:
        with _use_tracking_uri(tracking_uri):
            return mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="neuropbr_model_")
            )
    except (MlflowException, OSError) as err:
        raise ValueError(
            f"model={uri}: cannot be loaded from the tracking store {tracking_uri} ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}); expected runs:/<run id>/model, models:/<name>/<version> or a "
            "model directory (set MLFLOW_TRACKING_URI to the store the run logged to)"
        ) from None


# --- pyfunc (the python_function flavor's loader) ---------------------------------------------


def _load_pyfunc(data_path: str, model_config: Mapping[str, Any] | None = None) -> MaterialPredictor:
    """MLflow's pyfunc loader: ``data_path`` is the PyTorch flavor's ``data/`` in the model dir."""
    device = (model_config or {}).get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    return MaterialPredictor(load_model(str(Path(data_path).parent), device))


class MaterialPredictor:
    """``predict`` of the pyfunc flavor: views (arrays or encoded images) -> the four maps."""

    def __init__(self, model: LoadedGenerator) -> None:
        self.model = model

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Maps for every sample of ``model_input`` (see the module docstring for the formats).

        Returns:
            ``{map: (N, C, H, W) float32}`` (``output=array``; every sample at the size of its
            views, so all samples of a request must have one size) or ``{map: [base64 PNG] * N}``
            (``output=png``).
        """
        output = str((params or {}).get("output") or "array")
        if output not in ("array", "png"):
            raise _input_error(f"params.output={output!r}: expected 'array' or 'png'")
        samples = parse_views(model_input, self.model.num_views)
        with torch.inference_mode():
            maps = [predict_resized(self.model, views) for views in samples]
        if output == "png":
            return {name: [_png_base64(name, m[name]) for m in maps] for name in PBR_MAPS}
        sizes = {tuple(m["albedo"].shape[-2:]) for m in maps}
        if len(sizes) > 1:
            raise _input_error(
                f"the samples' views have different sizes {sorted(sizes)}: send one size per request, "
                "or ask for params={'output': 'png'}"
            )
        return {name: torch.stack([m[name] for m in maps]).numpy() for name in PBR_MAPS}


def parse_views(model_input: Any, num_views: int) -> list[Tensor]:
    """Every sample's (V, 3, H, W) float views from a pyfunc input (see :data:`EXPECTED_INPUT`)."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        records = model_input.to_dict(orient="records")
    elif isinstance(model_input, Mapping):
        records = _records_of_mapping(model_input)
    elif isinstance(model_input, (np.ndarray, Tensor)):
        records = _records_of_mapping({"views": model_input})
    else:
        raise _input_error(f"got {type(model_input).__name__}")
    samples: list[Tensor] = []
    for index, record in enumerate(records):
        given = {k: v for k, v in record.items() if _present(v)}
        if set(given) == {"views"}:
            samples += _views_of_array(given["views"], len(samples))
        elif set(given) == {"views_png"}:
            samples += _views_of_images(given["views_png"], len(samples))
        else:
            raise _input_error(
                f"sample {index} has {sorted(given) or 'no views'}: give exactly one of views, views_png"
            )
    for index, views in enumerate(samples):
        if views.shape[0] != num_views:
            raise _input_error(f"sample {index} has {views.shape[0]} views; this model takes V={num_views}")
    if not samples:
        raise _input_error("no views given (MLflow drops inputs other than views and views_png)")
    return samples


def _records_of_mapping(mapping: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = set(mapping) - {"views", "views_png"}
    if unknown:
        raise _input_error(f"unknown input(s) {sorted(unknown)}")
    return [{key: value} for key, value in mapping.items() if _present(value)]


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return not np.isnan(value)  # a missing optional column in a DataFrame
    return True


def _views_of_array(value: Any, first: int) -> list[Tensor]:
    """(V, 3, H, W) per sample from one sample's array or a batch (N, V, 3, H, W)."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise _input_error(f"sample {first}: views is not a numeric array ({err})") from None
    batch = array[None] if array.ndim == 4 else array
    if batch.ndim != 5 or batch.shape[2] != 3:
        raise _input_error(f"sample {first}: views has shape {tuple(array.shape)}; expected (V, 3, H, W)")
    if not np.isfinite(batch).all() or batch.min() < -1e-3 or batch.max() > 1 + 1e-3:
        raise _input_error(f"sample {first}: views must be finite values in [0, 1] (images / 255)")
    return [torch.from_numpy(np.ascontiguousarray(sample.clip(0.0, 1.0))) for sample in batch]


def _views_of_images(value: Any, first: int) -> list[Tensor]:
    """(V, 3, H, W) per sample from one sample's list of encoded images, or a list of such lists."""
    value = list(value)
    if value and not isinstance(value[0], (str, bytes)):
        return [views for i, sample in enumerate(value) for views in _views_of_images(sample, first + i)]
    from PIL import Image, UnidentifiedImageError

    images = []
    for view, text in enumerate(value):
        try:
            data = base64.b64decode(text, validate=True)
            with Image.open(io.BytesIO(data)) as image:
                rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        except (ValueError, TypeError, UnidentifiedImageError) as err:
            raise _input_error(
                f"sample {first}, view {view}: not a base64-encoded PNG/JPEG ({type(err).__name__}: {err})"
            ) from None
        images.append(torch.from_numpy(rgb).permute(2, 0, 1))
    if len({tuple(image.shape) for image in images}) > 1:
        raise _input_error(
            f"sample {first}: the views have different sizes {[tuple(i.shape[1:]) for i in images]}"
        )
    return [torch.stack(images)]


def _png_base64(name: str, value: Tensor) -> str:
    from PIL import Image

    if name == "normal":
        value = (value + 1) * 0.5
    array = (value.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _input_error(problem: str) -> Exception:
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(
        f"NeuroPBR model input: {problem}; expected {EXPECTED_INPUT}"
    )
