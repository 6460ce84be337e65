"""Developer sessions: ``nox -s tests slow lint typecheck``.

Sessions run in the environment where NeuroPBR is installed (``pip install -e ".[dev]"``), so
the 5 GB of torch are installed once, not once per session. ``nox --force-venv-backend venv``
gives each session a fresh virtualenv instead (slower; the install happens inside).
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests", "lint"]

# Tests never touch the network (pretrained weights, hub look-ups).
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "MLFLOW_TRACKING_URI": ""}


def _install(session: nox.Session) -> None:
    if session.venv_backend != "none":
        session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """The fast suite: tiny models at 32-64 px on CPU."""
    _install(session)
    session.run("pytest", "-m", "not slow", *session.posargs, env=ENV)


@nox.session
def slow(session: nox.Session) -> None:
    """End-to-end runs: real training jobs, torchrun, MLflow server, Optuna sweeps, PostgreSQL."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    if session.venv_backend != "none":
        session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the package and the Optuna sweeper plugin.

    ``hydra_plugins`` is a namespace package (no ``__init__.py``, so Hydra's plugin scan finds it),
    so the plugin is named as a package (``-p``); a path would map it to two module names.
    """
    _install(session)
    session.run(
        "mypy", "-p", "neuropbr", "-p", "hydra_plugins.neuropbr_optuna", env={"MYPYPATH": os.getcwd()}
    )
