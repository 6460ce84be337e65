"""Config schemas of the ``hydra/sweeper=optuna`` sweeper, its samplers and its pruners.

Registered in Hydra's ConfigStore when this module is imported. Hydra's plugin scanner imports
every public module under ``hydra_plugins/``, and that import is the only hook a plugin gets, so
registration here is the documented Hydra mechanism (not the import-time side effect STYLE warns
against); ``hydra_plugins.neuropbr_optuna.register_plugin()`` does the same explicitly for
editable installs, whose import hooks the scanner cannot walk.

This module imports neither optuna nor mlflow: Hydra imports it at every start-up, sweep or not.

Groups and options::

    hydra/sweeper:          optuna
    hydra/sweeper/sampler:  tpe (default) | random | cmaes | grid | nsgaii
    hydra/sweeper/pruner:   none (default) | median | hyperband

``hydra.sweeper.sampler=random`` / ``hydra.sweeper.pruner=median`` (a plain name instead of a
group choice) are accepted as well; an unknown name raises an error listing the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "neuropbr_optuna"
SWEEPER_TARGET = "hydra_plugins.neuropbr_optuna.optuna_sweeper.OptunaSweeper"


# --- samplers (https://optuna.readthedocs.io/en/stable/reference/samplers/) -----------------------


@dataclass
class SamplerConfig:
    """Base of every sampler preset: the optuna class and its seed."""

    _target_: str = MISSING
    #: Seeds the sampler. Worker k of a shared study (k = how many workers joined before it)
    #: uses seed + k, so parallel workers do not propose the same points.
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    """``optuna.samplers.TPESampler``: the default, good for 10-1000 trials."""

    _target_: str = "optuna.samplers.TPESampler"
    #: Random trials before TPE starts modelling (counted over the whole study).
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    #: Model the parameters jointly (better for correlated loss weights).
    multivariate: bool | None = None
    group: bool = False
    #: Treat running trials as bad while sampling, so parallel workers spread out.
    constant_liar: bool = True
    consider_endpoints: bool | None = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """``optuna.samplers.RandomSampler``: a baseline, and the fastest to sample."""

    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """``optuna.samplers.CmaEsSampler`` (needs ``pip install cmaes``): continuous spaces only."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    sigma0: float | None = None
    n_startup_trials: int = 1
    consider_pruned_trials: bool = False
    #: None or "ipop" / "bipop".
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    warn_independent_sampling: bool = True


@dataclass
class GridSamplerConfig(SamplerConfig):
    """``optuna.samplers.GridSampler``: every point of a discrete space.

    The grid is built from ``hydra.sweeper.params`` (``choice``/``range`` and ``int(interval)``);
    ``n_trials`` is capped at the grid size.
    """

    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """``optuna.samplers.NSGAIISampler``: a genetic algorithm for multi-objective sweeps."""

    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


# --- pruners (https://optuna.readthedocs.io/en/stable/reference/pruners.html) ---------------------


@dataclass
class PrunerConfig:
    """Base of every pruner preset."""

    _target_: str = MISSING


@dataclass
class NopPrunerConfig(PrunerConfig):
    """``optuna.pruners.NopPruner``: never prunes (the trials still report every validation)."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig(PrunerConfig):
    """``optuna.pruners.MedianPruner``: stop a trial whose metric is worse than the median of the
    other trials at the same epoch."""

    _target_: str = "optuna.pruners.MedianPruner"
    #: No pruning until this many trials of the study have completed.
    n_startup_trials: int = 5
    #: No pruning before this epoch (0-based) of a trial.
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    """``optuna.pruners.HyperbandPruner``: successive halving over several brackets (epochs are
    the resource)."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    #: An int (epochs) or "auto" (the epochs of the first completed trial).
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


#: The names users type (``hydra/sweeper/sampler=<name>`` or ``hydra.sweeper.sampler=<name>``).
SAMPLERS: dict[str, type[SamplerConfig]] = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "grid": GridSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
}
PRUNERS: dict[str, type[PrunerConfig]] = {
    "none": NopPrunerConfig,
    "median": MedianPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
}


# --- the sweeper ------------------------------------------------------------------------------------


@dataclass
class OptunaSweeperConfig:
    """``hydra.sweeper`` when ``hydra/sweeper=optuna``.

    The search space follows hydra-optuna-sweeper 1.3 (``params`` in override syntax), so its
    sweep configs carry over; see ``_search_space.py`` for each form.
    """

    _target_: str = SWEEPER_TARGET
    # The sweeper builds the sampler and pruner itself (seed per worker, grid from params):
    # Hydra must hand them over as plain dicts, not instantiate them.
    _recursive_: bool = False
    _convert_: str = "all"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}, "_self_"])

    #: A sampler preset (group ``hydra/sweeper/sampler``) or one of its names.
    sampler: Any = MISSING
    #: A pruner preset (group ``hydra/sweeper/pruner``) or one of its names.
    pruner: Any = MISSING
    #: "minimize" | "maximize", or a list of them for a multi-objective sweep (the task then
    #: returns a sequence of as many floats).
    direction: Any = "minimize"
    #: Any SQLAlchemy RDB URL: sqlite (one machine) or postgresql+psycopg2://... (several).
    storage: str = "sqlite:///optuna.db"
    #: Name of the study in the storage; the same name resumes it / shares it between workers.
    #: null: optuna generates a fresh name on every run.
    study_name: str | None = None
    #: Trials this sweep adds to the study (shared by every worker that joins the sweep).
    n_trials: int = 20
    #: Trials asked at once and handed to the launcher as one batch.
    n_jobs: int = 1
    #: The sweep stops (and exits non-zero) once more than max_failure_rate * n_trials of this
    #: worker's trials have failed; 0 stops at the first failure.
    max_failure_rate: float = 0.25
    #: Seconds between the heartbeats this worker records for its running trials (null: none).
    #: A worker killed outright (SIGKILL, a lost node) stops beating; once its trial's last beat
    #: is older than grace_period, the next worker that reserves a trial of the study records it
    #: as FAIL (not re-run: it keeps its slot of the budget, like an interrupted trial).
    heartbeat_interval: int | None = 60
    #: Seconds without a heartbeat before a running trial is stale (null: 2 x heartbeat_interval).
    grace_period: int | None = None
    #: A worker whose share of the budget is done waits up to this many seconds for the other
    #: workers' running trials before writing the sweep's best (optimization_results.yaml, the
    #: MLflow parent), so that every worker writes the final best. With heartbeats a dead
    #: worker's trial is failed after grace_period and ends the wait; without them it stays
    #: RUNNING and the wait ends here, the file then saying it is provisional. The waiting
    #: worker keeps its machine meanwhile; 0: write at once (provisional while trials run).
    final_wait_s: int = 3600
    #: ``{key: override}``: ``interval(a,b)``, ``int(interval(a,b))``, ``tag(log, interval(a,b))``,
    #: ``choice(...)``, ``range(...)``, ``a,b,c``, or a fixed value.
    params: dict[str, Any] | None = None
    #: Dotted path of ``fn(cfg, trial) -> None`` that suggests extra (e.g. conditional) params.
    custom_search_space: str | None = None


def register_sweeper_configs() -> None:
    """Store the sweeper, sampler and pruner configs in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConfig, provider=PROVIDER)
    for name, sampler in SAMPLERS.items():
        store.store(group="hydra/sweeper/sampler", name=name, node=sampler, provider=PROVIDER)
    for name, pruner in PRUNERS.items():
        store.store(group="hydra/sweeper/pruner", name=name, node=pruner, provider=PROVIDER)


register_sweeper_configs()
