"""The generator as an MLflow model: logged to a real SQLite store, loaded with
``mlflow.pytorch.load_model`` and pyfunc, used by ``neuropbr.infer model=``, registered, and
served by ``mlflow models serve`` (slow)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from ports import free_port

from neuropbr.maps import PBR_CHANNELS, PBR_MAPS

V = 3


@dataclass
class LoggedModel:
    uri: str  # tracking URI
    run_id: str
    generator: torch.nn.Module


def _png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((array * 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture
def logged(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoggedModel]:
    """A tiny untrained generator logged as ``runs:/<id>/model`` (registered as ``pbr``); the
    tracking URI points at its store (MLflow's global one too) while the test runs."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from neuropbr.build import build_generator
    from neuropbr.training.tracking import MlflowTracker

    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("experiment=smoke", "data.resolution=32")
    generator = build_generator(cfg).eval()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri=uri, experiment_name="models", run_name="tiny", register_model="pbr")
    tracker.start(params={}, tags={})
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tracker.log_model(
        generator, {"config": config, "weights": "generator", "epoch": 1, "step": 5}, name="model", step=5
    )
    tracker.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with _use_tracking_uri(uri):
        yield LoggedModel(uri, tracker.run_id, generator)


def test_pytorch_flavor_loads_the_generator(logged: LoggedModel) -> None:
    import mlflow

    module = mlflow.pytorch.load_model(f"runs:/{logged.run_id}/model")
    views = torch.rand(2, V, 3, 32, 32)
    with torch.no_grad():
        maps, expected = module(views), logged.generator(views)
    assert set(maps) == set(PBR_MAPS)
    for name in PBR_MAPS:
        assert maps[name].shape == (2, PBR_CHANNELS[name], 32, 32)
        torch.testing.assert_close(maps[name], expected[name])
    # The registered version is the same model.
    registered = mlflow.pytorch.load_model("models:/pbr/1")
    with torch.no_grad():
        torch.testing.assert_close(registered(views)["albedo"], expected["albedo"])
    (model,) = mlflow.MlflowClient(logged.uri).search_logged_models(
        experiment_ids=[mlflow.MlflowClient(logged.uri).get_run(logged.run_id).info.experiment_id]
    )
    assert model.name == "model" and model.source_run_id == logged.run_id


def test_pyfunc_takes_arrays_of_any_size_and_base64_images(logged: LoggedModel) -> None:
    import mlflow

    from neuropbr.inference import predict_resized
    from neuropbr.mlflow_model import load_model

    model = mlflow.pyfunc.load_model(f"runs:/{logged.run_id}/model")
    views = np.random.default_rng(0).random((2, V, 3, 20, 28), dtype=np.float32)
    out = model.predict({"views": views})
    assert {name: value.shape for name, value in out.items()} == {
        name: (2, PBR_CHANNELS[name], 20, 28) for name in PBR_MAPS
    }
    # What neuropbr.infer computes for the same views.
    local = load_model(f"runs:/{logged.run_id}/model")
    with torch.inference_mode():
        expected = predict_resized(local, torch.from_numpy(views[1]))
    np.testing.assert_allclose(out["normal"][1], expected["normal"].numpy(), atol=1e-5)
    # The same views as PNGs, maps back as PNGs of the views' size.
    pngs = [_png(view.transpose(1, 2, 0)) for view in views[0]]
    encoded = model.predict({"views_png": [pngs]}, params={"output": "png"})
    with Image.open(io.BytesIO(base64.b64decode(encoded["roughness"][0]))) as image:
        assert image.size == (28, 20) and image.mode == "L"
    arrays = model.predict({"views_png": pngs})  # one sample's list
    assert arrays["albedo"].shape == (1, 3, 20, 28)


@pytest.mark.parametrize(
    ("model_input", "message"),
    [
        ({"views": np.zeros((1, 2, 3, 8, 8), np.float32)}, "has 2 views; this model takes V=3"),
        ({"views": np.full((1, V, 3, 8, 8), 3.0, np.float32)}, r"finite values in \[0, 1\]"),
        ({"views_png": ["not base64!"] * V}, "view 0: not a base64-encoded PNG/JPEG"),
        ({"pictures": [1]}, "no views given"),
    ],
)
def test_pyfunc_says_what_it_expects(logged: LoggedModel, model_input: Any, message: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(f"runs:/{logged.run_id}/model")
    with pytest.raises(MlflowException, match=message) as caught:
        model.predict(model_input)
    assert "expected {'views'" in str(caught.value) or "Failed to enforce schema" in str(caught.value)


def test_infer_takes_a_model_uri_like_a_checkpoint(
    logged: LoggedModel, compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from neuropbr.infer import infer

    paths = []
    for index in range(V):
        paths.append(tmp_path / f"view{index}.png")
        Image.fromarray((np.random.default_rng(index).random((24, 24, 3)) * 255).astype(np.uint8)).save(
            paths[-1]
        )
    for uri in (f"runs:/{logged.run_id}/model", "models:/pbr/1"):
        out = tmp_path / uri.split(":")[0]
        cfg = compose_cfg(
            f"model={uri}", f"views=[{','.join(map(str, paths))}]", f"out={out}", config_name="infer"
        )
        assert infer(cfg) == [out]
        assert sorted(p.name for p in out.iterdir()) == [
            "albedo.png",
            "metallic.png",
            "normal.png",
            "roughness.png",
        ]


def test_infer_model_errors_name_the_key(logged: LoggedModel, compose_cfg: Callable[..., DictConfig]) -> None:
    from neuropbr.infer import infer

    missing = compose_cfg(
        "model=runs:/0123456789abcdef0123456789abcdef/model", "views=[a.png]", config_name="infer"
    )
    with pytest.raises(
        ValueError, match=r"model=runs:/0123456789abcdef0123456789abcdef/model: cannot be loaded"
    ):
        infer(missing)
    both = compose_cfg("model=models:/pbr/1", "checkpoint=x.pth", "views=[a.png]", config_name="infer")
    with pytest.raises(ValueError, match="checkpoint / model: give exactly one"):
        infer(both)
    neither = compose_cfg("views=[a.png]", config_name="infer")
    with pytest.raises(ValueError, match="checkpoint / model: give exactly one"):
        infer(neither)


def test_tracking_model_keys_are_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from neuropbr.training.tracking import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError, match=r"tracking\.register_model='a/b'"):
        MlflowTracker(uri=uri, register_model="a/b")
    with pytest.raises(ValueError, match=r"tracking\.register_model='pbr' needs tracking\.log_model=true"):
        MlflowTracker(uri=uri, register_model="pbr", log_model=False)
    tracker = MlflowTracker(uri=uri, log_checkpoint=True)  # the former name still works
    assert tracker.log_checkpoints is True and "renamed tracking.log_checkpoints" in caplog.text


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_maps(logged: LoggedModel, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged.uri, "HF_HUB_OFFLINE": "1"}
    log_file = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{logged.run_id}/model",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: up to ~5 minutes on a loaded machine
            if server.poll() is not None:
                pytest.fail(
                    f"server exited {server.returncode}:\n{(tmp_path / 'serve.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        else:
            pytest.fail(f"no answer on {base}/ping:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        views = np.random.default_rng(1).random((V, 3, 24, 24), dtype=np.float32)
        pngs = [_png(view.transpose(1, 2, 0)) for view in views]
        status, answer = _post(f"{base}/invocations", {"inputs": {"views_png": [pngs]}})
        assert status == 200, answer
        maps = {name: np.asarray(value) for name, value in answer["predictions"].items()}
        assert {name: value.shape for name, value in maps.items()} == {
            name: (1, PBR_CHANNELS[name], 24, 24) for name in PBR_MAPS
        }
        assert 0 <= maps["albedo"].min() and maps["albedo"].max() <= 1
        status, answer = _post(f"{base}/invocations", {"inputs": {"views": views[None].tolist()}})
        assert status == 200 and np.asarray(answer["predictions"]["normal"]).shape == (1, 3, 24, 24)
        status, answer = _post(f"{base}/invocations", {"inputs": {"views": views[None, :2].tolist()}})
        assert status == 400 and "this model takes V=3" in answer["message"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log_file.close()
