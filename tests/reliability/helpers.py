"""Process-level helpers of the reliability tests: training commands, polling, state comparison."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

SMOKE = ("experiment=smoke", "tracking=none")


def env(**extra: str) -> dict[str, str]:
    """The test environment for a child process: offline, unbuffered, no inherited tracking URI."""
    result = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}
    result.pop("MLFLOW_TRACKING_URI", None)
    return result


def train_cmd(run_dir: Path, *overrides: str, smoke: bool = True) -> list[str]:
    """``python -m neuropbr.train`` writing into ``run_dir``."""
    return [
        sys.executable,
        "-m",
        "neuropbr.train",
        *(SMOKE if smoke else ()),
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen | None, what: str, limit_s: float = 300
) -> None:
    """Poll ``condition`` until it holds; fail early when ``proc`` exits first.

    ``limit_s`` only guards against a hang (the test then fails saying what never happened).
    """
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}:\n{output[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit_s} s")
        time.sleep(0.02)


def assert_same_state(got: dict[str, Any], expected: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Every tensor under ``keys`` (nested dicts/lists) is bitwise equal."""

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, torch.Tensor):
            assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
        elif isinstance(a, dict):
            assert set(a) == set(b), f"{where}: keys differ"
            for key in a:
                walk(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), f"{where}: lengths differ"
            for index, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{index}]")
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    for key in keys:
        walk(got[key], expected[key], key)
