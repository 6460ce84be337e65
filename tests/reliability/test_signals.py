"""Signals to the whole process group stop a run cleanly, with DataLoader workers running.

``timeout``, Ctrl-C in a terminal (``kill -INT -- -PGID``) and SLURM's pre-emption notice reach
every process of the group, workers included. Each run here is stopped that way after its first
epoch (``num_workers=2``, persistent workers), must exit with ``128 + signal`` after saving
``latest.pth``, and its resumed run must end bitwise where an uninterrupted run ends.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
from pathlib import Path

import pytest

from neuropbr.training.checkpoint import load_checkpoint
from neuropbr.utils.signals import ignore_stop_signals_in_worker, preemption_signal, stop_signals

from .helpers import assert_same_state, env, train_cmd, wait_for

RUN = ("data.num_workers=2", "data.num_samples=16", "trainer.max_epochs=5", "trainer.save_every_n_epochs=0")
STATE = ("generator", "discriminator", "g_optimizer", "d_optimizer", "epoch", "step", "batch_in_epoch")


def _worker(ready: multiprocessing.connection.Connection) -> None:
    ignore_stop_signals_in_worker(0)
    ready.send("ready")
    while True:  # answer pings until stopped
        ready.send(ready.recv())


def test_worker_ignores_stop_signals_but_not_its_parents_sigterm(tmp_path: Path) -> None:
    parent_end, child_end = multiprocessing.Pipe()
    worker = multiprocessing.get_context("fork").Process(target=_worker, args=(child_end,), daemon=True)
    worker.start()
    child_end.close()  # a dead worker then reads as EOF here, not as a hang
    assert parent_end.poll(120) and parent_end.recv() == "ready"
    for sig in stop_signals():  # sent by another process, as a process-group signal is
        subprocess.run(
            ["kill", f"-{signal.Signals(sig).name.removeprefix('SIG')}", str(worker.pid)], check=True
        )
    parent_end.send("ping")
    assert parent_end.poll(120), "the worker stopped answering"
    assert parent_end.recv() == "ping" and worker.is_alive()
    worker.terminate()  # SIGTERM from the parent: what a DataLoader shutting down a worker sends
    worker.join(timeout=60)
    assert worker.exitcode == 0


def test_preemption_signal_is_submitits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert preemption_signal() == signal.SIGUSR2
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert preemption_signal() == signal.SIGUSR1 and signal.SIGUSR1 in stop_signals()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run's final state."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = subprocess.run(train_cmd(run_dir, *RUN), env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_checkpoint(run_dir / "checkpoints" / "latest.pth")


def _interrupt_and_resume(tmp_path: Path, how: str, reference: dict) -> str:
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pth"
    cmd = train_cmd(run_dir, *RUN)
    if how == "timeout":
        # timeout(1) puts itself and the command in a process group of their own and, when the
        # time is up (its SIGALRM), signals the whole group; --preserve-status passes on the
        # command's own exit status.
        cmd = ["timeout", "--preserve-status", "-s", "TERM", "1h", *cmd]
    proc = subprocess.Popen(
        cmd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=how != "timeout",
    )
    try:
        wait_for(latest.exists, proc, "the first epoch's latest.pth")
        first = load_checkpoint(latest)
        if how == "timeout":
            os.kill(proc.pid, signal.SIGALRM)  # timeout's own timer expiring
            expected = signal.SIGTERM
        else:
            expected = signal.SIGINT if how == "interrupt" else preemption_signal()
            os.killpg(proc.pid, expected)  # kill -INT -- -PGID
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + expected, output[-3000:]
    assert "DataLoader worker" not in output, output[-3000:]
    assert f"{signal.Signals(expected).name}: saving {latest}" in output
    interrupted = load_checkpoint(latest)
    assert interrupted["step"] > first["step"], "nothing was saved after the signal"
    resumed = subprocess.run(
        train_cmd(run_dir, *RUN, f"trainer.resume={latest}"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_state(load_checkpoint(latest), reference, STATE)
    return output


@pytest.mark.slow
def test_timeout_sigterm_to_the_group_saves_and_resumes_exactly(tmp_path: Path, reference: dict) -> None:
    _interrupt_and_resume(tmp_path, "timeout", reference)


@pytest.mark.slow
def test_sigint_to_the_process_group_saves_and_resumes_exactly(tmp_path: Path, reference: dict) -> None:
    _interrupt_and_resume(tmp_path, "interrupt", reference)


@pytest.mark.slow
def test_slurm_preemption_signal_to_the_group_saves_and_resumes_exactly(
    tmp_path: Path, reference: dict
) -> None:
    """submitit has SLURM send SIGUSR2 (``$SUBMITIT_PREEMPT_SIGNAL``) before pre-emption or the time limit."""
    _interrupt_and_resume(tmp_path, "preempt", reference)
