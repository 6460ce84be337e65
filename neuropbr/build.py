"""Everything that turns config into objects: networks, loss, data, optimizers, schedules, hooks,
the tracker and the trainer. Shared by every CLI, and the only place that calls
``hydra.utils.instantiate``, so what a config may construct is decided in one file (and checked
for untrusted configs by :func:`check_registered_targets`).

Derived dimensions (channels, reductions, number of views, learning rates) are passed in at
build time, so no config key has to match another by hand.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from neuropbr.losses.composite import CompositeLoss
from neuropbr.metrics import VALIDATION_KEYS
from neuropbr.models.generator import PBRGenerator
from neuropbr.models.light import LightEstimator
from neuropbr.training.checkpoint import Checkpointer
from neuropbr.training.distributed import DistInfo
from neuropbr.training.early_stopping import EarlyStopping, ValidationHook, ValidationHooks
from neuropbr.training.early_stopping import check_settings as check_early_stopping
from neuropbr.training.networks import Networks
from neuropbr.training.options import LoopSettings, TrainerHooks, TrainerOptions
from neuropbr.training.precision import resolve_precision
from neuropbr.training.profiling import BatchProfiler
from neuropbr.training.tracking import NullTracker, Tracker
from neuropbr.training.trainer import Trainer
from neuropbr.utils.choices import choice
from neuropbr.utils.plain_config import plain_dict

logger = logging.getLogger(__name__)


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` on a plain copy of ``node``: interpolations resolved and enum
    choices turned into their strings, so components receive only plain Python values."""
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return _instantiate(plain, _convert_="all", **kwargs)


def build_generator(cfg: DictConfig) -> PBRGenerator:
    """Encoder, fusion and decoder from ``cfg.encoder``/``cfg.fusion``/``cfg.decoder``."""
    encoder = instantiate(cfg.encoder)
    fusion = instantiate(cfg.fusion, in_channels=encoder.out_channels[-1])
    decoder = instantiate(
        cfg.decoder,
        in_channels=fusion.out_channels,
        skip_channels=list(encoder.out_channels[:-1]),
        skip_reductions=list(encoder.reductions[:-1]),
        bottleneck_reduction=encoder.reductions[-1],
    )
    light = LightEstimator() if getattr(encoder, "light_estimation", False) else None
    return PBRGenerator(encoder, fusion, decoder, light)


def build_discriminator(cfg: DictConfig) -> nn.Module | None:
    """The discriminator of ``cfg.discriminator``, or None for ``discriminator=none``."""
    if cfg.discriminator.get("_target_") is None:
        return None
    return instantiate(cfg.discriminator, num_views=cfg.data.num_views)


def build_loss(cfg: DictConfig) -> CompositeLoss:
    """The composite loss of ``cfg.loss``."""
    loss = instantiate(cfg.loss)
    if loss.uses_gan and cfg.discriminator.get("_target_") is None:
        # The loss presets keep the guide's gan weight; without a discriminator no fake logits
        # ever reach the loss, so say so next to the "Loss: {...}" line that lists the weight.
        logger.info(
            "loss.weights.gan=%g has no effect: discriminator=none (no adversarial term is computed)",
            loss.weights["gan"],
        )
    return loss


def build_datamodule(cfg: DictConfig) -> Any:
    """The data module of ``cfg.data`` (not yet set up).

    Targets are served at ``data.resolution * decoder.sr_scale``: a super-resolving decoder
    (e.g. 1024 px views -> 2048 px maps) is trained against maps of its output size.
    """
    map_resolution = cfg.data.resolution * cfg.decoder.get("sr_scale", 1)
    if "sources" in cfg.data:  # data=mix: every source shares the mix's data shape, split and augmentation
        from neuropbr.data.mix import SHARED_KEYS

        plain = plain_dict(cfg.data, enum_to_str=True)
        shared = {key: plain[key] for key in SHARED_KEYS}
        sources = {
            name: instantiate(node, map_resolution=map_resolution, **shared)
            for name, node in cfg.data.sources.items()
        }
        return instantiate(cfg.data, map_resolution=map_resolution, sources=sources)
    return instantiate(cfg.data, map_resolution=map_resolution)


# --- training: optimizers, schedules, hooks and the trainer ---------------------------------------


def build_optimizer(
    node: DictConfig, params: Any, lr: float, device: torch.device, per_tensor: bool = False
) -> torch.optim.Optimizer:
    """The optimizer of ``node`` (``cfg.optimizer.generator`` or ``.discriminator``) over ``params``.

    ``node`` instantiates to a partial of a ``torch.optim`` class; ``lr`` and the implementation
    are passed here, like every other build-time value: fused kernels where the class has them,
    or the per-tensor loop with ``per_tensor`` (``benchmark.per_tensor_optimizer``).
    """
    factory = instantiate(node)
    kwargs: dict[str, Any] = {"lr": lr}
    if getattr(factory.func, "__name__", "") in ("Adam", "AdamW", "SGD"):
        if not per_tensor:
            # One fused kernel over all tensors: on a 2-core CPU AdamW's step drops ~10x vs the
            # per-tensor loop (0.53 s -> 0.09 s of a 3.96 s step; experiments/benchmarks/README.md).
            kwargs["fused"] = True
        else:
            # The plain per-tensor loop (torch would pick foreach on CUDA): what the original
            # stack ran, for like-for-like benchmarks.
            kwargs["foreach"] = False
    return factory(params, **kwargs)


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule of ``cfg.scheduler`` for ``optimizer`` (over ``trainer.max_epochs``,
    following ``optimized_metric_mode`` for ``scheduler=plateau``)."""
    factory = instantiate(cfg.scheduler)
    return factory(optimizer, max_epochs=cfg.trainer.max_epochs, mode=choice(cfg.optimized_metric_mode))


def build_tracker(cfg: DictConfig, dist_info: DistInfo) -> Tracker:
    """The metrics sink of ``cfg.tracking`` on the main process, :class:`NullTracker` elsewhere."""
    return instantiate(cfg.tracking) if dist_info.is_main else NullTracker()


def build_trainer(
    cfg: DictConfig, datamodule: Any, device: torch.device, dist_info: DistInfo, tracker: Any
) -> Trainer:
    """Networks, loss, optimizers, schedules and the :class:`Trainer` of ``cfg``.

    Shared by ``neuropbr.train`` and ``neuropbr.bench``, so benchmarks time the very loop users
    train.

    Args:
        cfg: the composed training config.
        datamodule: a set-up data module (``build_datamodule(cfg)`` then ``setup()``).
        device: where to train.
        dist_info: DDP rank information (``init_distributed``).
        tracker: metrics sink (``NullTracker()`` for none).

    Returns:
        A trainer ready for ``fit()`` or ``train_step()``.
    """
    generator, discriminator, loss = build_generator(cfg), build_discriminator(cfg), build_loss(cfg)
    per_tensor = cfg.benchmark.per_tensor_optimizer
    g_opt = build_optimizer(
        cfg.optimizer.generator, generator.parameters(), cfg.optimizer.g_lr, device, per_tensor
    )
    d_opt = (
        build_optimizer(
            cfg.optimizer.discriminator, discriminator.parameters(), cfg.optimizer.d_lr, device, per_tensor
        )
        if discriminator
        else None
    )
    networks = Networks(
        generator,
        discriminator,
        g_opt,
        d_opt,
        build_scheduler(cfg, g_opt),
        build_scheduler(cfg, d_opt) if d_opt else None,
    )
    loop_keys = LoopSettings.__dataclass_fields__
    options = TrainerOptions(
        precision=resolve_precision(choice(cfg.trainer.precision), device),
        device=device,
        dist_info=dist_info,
        optimized_metric=cfg.optimized_metric,
        metric_mode=choice(cfg.optimized_metric_mode),
        ema_decay=cfg.trainer.ema_decay,
        compile=cfg.trainer.compile,
        channels_last=cfg.trainer.channels_last,
        config=cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)),
        image_dir=Path(cfg.paths.output_dir) / "images",
        recompute_fakes=cfg.benchmark.recompute_fakes,
    )
    return Trainer(
        networks,
        loss,
        datamodule,
        settings=LoopSettings(**{k: v for k, v in cfg.trainer.items() if k in loop_keys}),
        options=options,
        checkpointer=Checkpointer(
            cfg.paths.checkpoint_dir,
            cfg.trainer.save_every_n_epochs,
            cfg.trainer.save_best_only,
            dist_info.is_main,
        ),
        tracker=tracker,
        hooks=TrainerHooks(
            on_validation=build_validation_hooks(cfg),
            profiler=build_profiler(cfg, device) if dist_info.is_main else None,
        ),
    )


def build_profiler(cfg: DictConfig, device: torch.device) -> BatchProfiler | None:
    """``trainer.profiler`` of ``cfg`` writing to ``<run dir>/profiler/`` (None while not enabled)."""
    node = cfg.trainer.profiler
    if not node.enabled:
        return None
    settings = {k: v for k, v in node.items() if k != "enabled"}
    return BatchProfiler(Path(cfg.paths.output_dir) / "profiler", device=device, **settings)


def build_validation_hooks(cfg: DictConfig) -> ValidationHooks | None:
    """What runs after each validation: the Optuna pruning callback, early stopping (None: neither)."""
    hooks = ValidationHooks(pruning=build_pruning_hook(cfg), early_stopping=build_early_stopping(cfg))
    return hooks if hooks else None


def build_early_stopping(cfg: DictConfig) -> EarlyStopping | None:
    """``trainer.early_stopping`` of ``cfg`` (None while its metric is null; bad values fail anyway)."""
    node = cfg.trainer.early_stopping
    check_early_stopping(node.patience, choice(node.mode), node.min_delta)
    if node.metric is None:
        return None
    return EarlyStopping(
        node.metric,
        node.patience,
        choice(node.mode),
        node.min_delta,
        valid_metrics=[f"val/{key}" for key in VALIDATION_KEYS],
    )


def build_pruning_hook(cfg: DictConfig) -> ValidationHook | None:
    """The Optuna pruning callback when this job is a trial of our sweeper (cfg.sweep is set)."""
    if cfg.sweep.trial_number is None:
        return None
    from hydra_plugins.neuropbr_optuna.pruning import OptunaPruningHook  # optuna: imported for trials only

    return OptunaPruningHook(
        cfg.sweep.storage, cfg.sweep.study_name, cfg.sweep.trial_number, cfg.optimized_metric
    )


# --- configs from untrusted files (checkpoints) ---------------------------------------------------


class UnregisteredTargetError(ValueError):
    """A config names a ``_target_`` that is not one of the project's registered components."""


def _targets(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every ``_target_`` in a nested container, at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if key == "_target_":
                yield dotted, value
            else:
                yield from _targets(value, f"{dotted}.")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _targets(value, f"{prefix}{index}.")


_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.MULTILINE)


@functools.cache
def registered_targets() -> dict[str, frozenset[str]]:
    """Every component the project registers, by the key that names it.

    The targets of the group schemas in :mod:`neuropbr.config` (``encoder._target_``:
    ``...TimmEncoder``, ``data.augment._target_``: ``...Augmentation``, ...) and of the options in
    ``conf/`` (``fusion=max`` names ``...MaxFusion``).

    Returns:
        ``{dotted key: targets allowed there}``.
    """
    from neuropbr.config import _SCHEMAS, config_dir

    allowed: dict[str, set[str]] = {}

    def add(tree: Any, prefix: str) -> None:
        for key, value in _targets(tree, prefix):
            if isinstance(value, str) and value != "???":
                allowed.setdefault(key, set()).add(value)

    for group, schemas in _SCHEMAS.items():
        for schema in schemas.values():
            add(OmegaConf.to_container(OmegaConf.structured(schema), resolve=False), f"{group}.")
    for path in sorted(Path(config_dir()).glob("*/*.yaml")):
        text = path.read_text()
        package = _PACKAGE.search(text)
        prefix = path.parent.name if package is None else package.group(1)
        if prefix in ("_group_", path.parent.name):
            prefix = f"{path.parent.name}."
        elif prefix == "_global_":
            prefix = ""
        else:  # e.g. hydra.launcher: never part of a job's config
            continue
        tree = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        if isinstance(tree, dict):
            tree.pop("defaults", None)
            add(tree, prefix)
    # A data source of data=mix may be any data option (its own target and augment's).
    for key, values in list(allowed.items()):
        if key.startswith("data.") and not key.startswith(f"{_MIX_SOURCES}."):
            allowed.setdefault(f"{_MIX_SOURCES}.*.{key[len('data.') :]}", set()).update(values)
    return {key: frozenset(values) for key, values in allowed.items()}


#: Where ``data=mix`` keeps its sources: ``{name: a data config}`` with names users choose.
_MIX_SOURCES = "data.sources"


def _registered_key(key: str) -> str:
    """``data.sources.<name>.X`` -> ``data.sources.*.X`` (source names are free)."""
    if key.startswith(f"{_MIX_SOURCES}."):
        _, _, rest = key[len(_MIX_SOURCES) + 1 :].partition(".")
        return f"{_MIX_SOURCES}.*.{rest}"
    return key


def check_registered_targets(config: Mapping[str, Any]) -> None:
    """Refuse a config (e.g. one stored in a checkpoint) that names anything but the project's own
    components: building it through ``instantiate`` would construct or call whatever it names.

    Args:
        config: a plain nested config.

    Raises:
        UnregisteredTargetError: one line per offending ``_target_`` with its key and value.
    """
    allowed = registered_targets()
    refused = []
    for key, value in _targets(config):
        if value is None:  # discriminator=none: nothing is built
            continue
        registered = allowed.get(_registered_key(key))
        if registered is None:
            refused.append(f"{key}={value!r} (no component is registered at this key)")
        elif value not in registered:
            refused.append(f"{key}={value!r} (expected one of {sorted(registered)})")
    if refused:
        raise UnregisteredTargetError(
            "names components that are not NeuroPBR's own, so nothing was built: "
            + "; ".join(refused)
            + ". A checkpoint may only rebuild the components registered in neuropbr/config.py and "
            "conf/; one from an untrusted source may have been crafted to run code"
        )
