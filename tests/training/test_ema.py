"""EMA of the generator and the precision policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuropbr.training.ema import ExponentialMovingAverage
from neuropbr.training.precision import resolve_device, resolve_precision


def test_ema_follows_the_closed_form() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model, step=10_000)  # past the warm-up: the decay itself
    assert torch.allclose(ema.module[0].weight, start + 0.1)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))  # buffers copied
    assert not any(p.requires_grad for p in ema.parameters())


def test_ema_warms_up_from_the_live_weights() -> None:
    ema = ExponentialMovingAverage(nn.Linear(2, 2), decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(100_000) == 0.999


def test_ema_decay_range() -> None:
    with pytest.raises(ValueError, match=r"trainer\.ema_decay=1\.0"):
        ExponentialMovingAverage(nn.Linear(1, 1), 1.0)


def test_precision_policy_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr("neuropbr.training.precision.cpu_flags", lambda: frozenset())
    assert resolve_precision("auto", cpu).dtype is None  # fp32 without native bf16
    bf16 = resolve_precision("bf16", cpu)
    assert bf16.dtype is torch.bfloat16 and not bf16.uses_grad_scaler
    with bf16.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype is torch.bfloat16
    fp16 = resolve_precision("fp16", cpu)
    assert fp16.uses_grad_scaler and fp16.grad_scaler().is_enabled()
    with pytest.raises(ValueError, match=r"trainer\.precision='fp8'"):
        resolve_precision("fp8", cpu)


def test_device_policy() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(RuntimeError, match=r"trainer\.device=cuda"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match=r"trainer\.device='tpu'"):
        resolve_device("tpu")
