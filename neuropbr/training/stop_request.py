"""A stop asked for by a signal, honoured at a step boundary and agreed on by every DDP rank.

While ``installed``, SIGINT, SIGTERM and the launcher's pre-emption signal
(:func:`neuropbr.utils.signals.stop_signals`) only record the request; the trainer saves
``latest.pth`` at the next step boundary and stops. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from neuropbr.training.distributed import DistInfo
from neuropbr.utils.signals import stop_signals


class StopRequest:
    """The signal that asked training to stop (``signal``; None: none yet).

    Args:
        dist_info: DDP rank information (ranks agree on the request through a collective).
        device: the training device (nccl reduces on it; other backends on the CPU).
    """

    def __init__(self, dist_info: DistInfo, device: torch.device) -> None:
        self.signal: int | None = None
        self._dist, self._device = dist_info, device

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "none"

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Record stop signals instead of their usual action; the previous handlers come back
        on exit. Only the main thread may install handlers (elsewhere nothing changes)."""
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self._request) for sig in stop_signals()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request(self, signum: int, _frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal = signum

    def agree(self) -> None:
        """Every rank adopts a signal any rank received, so all of them take the same branch."""
        if self._dist.enabled:
            device = self._device if dist.get_backend() == "nccl" else torch.device("cpu")
            flag = torch.tensor([self.signal or 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signal = int(flag.item()) or None

    def due(self, step: int, every: int) -> bool:
        """Whether to stop at this step boundary for a signal.

        One process stops at once. Ranks agree only every ``every`` steps (the logging steps): a
        collective every step would make each step wait for the device.
        """
        if not self._dist.enabled:
            return self.signal is not None
        if step % every:
            return False
        self.agree()
        return self.signal is not None
