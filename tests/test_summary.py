"""Model summary: parameter counts, FLOP and activation references, the CLI."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torch import nn

from neuropbr.build import build_discriminator, build_generator
from neuropbr.models.fusion.vit import Attention
from neuropbr.summary import count_params, estimate_cost, format_summary, main, summarize


def test_count_params() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    assert count_params(model) == 3 * 4 + 4 + 4 * 2
    model[0].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 8
    tied = nn.Sequential(model[2], model[2])  # shared parameters count once
    assert count_params(tied) == 8


def test_cost_of_a_linear_layer_reference() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        x = torch.empty(4, 16)
    cost = estimate_cost(model, lambda: model(x))
    assert cost.flops == 2 * 4 * 16 * 32
    # saved for backward: the Linear's input (its weight is excluded) and the ReLU's output
    assert cost.activation_bytes == 4 * 16 * 4 + 4 * 32 * 4


def test_attention_memory_is_linear_in_the_tokens() -> None:
    """Estimated as the flash/memory-efficient kernels need it, not the math kernel's T x T matrix."""
    with torch.device("meta"):
        attention = Attention(dim=64, num_heads=4)
    costs = {}
    for tokens in (1024, 4096):
        x = torch.empty(1, tokens, 64, device="meta")
        costs[tokens] = estimate_cost(attention, lambda x=x: attention(x))
    assert costs[4096].activation_bytes / costs[1024].activation_bytes == pytest.approx(4, rel=0.05)
    assert costs[4096].flops / costs[1024].flops > 4  # the attention matrix products are quadratic


def test_summarize_the_tiny_preset(tiny_cfg: DictConfig) -> None:
    summary = summarize(tiny_cfg, [32, 64], title="smoke")
    generator, discriminator = build_generator(tiny_cfg), build_discriminator(tiny_cfg)
    assert summary.params["generator"] == count_params(generator)
    assert summary.params["discriminator"] == count_params(discriminator)
    assert sum(summary.params[k] for k in ("encoder", "fusion", "decoder")) == summary.params["generator"]
    small, large = summary.rows
    assert (small.resolution, large.resolution) == (32, 64)
    # a convolutional network: 4x the pixels -> about 4x the work and the activations
    assert 3.5 < large.generator.flops / small.generator.flops < 4.5
    assert 3.5 < large.generator.activation_bytes / small.generator.activation_bytes < 4.5
    assert large.discriminator is not None and large.discriminator.flops > 0
    table = format_summary(summary)
    assert "generator" in table and "discriminator" in table and "\n      64        64" in table


def test_summarize_without_discriminator(compose_cfg: Callable[..., DictConfig]) -> None:
    summary = summarize(compose_cfg("experiment=smoke", "discriminator=none"))
    assert "discriminator" not in summary.params
    assert summary.rows[0].resolution == 64 and summary.rows[0].discriminator is None


def test_resolution_must_fit_the_encoder(tiny_cfg: DictConfig) -> None:
    with pytest.raises(ValueError, match=r"summary\.resolutions=\[36\]: \[36\] not divisible by 8"):
        summarize(tiny_cfg, [36])


def test_cli_prints_the_table_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["summary", "experiment=smoke", "encoder=tiny_resnet", "summary.resolutions=[32,64]"]
    monkeypatch.setattr(sys, "argv", argv)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # Hydra configures logging; restore it after
    GlobalHydra.instance().clear()
    try:
        main()
    finally:
        GlobalHydra.instance().clear()
        root.handlers[:] = handlers
        root.setLevel(level)
    out = capsys.readouterr().out
    assert "experiment=smoke encoder=tiny_resnet fusion=tiny" in out
    assert "\n      32        32" in out and "\n      64        64" in out
    assert list(tmp_path.iterdir()) == []  # no outputs/, .hydra/ or log file
