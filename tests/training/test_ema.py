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


def _ema_run(
    steps: range, ema: ExponentialMovingAverage | None = None
) -> tuple[nn.Module, ExponentialMovingAverage]:
    """A float64 model whose weights and BatchNorm statistics change before every update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    ema = ema if ema is not None else ExponentialMovingAverage(model, decay=0.9)
    for step in steps:
        with torch.no_grad():
            gen = torch.Generator().manual_seed(100 + step)
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
            model[1].running_mean.fill_(float(step))
            model[1].num_batches_tracked.fill_(step)
        ema.update(model, step)
    return model, ema


def test_ema_matches_the_warm_up_recurrence() -> None:
    """``ema_t = lerp(ema_{t-1}, w_t, 1 - min(decay, (1 + t) / (10 + t)))`` over 30 updates from
    the initial weights, bitwise; buffers (incl. the integer batch count) copied, not averaged."""
    torch.manual_seed(0)
    start = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    expected = [p.detach().clone() for p in start.parameters()]
    model, ema = _ema_run(range(30))
    for step in range(30):
        gen = torch.Generator().manual_seed(100 + step)
        weight = 1.0 - min(0.9, (1.0 + step) / (10.0 + step))
        expected = [e.lerp(torch.randn(e.shape, generator=gen, dtype=e.dtype), weight) for e in expected]
    for got, want in zip(ema.module.parameters(), expected):
        assert torch.equal(got, want)
    assert torch.equal(ema.module[1].running_mean, torch.full((4,), 29.0, dtype=torch.float64))
    assert int(ema.module[1].num_batches_tracked) == 29
    assert list(ema.state_dict()) == [f"module.{key}" for key in model.state_dict()]  # checkpoint keys


def test_ema_resume_continues_identically() -> None:
    """The decay depends on the trainer's step only: an EMA rebuilt from the saved ``ema.module``
    weights continues bitwise like the uninterrupted one."""
    _, full = _ema_run(range(20))
    model, first = _ema_run(range(8))
    resumed = ExponentialMovingAverage(model, decay=0.9)
    resumed.module.load_state_dict(first.module.state_dict())
    _, resumed = _ema_run(range(8, 20), resumed)
    for got, want in zip(resumed.module.state_dict().values(), full.module.state_dict().values()):
        assert torch.equal(got, want)


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
