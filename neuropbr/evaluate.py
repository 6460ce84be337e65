"""``python -m neuropbr.evaluate``: the full metric set of a checkpoint on a dataset.

::

    python -m neuropbr.evaluate checkpoint=outputs/.../checkpoints/best_model.pth   # its own val split
    python -m neuropbr.evaluate checkpoint=best_model.pth data=folder data.root=/data/pbr split=all
    python -m neuropbr.evaluate checkpoint=best_model.pth data=synthetic data.num_samples=64 tracking=none

Which data: with no ``data=`` the checkpoint's own data config; with ``data=<option>`` that
option, where the keys every data option shares (``data.resolution``, ``data.num_views``,
``data.renders``, ``data.val_ratio``, ``data.batch_size``, ``data.seed``, ...) still come from the
checkpoint unless given on the command line. So ``split=val`` is the training run's validation
split (same materials, same seed and ratio) and ``split=all`` is every sample; evaluation is never
augmented.

What it reports: every key of :mod:`neuropbr.metrics` plus the training loss (``compute_loss=true``), as
``<split>/<key>`` (``val/overall_psnr``, ``val/loss``: the names the training run logs), printed
as a table, written as JSON (``out=``, default
``<checkpoint without .pth>.<split>.<dataset>.metrics.json`` beside the checkpoint, where
``<dataset>`` names the data, so scoring another dataset writes another file: see
:func:`default_report_path`) and logged to MLflow (``tracking=none`` disables) as its own run in the
training run's experiment, nested under it (``mlflow.parentRunId``) and tagged
``training_run_id``, with the JSON as an artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from neuropbr.build import build_datamodule, build_loss
from neuropbr.config import DataConfig, config_dir, register_configs
from neuropbr.data.sampling import EpochSampler
from neuropbr.inference import LoadedGenerator, load_generator
from neuropbr.maps import PBR_MAPS
from neuropbr.metrics import METRIC_DEFINITIONS, BaselineMaps
from neuropbr.training.precision import resolve_device, resolve_precision
from neuropbr.training.tracking import MlflowTracker, NullTracker, Tracker
from neuropbr.training.validation import validate
from neuropbr.utils.choices import choice
from neuropbr.utils.plain_config import plain_dict
from neuropbr.utils.signals import ignore_stop_signals_in_worker

log = logging.getLogger(__name__)

#: Data keys every data option has (``DataConfig``): they keep the checkpoint's values when the
#: user picks another data option, unless given on the command line.
SHARED_DATA_KEYS: tuple[str, ...] = tuple(k for k in DataConfig.__dataclass_fields__ if k != "_target_")


# --- which data ---------------------------------------------------------------------------------


def explicit_keys(overrides: Sequence[str]) -> set[str]:
    """Dotted config keys set by command-line overrides.

    ``data.root=/x`` and ``+data.cache=true`` give ``data.root`` and ``data.cache``; a group
    choice such as ``data=folder`` gives ``data`` (not a data key).
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {override.key_or_group for override in parsed if not override.is_delete()}


def resolve_data_config(cfg: DictConfig, train_cfg: DictConfig, overrides: Sequence[str] = ()) -> DictConfig:
    """The data config to evaluate on (see the module docstring for the rules).

    Args:
        cfg: the composed ``evaluate`` config (``cfg.data`` None or a data option).
        train_cfg: the training config stored in the checkpoint.
        overrides: the command-line overrides (which keys the user set explicitly).

    Returns:
        ``{"data": ..., "decoder": ...}`` ready for :func:`neuropbr.build.build_datamodule` (the
        checkpoint's decoder sets the target size ``data.resolution * sr_scale``), augmentation
        off and, for ``split=all``, ``val_ratio=0`` (every sample in one set).
    """
    stored = OmegaConf.to_container(train_cfg.data, resolve=True, enum_to_str=True)
    assert isinstance(stored, dict)
    if cfg.data is None:
        data = dict(stored)
    else:
        picked = OmegaConf.to_container(cfg.data, resolve=False, enum_to_str=True)
        assert isinstance(picked, dict)
        if picked.get("_target_") == stored.get("_target_"):
            data = dict(stored)
        else:
            data = {**picked, **{key: stored[key] for key in SHARED_DATA_KEYS if key in stored}}
    node = OmegaConf.create(
        {"data": data, "decoder": OmegaConf.to_container(train_cfg.decoder, resolve=True)}
    )
    explicit = explicit_keys(overrides)
    for key in sorted(k for k in explicit if k.startswith("data.")):
        OmegaConf.update(node, key, OmegaConf.select(cfg, key), merge=False)
    if cfg.seed is not None:
        node.data.seed = cfg.seed
    elif OmegaConf.is_interpolation(node.data, "seed"):  # a picked option's ${seed}, no stored one
        node.data.seed = int(train_cfg.get("seed", 0))
    node.data.augment.enabled = False  # scores are never taken on augmented samples
    if "light_targets" in node.data:  # they teach the training step only; scoring needs the maps
        node.data.light_targets = False
    if choice(cfg.split) == "all":
        node.data.val_ratio = 0.0  # every sample lands in the one (train) set
    return node


def _loader(dataset: Dataset, datamodule: Any) -> DataLoader:
    """In order, with the sample seeds the trainer's validation uses (epoch 0, no shuffle)."""
    return DataLoader(
        dataset,
        batch_size=datamodule.batch_size,
        sampler=EpochSampler(len(dataset), seed=datamodule.seed, shuffle=False),  # type: ignore[arg-type]
        num_workers=datamodule.num_workers,
        worker_init_fn=ignore_stop_signals_in_worker,
    )


def select_split(datamodule: Any, split: str) -> Dataset:
    """The set-up data module's dataset of ``split`` (``all`` is the train set at val_ratio 0).

    Raises:
        ValueError: the split is empty.
    """
    dataset = datamodule.val_set if split == "val" else datamodule.train_set
    if dataset is None or len(dataset) == 0:
        raise ValueError(
            f"split={split}: no samples (data.val_ratio={getattr(datamodule, 'val_ratio', '?')}); "
            "the dataset may have too few materials for a validation split; use split=all"
        )
    return dataset


#: Data keys that change how fast samples load, not which samples are scored nor their values
#: (``cache`` is not one: cached images are stored at 8 bits).
_LOADING_KEYS = frozenset({"batch_size", "num_workers", "pin_memory", "persistent_workers", "cache_dir"})


def default_report_path(checkpoint: Path, split: str, data: Mapping[str, Any]) -> Path:
    """``<checkpoint without .pth>.<split>.<dataset>.metrics.json`` beside the checkpoint.

    ``<dataset>`` is ``<root folder name or data kind>-<renders>-<hash>``: the hash covers the
    resolved data config (absolute root, renders, resolution, views, seed, val ratio, ...; not the
    loading keys), so two datasets, or two render choices of one, never share a file, and scoring
    the same data again replaces its own file.

    Args:
        checkpoint: the checkpoint scored.
        split: ``val``, ``train`` or ``all``.
        data: the resolved data config the scores are taken on.
    """
    identity = {key: value for key, value in data.items() if key not in _LOADING_KEYS}
    if identity.get("root"):
        identity["root"] = str(Path(str(identity["root"])).expanduser().resolve())
        source = Path(identity["root"]).name
    else:  # synthetic data: the data module's kind
        source = str(identity.get("_target_", "data")).rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{source}-{identity.get('renders', 'clean')}-{digest}")
    return checkpoint.with_suffix(f".{split}.{tag}.metrics.json")


# --- metrics ------------------------------------------------------------------------------------


def score(
    model: LoadedGenerator,
    loader: DataLoader,
    loss: torch.nn.Module | None,
    precision: Any,
    baseline: BaselineMaps | None = None,
) -> tuple[dict[str, float], int]:
    """Every metric of :class:`~neuropbr.metrics.MetricAccumulator` (and the loss) over ``loader``,
    computed exactly as training's validation does (:func:`~neuropbr.training.validation.validate`),
    with the trivial predictors' scores when ``baseline`` is given.

    Returns:
        ``({key: value}, number of samples)``; ``loss`` is the sample-weighted mean loss.
    """
    result = validate(model.generator, loader, loss, precision, model.device, baseline=baseline)
    return result.metrics, result.count


def baseline_for(model: LoadedGenerator, datamodule: Any) -> BaselineMaps | None:
    """The constant predictor to score beside the model: the one its training run used (stored in
    the checkpoint), else the means of the evaluated data's own training split."""
    if model.baseline_maps is not None:
        return BaselineMaps.from_dict(model.baseline_maps)
    if datamodule.train_set is not None and len(datamodule.train_set) > 0:
        log.info("the checkpoint stores no baseline maps: the constant baseline uses this data's train split")
        return BaselineMaps.from_maps(datamodule.training_maps())
    log.warning("no baseline maps in the checkpoint and no train split here: baselines are not reported")
    return None


#: Rows of the printed table: per-map image metrics, then the scalar ones.
_TABLE_METRICS = ("psnr", "ssim", "mae", "rmse")
_SCALAR_ROWS = (
    ("normal angle mean (deg)", "normal_angle_mean"),
    ("normal angle median (deg)", "normal_angle_median"),
    ("normals within 11.25 deg (%)", "normal_within_11_25"),
    ("normals within 22.5 deg (%)", "normal_within_22_5"),
    ("normals within 30 deg (%)", "normal_within_30"),
    ("overall PSNR (dB)", "overall_psnr"),
    ("overall SSIM", "overall_ssim"),
    ("render PSNR (dB)", "render_psnr"),
    ("loss", "loss"),
    ("constant albedo PSNR (dB)", "baseline_constant_albedo_psnr"),
    ("view-mean albedo PSNR (dB)", "baseline_view_mean_albedo_psnr"),
    ("photo-mean albedo PSNR (dB)", "baseline_photo_mean_albedo_psnr"),
    ("constant roughness PSNR (dB)", "baseline_constant_roughness_psnr"),
    ("constant metallic PSNR (dB)", "baseline_constant_metallic_psnr"),
    ("flat normal PSNR (dB)", "baseline_flat_normal_psnr"),
    ("flat normal angle mean (deg)", "baseline_flat_normal_angle_mean"),
    ("albedo skill (dB over constant)", "albedo_skill_db"),
    ("albedo skill (dB over view mean)", "albedo_skill_db_vs_view_mean"),
    ("albedo skill (dB over photo mean)", "albedo_skill_db_vs_photo_mean"),
    ("roughness skill (dB)", "roughness_skill_db"),
    ("metallic skill (dB)", "metallic_skill_db"),
    ("normal skill (dB over flat)", "normal_skill_db"),
    ("normal angle / flat normal's", "normal_angle_ratio"),
    ("mean skill (dB)", "skill_db"),
)


def format_table(metrics: Mapping[str, float], title: str) -> str:
    """The human-readable table the CLI prints.

    Args:
        metrics: plain keys (``albedo_psnr``, ``overall_psnr``, ``loss``, ...).
        title: first line.

    Returns:
        A per-map block (PSNR, SSIM, MAE, RMSE) and one line per scalar metric.
    """
    lines = [title, f"{'map':<12}" + "".join(f"{m.upper():>10}" for m in _TABLE_METRICS)]
    for name in PBR_MAPS:
        lines.append(f"{name:<12}" + "".join(f"{metrics[f'{name}_{m}']:>10.4f}" for m in _TABLE_METRICS))
    lines.append("")
    width = max(len(label) for label, _ in _SCALAR_ROWS)
    lines += [f"{label:<{width}}  {metrics[key]:.4f}" for label, key in _SCALAR_ROWS if key in metrics]
    return "\n".join(lines)


# --- tracking -----------------------------------------------------------------------------------


def _tracker(cfg: DictConfig, split: str, checkpoint: Path) -> Tracker:
    """``tracking=none`` -> NullTracker; else an MlflowTracker (never uploads checkpoints or models)."""
    if str(cfg.tracking.get("_target_", "")).endswith("NullTracker"):
        return NullTracker()
    return MlflowTracker(
        uri=cfg.tracking.uri,
        experiment_name=cfg.tracking.experiment_name,
        run_name=cfg.tracking.run_name or f"evaluate-{split}-{checkpoint.stem}",
        log_model=False,
    )


def _training_run(tracker: Tracker, run_id: str | None) -> str | None:
    """Point ``tracker`` at the training run's experiment; returns the run id if the store has it."""
    if run_id is None or not isinstance(tracker, MlflowTracker):
        return None
    from mlflow.exceptions import MlflowException

    try:
        run = tracker.client.get_run(run_id)
    except MlflowException:
        log.warning(
            "the checkpoint's training run %s is not in the tracking store %s; the evaluation run is "
            "not nested under it (set tracking.uri / MLFLOW_TRACKING_URI to the training run's store)",
            run_id,
            tracker.uri,
        )
        return None
    tracker.experiment_name = tracker.client.get_experiment(run.info.experiment_id).name
    return run_id


# --- the command --------------------------------------------------------------------------------


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Score ``cfg.checkpoint`` on the data and split ``cfg`` describes; write JSON, log to MLflow.

    Args:
        cfg: the composed ``conf/evaluate.yaml``.
        overrides: the command-line overrides (keys given there win over the checkpoint's).

    Returns:
        The report written as JSON: ``metrics`` (``<split>/<key>``), ``num_samples``, ``split``,
        ``checkpoint``, ``weights``, ``epoch``, ``step``, ``data``, ``training_run_id``,
        ``mlflow_run_id`` (this evaluation's run, or None) and ``json`` (where it was written).

    Raises:
        ValueError: bad keys or an empty split; CheckpointError: an unusable checkpoint.
    """
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise ValueError("checkpoint: missing; pass checkpoint=PATH (a .pth written by neuropbr.train)")
    split = choice(cfg.split)
    device = resolve_device(choice(cfg.device))
    model = load_generator(cfg.checkpoint, device, prefer_ema=cfg.ema)
    data_cfg = resolve_data_config(cfg, model.config, overrides)
    datamodule = build_datamodule(data_cfg)
    datamodule.setup()
    dataset = select_split(datamodule, split)
    loss = build_loss(model.config).to(device).eval() if cfg.compute_loss else None
    start = time.perf_counter()
    values, count = score(
        model,
        _loader(dataset, datamodule),
        loss,
        resolve_precision(choice(cfg.precision), device),
        baseline_for(model, datamodule),
    )
    metrics = {f"{split}/{key}": value for key, value in values.items()}
    log.info("scored %d samples in %.1f s", count, time.perf_counter() - start)

    data = plain_dict(data_cfg.data)
    out = Path(cfg.out) if cfg.out else default_report_path(model.checkpoint, split, data)
    report: dict[str, Any] = {
        "checkpoint": str(model.checkpoint.resolve()),
        "weights": model.weights,
        "epoch": model.epoch,
        "step": model.step,
        "split": split,
        "num_samples": count,
        "data": data,
        "metrics": metrics,
        "metric_definitions": METRIC_DEFINITIONS,
        "training_run_id": model.mlflow_run_id,
        "mlflow_run_id": None,
        "json": str(out.resolve()),
    }
    tracker = _tracker(cfg, split, model.checkpoint)
    parent = _training_run(tracker, model.mlflow_run_id)
    status = "FAILED"
    try:
        tracker.start(
            params={
                "checkpoint": report["checkpoint"],
                "split": split,
                "weights": model.weights,
                "num_samples": count,
                "checkpoint_epoch": model.epoch,
                "checkpoint_step": model.step,
                "data": data,
            },
            tags={"task": "evaluate", "training_run_id": model.mlflow_run_id or "none", "split": split},
            parent_run_id=parent,
        )
        report["mlflow_run_id"] = tracker.run_id
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        tracker.log_metrics(metrics, step=model.step)
        tracker.log_artifact(out, "evaluation")
        status = "FINISHED"
    finally:
        tracker.close(status)
    log.info("wrote %s", out)
    return report


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
def _main(cfg: DictConfig) -> None:
    """Entry point: evaluate with the command line's overrides deciding which data keys win."""
    report = evaluate(cfg, HydraConfig.get().overrides.task)
    values = {key.split("/", 1)[1]: value for key, value in report["metrics"].items()}
    title = (
        f"{report['checkpoint']} | split={report['split']} | {report['num_samples']} samples | "
        f"{report['weights']} weights | {report['json']}"
    )
    print(format_table(values, title))  # noqa: T201 - the CLI's human-readable table


def main() -> None:
    """Console entry point: register the config schemas, then run the Hydra app."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
