"""MLflow side of a sweep: one parent run per sweep, trial runs nested under it.

The sweeper creates the parent run (params = search space and sweep settings, tag = study
name). Each trial's run is created by the trial job itself (``neuropbr.train``'s tracker), nested
through ``sweep.mlflow_parent_run_id``; after the trial the sweeper finds that run by its tags
(``optuna_study``, ``optuna_trial``) and tags it with the trial's final state. When the sweep
ends, the parent gets the best value(s) and parameters.

MLflow is used only when the composed job config selects the tracker that ``train.py`` builds
(``tracking=mlflow``); with ``tracking=none`` the sweep creates no runs at all. The tracking URI
and experiment are the job's: ``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db`` in the working directory; ``tracking.experiment_name``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)

#: The job-side tracker whose runs the sweeper nests (``conf/tracking/mlflow.yaml``).
MLFLOW_TRACKER_TARGET = "neuropbr.training.tracking.MlflowTracker"
#: MLflow's limit on a param value's length.
_MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class MlflowTarget:
    """Where the trial jobs log: a tracking URI and an experiment name."""

    uri: str
    experiment_name: str


def mlflow_target(config: DictConfig) -> MlflowTarget | None:
    """The job config's MLflow destination, or None when the job does not track with MLflow."""
    tracking = config.get("tracking")
    if not isinstance(tracking, DictConfig) or tracking.get("_target_") != MLFLOW_TRACKER_TARGET:
        return None
    uri = (
        tracking.get("uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    )
    return MlflowTarget(uri=str(uri), experiment_name=str(tracking.get("experiment_name") or "neuropbr"))


def param_key(name: str) -> str:
    """An override key as an MLflow param/tag key (``+db@x.y`` -> ``_db_x.y``)."""
    return re.sub(r"[^\w\-./ ]", "_", name)


class SweepRuns:
    """Creates, finds and annotates a sweep's MLflow runs.

    Args:
        target: tracking URI and experiment of the trial jobs.
    """

    def __init__(self, target: MlflowTarget) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError as err:  # the job config asked for MLflow: never fall back silently
            raise ImportError(
                "tracking=mlflow needs mlflow: pip install mlflow (or use tracking=none)"
            ) from err
        self.target = target
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, created on first use. Creating one creates the tables of a new
        SQLite store; the opener of a sweep does that under the sweep lock, so workers starting
        together never race to migrate the same new database."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.target.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id, looked up (or created) on first use."""
        if self._experiment_id is None:
            from neuropbr.training.tracking import experiment_id

            self._experiment_id = experiment_id(self.client, self.target.experiment_name, self.target.uri)
        return self._experiment_id

    def create_parent(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """A new parent run (status RUNNING) with ``params`` and ``tags``; returns its id."""
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, tags=dict(tags), run_name=run_name)
        items = [Param(param_key(k), str(v)[:_MAX_PARAM_LENGTH]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow's LogBatch limit
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        log.info(
            "MLflow: sweep parent run %s (experiment %r) at %s",
            run.info.run_id,
            self.target.experiment_name,
            self.target.uri,
        )
        return run.info.run_id

    def has_run(self, run_id: str) -> bool:
        """Whether ``run_id`` exists in this tracking store (a joined sweep may log elsewhere)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def find_trial_run(self, parent_run_id: str, study_name: str, trial_number: int) -> str | None:
        """The run the trial job created under ``parent_run_id``, or None (it failed before)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.optuna_study = '{_quote(study_name)}' "
                f"and tags.optuna_trial = '{trial_number}'"
            ),
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, param_key(key), str(value)[:_MAX_PARAM_LENGTH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.client.log_metric(run_id, param_key(key), float(value))

    def terminate(self, run_id: str, status: str) -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""
        self.client.set_terminated(run_id, status=status)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
