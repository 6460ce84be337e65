"""The Hydra ``Sweeper`` class that ``hydra/sweeper=optuna`` instantiates.

Kept thin so that Hydra's start-up scan of ``hydra_plugins`` stays cheap: optuna (and mlflow,
when a sweep tracks) are imported by ``_impl`` only when a sweep is actually configured.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Hydra multirun sweeper on Optuna >= 4 ask/tell; see ``OptunaSweeperConfig`` for the keys."""

    def __init__(
        self,
        sampler: Any,
        pruner: Any,
        direction: Any,
        storage: str,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: dict[str, Any] | None,
        custom_search_space: str | None,
        heartbeat_interval: int | None = 60,
        grace_period: int | None = None,
        final_wait_s: int = 3600,
    ) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(
            sampler=sampler,
            pruner=pruner,
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs,
            max_failure_rate=max_failure_rate,
            params=params,
            custom_search_space=custom_search_space,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            final_wait_s=final_wait_s,
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
