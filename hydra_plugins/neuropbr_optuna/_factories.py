"""Samplers, pruners and directions from the sweeper config, with errors that name the key.

A sampler or pruner is given either as a preset node (``{"_target_": "optuna.samplers.TPESampler",
"seed": 42, ...}``, from the ``hydra/sweeper/sampler`` group or a carried-over config) or as one
of the preset names (``"tpe"``). A pruner's node is also what each trial records (user attribute
``neuropbr_pruner``) so that the trial job, in its own process, builds the same pruner.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from .config import PRUNERS, SAMPLERS

DIRECTIONS = ("minimize", "maximize")
#: Trial user attribute: the pruner spec the trial job rebuilds (``hydra_plugins.neuropbr_optuna.pruning``).
PRUNER_ATTR = "neuropbr_pruner"


def _spec(value: Any, presets: Mapping[str, type], key: str) -> dict[str, Any]:
    """A ``{"_target_": ..., **kwargs}`` dict from a preset name or a node."""
    if isinstance(value, str):
        if value not in presets:
            raise ValueError(f"{key}={value!r}; choose one of {sorted(presets)}")
        return dataclasses.asdict(presets[value]())
    if not isinstance(value, Mapping) or not value.get("_target_"):
        raise ValueError(f"{key}: expected one of {sorted(presets)} or a node with _target_, got {value!r}")
    return dict(value)


def _class(target: str, base: type, key: str, presets: Mapping[str, type]) -> type:
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{key}._target_={target!r} cannot be imported: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(
            f"{key}._target_={target!r}: expected a subclass of {base.__module__}.{base.__qualname__} "
            f"(presets: {sorted(presets)})"
        )
    return cls


def sampler_spec(value: Any) -> dict[str, Any]:
    """The sampler node as a dict (``value`` may be a preset name)."""
    spec = _spec(value, SAMPLERS, "hydra.sweeper.sampler")
    _class(spec["_target_"], optuna.samplers.BaseSampler, "hydra.sweeper.sampler", SAMPLERS)
    return spec


def build_sampler(
    spec: Mapping[str, Any], seed_offset: int = 0, grid: Mapping[str, Sequence[Any]] | None = None
) -> optuna.samplers.BaseSampler:
    """Instantiate the sampler of ``spec``.

    Args:
        spec: from :func:`sampler_spec`.
        seed_offset: added to ``spec["seed"]`` (if set) so that parallel workers differ.
        grid: the search space of a ``GridSampler`` (required for it, ignored otherwise).
    """
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    cls = _class(spec["_target_"], optuna.samplers.BaseSampler, "hydra.sweeper.sampler", SAMPLERS)
    if kwargs.get("seed") is not None:
        kwargs["seed"] = int(kwargs["seed"]) + seed_offset
    if issubclass(cls, optuna.samplers.CmaEsSampler):
        try:
            import cmaes  # noqa: F401  (optuna imports it lazily, at the first trial)
        except ImportError as err:
            raise ImportError(
                "hydra.sweeper.sampler=cmaes needs the cmaes package: pip install cmaes"
            ) from err
    if issubclass(cls, optuna.samplers.GridSampler):
        if grid is None:
            raise ValueError("hydra.sweeper.sampler=grid needs a search space (hydra.sweeper.params)")
        kwargs["search_space"] = dict(grid)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"hydra.sweeper.sampler: {spec['_target_']} rejected {sorted(kwargs)}: {err}"
        ) from err


def pruner_spec(value: Any) -> dict[str, Any]:
    """The pruner node as a dict (``value`` may be a preset name, or null for none)."""
    spec = _spec("none" if value is None else value, PRUNERS, "hydra.sweeper.pruner")
    build_pruner(spec)  # fail now, in the sweeper, rather than in every trial job
    return spec


def build_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Instantiate the pruner of ``spec`` (as stored on a trial: a JSON-able dict)."""
    cls = _class(spec["_target_"], optuna.pruners.BasePruner, "hydra.sweeper.pruner", PRUNERS)
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"hydra.sweeper.pruner: {spec['_target_']}({kwargs}) failed: {err}") from err


def directions(value: Any) -> list[str]:
    """``hydra.sweeper.direction`` as a list of "minimize"/"maximize" (several: multi-objective)."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, Sequence) else [value]
    names = [getattr(item, "name", item) for item in items]  # also the public plugin's Direction enum
    bad = [name for name in names if name not in DIRECTIONS]
    if not names or bad:
        raise ValueError(
            f"hydra.sweeper.direction={value!r}: expected {' or '.join(DIRECTIONS)}, or a list of them"
        )
    return [str(name) for name in names]
