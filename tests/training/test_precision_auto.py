"""``trainer.precision=auto`` by capability: bf16 on a CPU only with native bf16 (and a probe that
measures it faster), fp32 otherwise, CUDA as before; the choice and its reason are logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from neuropbr.training import precision as precision_module
from neuropbr.training.precision import auto_precision, cpu_bf16_choice, cpu_flags, resolve_precision

CPU = torch.device("cpu")


def _never() -> float:
    raise AssertionError("the probe must not run without a native bf16 flag")


def test_amx_picks_bf16() -> None:
    bf16, reason = cpu_bf16_choice({"sse4_2", "avx2", "amx_bf16", "avx512_bf16"}, "AVX512")
    assert bf16 and "amx_bf16" in reason
    bf16, reason = cpu_bf16_choice({"avx2", "amx_bf16"}, "AVX512", probe=lambda: 2.0)
    assert bf16 and "2.00x" in reason


def test_avx512_bf16_alone_keeps_fp32() -> None:
    """A Zen 4 class CPU: its bf16 training step measured slower than fp32 (1.14x)."""
    bf16, reason = cpu_bf16_choice({"avx2", "avx512f", "avx512_bf16"}, "AVX512", probe=_never)
    assert not bf16 and "no fast bf16" in reason


def test_without_native_bf16_fp32_and_no_probe() -> None:
    bf16, reason = cpu_bf16_choice({"sse4_2", "avx2", "avx512f"}, "AVX512", probe=_never)
    assert not bf16 and "no fast bf16" in reason and "AVX512" in reason


def test_a_flag_with_a_slow_probe_keeps_fp32() -> None:
    bf16, reason = cpu_bf16_choice({"amx_bf16"}, "AVX512", probe=lambda: 0.8)
    assert not bf16 and "0.80x" in reason


def test_cpu_flags_reads_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_on_cpu_follows_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert auto_precision(CPU, probe=lambda: 1.9)[0] == "bf16"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))
    assert auto_precision(CPU, probe=_never)[0] == "fp32"


@pytest.mark.parametrize(("supported", "name"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_unchanged(monkeypatch: pytest.MonkeyPatch, supported: bool, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert auto_precision(torch.device("cuda", 0), probe=_never)[0] == name


def test_the_choice_and_its_reason_are_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))
    with caplog.at_level(logging.INFO, logger="neuropbr.training.precision"):
        assert resolve_precision("auto", CPU).dtype is None
    assert "precision: fp32 on cpu (trainer.precision=auto: no fast bf16 on this CPU" in caplog.text
