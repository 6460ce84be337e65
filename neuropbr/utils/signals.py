"""Stopping on signals: which signals stop a run, and keeping DataLoader workers out of it.

Ctrl-C in a terminal, ``timeout``, ``kill -TERM -- -PGID`` and SLURM deliver a signal to every
process of the group, DataLoader workers included. torch's workers die of a SIGTERM that does not
come from their parent, a SIGINT ends their loop and SIGUSR2 kills them, and the main process then
fails inside a step with ``DataLoader worker ... is killed by signal``. The main process owns
stopping (it saves ``latest.pth`` at the next step boundary and exits with ``128 + signal``), so
workers ignore these signals; the main process still stops them as usual.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

#: submitit (``hydra/launcher=slurm``) reads the pre-emption/time-out signal's name from here.
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


def preemption_signal() -> signal.Signals:
    """The signal SLURM sends ahead of a pre-emption or the time limit under submitit.

    submitit asks SLURM for ``--signal=<sig>@<signal_delay_s>`` with ``$SUBMITIT_PREEMPT_SIGNAL``
    (``USR2`` by default) and requeues the job from its handler of it.
    """
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2").upper().removeprefix("SIG")
    return getattr(signal.Signals, f"SIG{name}", signal.SIGUSR2)


def stop_signals() -> tuple[signal.Signals, ...]:
    """Signals after which training saves ``latest.pth`` at the next step boundary and stops."""
    return tuple(dict.fromkeys((signal.SIGINT, signal.SIGTERM, preemption_signal())))


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader: a worker ignores :func:`stop_signals`.

    SIGTERM from the worker's parent (the DataLoader shutting down a worker that did not stop in
    time) still ends it at once, as torch's own handler does; from anyone else it is ignored.
    """
    for sig in stop_signals():
        if sig != signal.SIGTERM:
            signal.signal(sig, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):  # no sender information (macOS): ignore it too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return
    # Block SIGTERM in this thread (so in every thread started from now on) and take it in a
    # thread of its own, which sees who sent it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    parent = os.getppid()

    def wait_for_sigterm() -> None:
        while True:
            info: Any = signal.sigwaitinfo({signal.SIGTERM})
            if info.si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait_for_sigterm, name=f"sigterm-worker-{worker_id}", daemon=True).start()


def hand_over_preemption(signum: int) -> None:
    """After the run saved and stopped on the pre-emption signal, run the handler that was
    installed before the trainer's (submitit's, which requeues the job and exits).

    Does nothing for other signals or when no Python handler was installed before.
    """
    if signum != preemption_signal():
        return
    handler = signal.getsignal(signum)
    if callable(handler) and handler is not signal.default_int_handler:
        log.info("handing %s over to the launcher's handler %r", signal.Signals(signum).name, handler)
        handler(signum, None)
