"""Optuna pruning from inside a training job: the sweeper's public interface to the trainer.

:func:`neuropbr.build.build_pruning_hook` builds an :class:`OptunaPruningHook` for a sweep trial
(how it works: ``_pruning.py``). The implementation lives in a private module because Hydra's
plugin scan re-executes every public module under ``hydra_plugins`` the first time it runs in a
process, which would replace a class defined here with a new one of the same name (and break
``isinstance`` for anyone who imported it before the scan); re-exporting keeps one class.
"""

from __future__ import annotations

from ._pruning import OptunaPruningHook

__all__ = ["OptunaPruningHook"]
