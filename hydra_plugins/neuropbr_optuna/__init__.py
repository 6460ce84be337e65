"""NeuroPBR's Optuna sweeper for Hydra multirun (``hydra/sweeper=optuna``), on optuna >= 4.

``python -m neuropbr.train -m hparams_search=loss_weights`` selects it through the preset in
``conf/hparams_search/``. Hydra finds this package by scanning the ``hydra_plugins`` namespace;
:func:`register_plugin` registers it explicitly for setups the scan cannot see (editable installs
map packages through an import hook that ``pkgutil.walk_packages`` cannot list).
"""

from __future__ import annotations


def register_plugin() -> None:
    """Register the sweeper class with Hydra and its configs in the ConfigStore (idempotent)."""
    from hydra.core.plugins import Plugins

    from .config import register_sweeper_configs
    from .optuna_sweeper import OptunaSweeper

    register_sweeper_configs()
    Plugins.instance().register(OptunaSweeper)
