"""Experiment tracking behind a small interface: MLflow (optionally with TensorBoard), or nothing.

The loop calls only :class:`Tracker`'s methods, so it never imports MLflow and a run without
tracking pays nothing for it.

``tracking=none`` builds :class:`NullTracker`, which logs nothing and imports nothing.
:class:`MlflowTracker` talks to MLflow through an explicit ``MlflowClient`` (no global active-run
state), defaulting to ``sqlite:///mlflow.db`` in the working directory so that
``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows every run.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from neuropbr.training.tracking_server import BufferedClient, check_tracking_server, is_remote, open_client

log = logging.getLogger(__name__)

#: MLflow's request limits (LogBatch): params and metrics are sent in chunks below these.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000


class Tracker(Protocol):
    """What the trainer and the CLIs log through."""

    run_id: str | None

    def start(
        self,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        resume_run_id: str | None = None,
        parent_run_id: str | None = None,
        default_name: str | None = None,
    ) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_image(self, path: str | Path, key: str, step: int) -> None: ...

    def log_model(self, generator: Any, metadata: Mapping[str, Any], *, name: str, step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def close(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Logs nothing (``tracking=none``, and every rank but 0 under DDP)."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    def start(self, **_: Any) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def log_image(self, path: str | Path, key: str, step: int) -> None:
        return None

    def log_model(self, generator: Any, metadata: Mapping[str, Any], *, name: str, step: int) -> None:
        return None

    def set_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def close(self, status: str = "FINISHED") -> None:
        return None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}``: the resolved config as MLflow params."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            text = str(value)
            flat[name] = text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."
    return flat


def _artifact_location(uri: str) -> str | None:
    """For a SQLite store, artifacts go beside the database (``mlartifacts/``) rather than into
    ``./mlruns`` of whatever directory the run started in; servers choose their own."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :])
    return (database.parent / "mlartifacts").resolve().as_uri()


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) if missing.

    Safe when several processes (sweep workers) race to create it.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    except Exception:  # another process created it between our two calls
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class MlflowTracker:
    """Logs params, metrics, tags and artifacts of one run to an MLflow tracking store.

    Args:
        uri: tracking URI; None -> ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.
        experiment_name: created on first use.
        run_name: display name; None: the ``default_name`` given to :meth:`start` (made unique in
            the experiment with a ``-2``, ``-3`` ... suffix), else one MLflow picks.
        tensorboard: also write TensorBoard event files to ``tensorboard_dir``.
        log_checkpoints: upload the full training state (``best_model.pth``, ``latest.pth``) at
            the end of training.
        log_checkpoint: the former name of ``log_checkpoints`` (still accepted, with a warning).
        tensorboard_dir: where TensorBoard writes (the run directory's ``tensorboard/``).
        retry_every_s: a remote server that stops answering mid-run: seconds between attempts
            to re-send what was kept meanwhile (:mod:`neuropbr.training.tracking_server`).
        log_model: log the generator as the MLflow model ``runs:/<id>/model`` (see
            :mod:`neuropbr.mlflow_model`).
        register_model: also register that model as a new version of this registered model.
    """

    def __init__(
        self,
        uri: str | None = None,
        experiment_name: str = "neuropbr",
        run_name: str | None = None,
        tensorboard: bool = False,
        log_checkpoints: bool = False,
        tensorboard_dir: str | None = None,
        retry_every_s: float = 60.0,
        log_model: bool = True,
        register_model: str | None = None,
        log_checkpoint: bool | None = None,
    ) -> None:
        if log_checkpoint is not None:
            log.warning(
                "tracking.log_checkpoint=%s: renamed tracking.log_checkpoints (the full training state); "
                "the deployable generator is logged as runs:/<id>/model (tracking.log_model)",
                log_checkpoint,
            )
            log_checkpoints = log_checkpoint
        if register_model is not None and (not register_model.strip() or "/" in register_model):
            raise ValueError(
                f"tracking.register_model={register_model!r}: expected a registered model name (not empty, "
                "no '/'), or null"
            )
        if register_model is not None and not log_model:
            raise ValueError(
                f"tracking.register_model={register_model!r} needs tracking.log_model=true (it registers "
                "the logged model)"
            )
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.log_checkpoints = log_checkpoints
        self.log_model_enabled = log_model
        self.register_model = register_model
        try:
            self.client = open_client(self.uri)  # a new SQLite store: created under a lock
        except ImportError as err:  # a config asked for MLflow: never fall back silently
            raise ImportError(
                "tracking=mlflow needs mlflow: pip install mlflow (or use tracking=none)"
            ) from err
        if is_remote(self.uri):
            # Fail now if the server is down; keep the run going if it goes away later.
            check_tracking_server(uri)
            self.client = BufferedClient(self.client, self.uri, retry_every_s=retry_every_s)
        self.run_id: str | None = None
        #: On resume: per metric key, the highest step the run already has (see :meth:`start`).
        self._logged_up_to: dict[str, int] = {}
        self._tb_writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "tracking.tensorboard=true needs tensorboard: pip install 'neuropbr[tensorboard]'"
                ) from err
            self._tb_writer = SummaryWriter(log_dir=tensorboard_dir or "tensorboard")

    def _experiment_id(self) -> str:
        return experiment_id(self.client, self.experiment_name, self.uri)

    def start(
        self,
        *,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        resume_run_id: str | None = None,
        parent_run_id: str | None = None,
        default_name: str | None = None,
    ) -> None:
        """Create the run (nested under ``parent_run_id`` when given) or reopen ``resume_run_id``.

        The new run is called ``run_name``, else ``default_name`` made unique in the experiment.
        A reopened run remembers, per metric key, the highest step it already has: the steps
        between its last checkpoint and the interruption are trained again on resume, and
        :meth:`log_metrics` skips them rather than adding a second row per step (resume is
        exact, so the values are those already logged).
        """
        flat = flatten(params)
        if resume_run_id:
            run = self.client.get_run(resume_run_id)
            self.run_id = run.info.run_id
            self._logged_up_to = self._last_logged_steps(self.run_id, run.data.metrics)
            self.client.update_run(self.run_id, status="RUNNING")
            known = run.data.params
            changed = {k: v for k, v in flat.items() if k in known and known[k] != v}
            flat = {k: v for k, v in flat.items() if k not in known}
            if changed:
                # MLflow params are immutable: record what the resumed run changed as a tag.
                self.set_tags(
                    {
                        "resumed_config_changes": ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))[
                            :5000
                        ]
                    }
                )
            log.info("MLflow: resumed run %s at %s", self.run_id, self.uri)
        else:
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            experiment = self._experiment_id()
            name = self.run_name or (default_name and self._unique_name(experiment, default_name))
            run = self.client.create_run(experiment, tags=all_tags, run_name=name)
            self.run_id = run.info.run_id
            log.info("MLflow: run %s (experiment %r) at %s", self.run_id, self.experiment_name, self.uri)
        self.set_tags(tags)
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(flat.items())]
        for i in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAMS_PER_BATCH])

    def _unique_name(self, experiment: str, name: str) -> str:
        """``name``, or ``name-2``, ``name-3`` ... when runs of the experiment already have it."""
        quoted = name.replace("'", "\\'")
        taken = {
            run.info.run_name
            for run in self.client.search_runs(
                [experiment], filter_string=f"attributes.run_name LIKE '{quoted}%'", max_results=1000
            )
        }
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        return candidate

    def _last_logged_steps(self, run_id: str, keys: Mapping[str, float]) -> dict[str, int]:
        """Per metric key the run has, the highest step logged."""
        steps = {}
        for key in keys:
            history = self.client.get_metric_history(run_id, key)
            if history:
                steps[key] = max(metric.step for metric in history)
        if steps:
            log.info(
                "MLflow: run %s has metrics up to step %d; steps up to that are not logged again",
                run_id,
                max(steps.values()),
            )
        return steps

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        if self._logged_up_to:  # a resumed run: the steps it already has are not logged twice
            metrics = {k: v for k, v in metrics.items() if step > self._logged_up_to.get(k, -1)}
        # MLflow rejects NaN/inf in some stores; log finite values and report the others once.
        finite = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        bad = sorted(set(metrics) - set(finite))
        if bad:
            log.warning("not logging non-finite metrics at step %d: %s", step, bad)
        items = [Metric(k, v, now, step) for k, v in finite.items()]
        for i in range(0, len(items), _METRICS_PER_BATCH):
            self.client.log_batch(self._require_run(), metrics=items[i : i + _METRICS_PER_BATCH])
        if self._tb_writer is not None:
            for key, value in finite.items():
                self._tb_writer.add_scalar(key, value, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self._require_run(), str(path), artifact_path)

    def log_image(self, path: str | Path, key: str, step: int) -> None:
        """An image file through ``MlflowClient.log_image`` under ``key`` (e.g. ``val/comparison``)
        at ``step``, so the run page's image slider walks through the steps; also in TensorBoard."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
        self.client.log_image(self._require_run(), array, key=key, step=step)
        if self._tb_writer is not None:
            self._tb_writer.add_image(key, array, global_step=step, dataformats="HWC")

    def log_model(self, generator: Any, metadata: Mapping[str, Any], *, name: str, step: int) -> None:
        """Log ``generator`` as the MLflow model ``runs:/<run id>/<name>`` at ``step``; the model
        named ``model`` is also registered as ``register_model`` when that is set."""
        if not self.log_model_enabled:
            return
        from neuropbr.mlflow_model import log_generator

        info = log_generator(
            generator,
            metadata,
            tracking_uri=self.uri,
            run_id=self._require_run(),
            name=name,
            step=step,
            registered_model_name=self.register_model if name == "model" else None,
        )
        if info.registered_model_version is not None:
            log.info("MLflow: registered %s version %s", self.register_model, info.registered_model_version)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self._require_run(), key, str(value))

    def close(self, status: str = "FINISHED") -> None:
        """End the run with ``FINISHED``, ``FAILED`` or ``KILLED`` (interrupted, pruned)."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
        if self._tb_writer is not None:
            self._tb_writer.close()

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("MlflowTracker.start() must be called before logging")
        return self.run_id
