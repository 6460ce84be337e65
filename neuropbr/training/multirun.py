"""A parent MLflow run for every multirun, Hydra's basic sweeper included.

Our Optuna sweeper opens its own parent run per sweep (``hydra_plugins/neuropbr_optuna``). For
any other sweeper (``python -m neuropbr.train -m optimizer.g_lr=1e-3,1e-4``), the Hydra callback
:class:`MlflowParentRun` (``hydra.callbacks.mlflow_parent`` in ``conf/hydra/default.yaml``) opens
one when the multirun starts: named ``<experiment or task>-multirun-<date>-<time>``, the swept
keys and their values as params, the command line as a tag. It writes its id to
``<sweep dir>/mlflow_parent_run.json``; each job reads it (:func:`parent_run_id`) and nests its
run under it, in-process or as a SLURM job alike. The parent ends ``FINISHED`` when the multirun
ends, ``FAILED`` as soon as a job fails.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: Written into the sweep directory by :class:`MlflowParentRun`, read by the jobs.
PARENT_FILE = "mlflow_parent_run.json"
#: Sweepers that open their own parent runs.
_OWN_PARENT_SWEEPERS = ("hydra_plugins.neuropbr_optuna",)


class MlflowParentRun(Callback):
    """Hydra callback: one MLflow parent run per multirun (see the module docstring)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from neuropbr.training.sweep_runs import SweepRuns, mlflow_target

        sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_") or "")
        target = mlflow_target(config)
        if target is None or sweeper.startswith(_OWN_PARENT_SWEEPERS):
            return
        from neuropbr.training.run_metadata import source_tags, sweeps

        overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        sweep_dir = Path(str(config.hydra.sweep.dir))
        choices = OmegaConf.select(config, "hydra.runtime.choices") or {}
        name = "-".join(
            [
                str(choices.get("experiment") or config.get("task_name") or "train"),
                "multirun",
                dt.datetime.now().strftime("%Y%m%d-%H%M%S"),
            ]
        )
        runs = SweepRuns(target)
        run_id = runs.create_parent(
            run_name=name,
            params=sweeps(sweep_command_line(sweep_dir, config)),
            tags={
                **source_tags(),
                "multirun_overrides": " ".join(overrides)[:5000] or "(defaults)",
                "sweep_dir": str(sweep_dir.resolve()),
                "sweeper": sweeper,
            },
        )
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps({"run_id": run_id, "uri": target.uri}))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status == JobStatus.FAILED:
            self._terminate(config, "FAILED")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._terminate(config, "FINISHED")

    @staticmethod
    def _terminate(config: DictConfig, status: str) -> None:
        parent = read_parent(Path(str(config.hydra.sweep.dir)))
        if parent is None:
            return
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=parent["uri"])
        if client.get_run(parent["run_id"]).info.status != "FAILED":  # a failed job's verdict stays
            client.set_terminated(parent["run_id"], status=status)


def sweep_command_line(sweep_dir: Path, sweep_config: Any = None) -> list[str]:
    """The multirun's overrides as typed (``optimizer.g_lr=1e-3,1e-4``) plus ``hydra.sweeper.params``
    as ``key=values``: from ``sweep_config`` (the multirun's config), else from the
    ``multirun.yaml`` Hydra's basic sweeper writes into ``sweep_dir`` ([] when neither exists)."""
    if sweep_config is None:
        saved = sweep_dir / "multirun.yaml"
        if not saved.is_file():
            return []
        sweep_config = OmegaConf.load(saved)
    params = OmegaConf.select(sweep_config, "hydra.sweeper.params") or {}
    overrides = OmegaConf.select(sweep_config, "hydra.overrides.task") or []
    return [f"{key}={value}" for key, value in params.items()] + [str(line) for line in overrides]


def read_parent(sweep_dir: Path) -> dict[str, str] | None:
    """``{"run_id", "uri"}`` of the multirun's parent run, or None when none was opened."""
    path = sweep_dir / PARENT_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except ValueError:
        log.warning("%s is not valid JSON: the job is not nested under a parent run", path)
        return None
    return content if isinstance(content, dict) and "run_id" in content else None


def parent_run_id(tracking_uri: str | None) -> str | None:
    """The id of this multirun job's parent run when it logs to the same store, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    except ValueError:  # not running under @hydra.main
        return None
    if hydra_cfg.mode is None or hydra_cfg.mode.name != "MULTIRUN":
        return None
    parent = read_parent(Path(str(hydra_cfg.sweep.dir)))
    if parent is None:
        return None
    if tracking_uri is not None and parent.get("uri") != tracking_uri:
        log.warning(
            "the multirun's parent run %s is in %s, this job logs to %s: not nested",
            parent["run_id"],
            parent.get("uri"),
            tracking_uri,
        )
        return None
    return parent["run_id"]
