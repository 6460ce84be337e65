"""StopRequest: stop signals are recorded while installed, the previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from neuropbr.training.distributed import DistInfo
from neuropbr.training.stop_request import StopRequest


def test_a_signal_is_recorded_while_installed_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest(DistInfo(), torch.device("cpu"))
    with stop.installed():
        assert not stop.due(step=1, every=10)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM and stop.name == "SIGTERM"
        assert stop.due(step=1, every=10)  # one process stops at the next step boundary
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_ctrl_c_stops_at_once() -> None:
    stop = StopRequest(DistInfo(), torch.device("cpu"))
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
