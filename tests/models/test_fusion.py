"""Fusion options (vit, mean, max): contract, order independence, references, token stride."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import neuropbr.models.fusion.vit as vit_module
from neuropbr.models.contracts import Fusion
from neuropbr.models.fusion.pooling import MaxFusion, MeanFusion
from neuropbr.models.fusion.vit import ViTFusion, sincos_pos_embed_2d

from .helpers import assert_every_param_has_grad, assert_same_grads, projection_loss

IN_CHANNELS = 16
_TINY_VIT = {"dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "dropout": 0.0, "drop_path": 0.0}

#: Every fusion option at test size.
FUSIONS: dict[str, Callable[..., nn.Module]] = {
    "vit": lambda **kw: ViTFusion(IN_CHANNELS, **{**_TINY_VIT, **kw}),
    "vit_plain_tokens": lambda **kw: ViTFusion(
        IN_CHANNELS, **{**_TINY_VIT, "view_embedding": False, "pos_embedding": False, **kw}
    ),
    "vit_token_stride": lambda **kw: ViTFusion(IN_CHANNELS, **{**_TINY_VIT, "token_stride": 2, **kw}),
    "mean": lambda **kw: MeanFusion(IN_CHANNELS),
    "max": lambda **kw: MaxFusion(IN_CHANNELS),
}
VITS = ["vit", "vit_plain_tokens", "vit_token_stride"]
#: Of :func:`_seeded_fusion_outputs`, pinned before the switch to timm's ``Block``.
PINNED_WEIGHTED_SUM = 8.436871840619586
PINNED_GRAD_SQUARE_SUM = 73.71753895323373


@pytest.mark.parametrize("num_views", [1, 3, 5])
@pytest.mark.parametrize("option", list(FUSIONS))
def test_cardinality(option: str, num_views: int) -> None:
    fusion = FUSIONS[option]()
    assert isinstance(fusion, Fusion)
    out = fusion(torch.randn(2, num_views, IN_CHANNELS, 4, 6))
    assert out.shape == (2, fusion.out_channels, 4, 6)


@pytest.mark.parametrize("option", list(FUSIONS))
def test_view_order_does_not_matter(option: str) -> None:
    fusion = FUSIONS[option]().double().eval()
    x = torch.randn(2, 5, IN_CHANNELS, 4, 4, dtype=torch.float64)
    permuted = x[:, torch.tensor([3, 0, 4, 2, 1])]
    with torch.no_grad():
        torch.testing.assert_close(fusion(permuted), fusion(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("option", VITS)
def test_grad_flow(option: str) -> None:
    fusion = FUSIONS[option](dropout=0.1, drop_path=0.1).train()
    x = torch.randn(2, 3, IN_CHANNELS, 4, 4, requires_grad=True)
    projection_loss(fusion(x)).backward()
    assert_every_param_has_grad(fusion)
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("option", ["mean", "max"])
def test_pooling_passes_gradients_to_the_views(option: str) -> None:
    x = torch.randn(2, 3, IN_CHANNELS, 4, 4, requires_grad=True)
    projection_loss(FUSIONS[option]()(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("option", VITS)
def test_grad_checkpointing_gives_the_same_gradients(option: str) -> None:
    # Dropout and drop-path on: checkpointing must replay the same random masks.
    torch.manual_seed(0)
    plain = FUSIONS[option](dropout=0.1, drop_path=0.2).train()
    torch.manual_seed(0)
    checkpointed = FUSIONS[option](dropout=0.1, drop_path=0.2, grad_checkpointing=True).train()
    x = torch.randn(2, 3, IN_CHANNELS, 4, 4)
    for fusion in (plain, checkpointed):
        torch.manual_seed(1)
        projection_loss(fusion(x)).backward()
    assert_same_grads(plain, checkpointed)


@pytest.mark.parametrize("option", list(FUSIONS))
def test_wrong_input_shape_names_expected_and_actual(option: str) -> None:
    fusion = FUSIONS[option]()
    with pytest.raises(
        ValueError, match=r"fusion input: expected \(B, V, C=16, h, w\), got \(2, 3, 8, 4, 4\)"
    ):
        fusion(torch.randn(2, 3, 8, 4, 4))
    with pytest.raises(ValueError, match=r"fusion input: expected \(B, V, C=16, h, w\), got \(6, 16, 4, 4\)"):
        fusion(torch.randn(6, IN_CHANNELS, 4, 4))


def test_pooling_references() -> None:
    x = torch.randn(2, 3, IN_CHANNELS, 4, 4)
    torch.testing.assert_close(MeanFusion(IN_CHANNELS)(x), x.mean(dim=1))
    torch.testing.assert_close(MaxFusion(IN_CHANNELS)(x), x.max(dim=1).values)
    assert MeanFusion(IN_CHANNELS).out_channels == MaxFusion(IN_CHANNELS).out_channels == IN_CHANNELS


def test_plain_tokens_reference() -> None:
    """Without embeddings or pooling, the fusion is: project, attend over the concatenated
    tokens of all views, softmax-weighted mean over views, Linear + LayerNorm."""
    fusion = FUSIONS["vit_plain_tokens"]().double().eval()
    x = torch.randn(2, 3, IN_CHANNELS, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        projected = torch.stack([fusion.proj(x[:, v]) for v in range(3)], dim=1)  # (B, V, D, h, w)
        tokens = projected.permute(0, 1, 3, 4, 2).reshape(2, 3 * 6, 32)  # (B, V*h*w, D)
        for block in fusion.blocks:
            tokens = block(tokens)
        views = tokens.reshape(2, 3, 6, 32)  # (B, V, h*w, D)
        weights = torch.softmax(fusion.view_score(views), dim=1)
        expected = fusion.out_norm(fusion.out_proj((weights * views).sum(dim=1)))  # (B, h*w, D)
        expected = expected.transpose(1, 2).reshape(2, 32, 2, 3)
        torch.testing.assert_close(fusion(x), expected, rtol=0, atol=1e-10)


def test_attention_uses_scaled_dot_product_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(vit_module.F, "scaled_dot_product_attention", spy)
    FUSIONS["vit"]()(torch.randn(2, 3, IN_CHANNELS, 4, 4))
    assert calls == [(2, 2, 3 * 16, 16)] * 2  # (B, heads, V*h*w tokens, head dim) per block


def test_token_stride_is_raised_to_fit_max_tokens() -> None:
    fusion = ViTFusion(IN_CHANNELS, **_TINY_VIT)  # max_tokens 16384 by default
    assert fusion.stride_for(3, 64, 64) == 1  # a 2048 px input through a stride-32 encoder
    assert fusion.stride_for(3, 128, 128) == 2  # the same with stem_stride=1: 49152 -> 12288 tokens
    small = ViTFusion(IN_CHANNELS, **_TINY_VIT, max_tokens=1000)
    assert small.stride_for(3, 64, 64) == 4  # 3 * 16 * 16 = 768 <= 1000 < 3 * 22 * 22
    assert small.stride_for(5000, 2, 2) > 1  # stops at one token per view
    unbounded = ViTFusion(IN_CHANNELS, **_TINY_VIT, token_stride=2, max_tokens=None)
    assert unbounded.stride_for(100, 64, 64) == 2


def test_token_stride_attends_at_low_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    lengths = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        lengths.append(query.shape[2])
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(vit_module.F, "scaled_dot_product_attention", spy)
    fusion = ViTFusion(IN_CHANNELS, **_TINY_VIT, max_tokens=3 * 16)
    out = fusion(torch.randn(1, 3, IN_CHANNELS, 8, 8))
    assert out.shape == (1, 32, 8, 8)
    assert lengths == [3 * 4 * 4] * 2  # stride 2: 8x8 -> 4x4 tokens per view


def test_sincos_position_embedding() -> None:
    pos = sincos_pos_embed_2d(3, 5, 16)
    assert pos.shape == (15, 16)
    assert len({tuple(row.tolist()) for row in pos}) == 15  # every position distinct
    # position (0, 0): sin 0 = 0 and cos 0 = 1 for both axes
    torch.testing.assert_close(pos[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))


def test_vit_option_errors() -> None:
    with pytest.raises(ValueError, match=r"fusion\.dim=30 must be divisible by fusion\.num_heads=4"):
        ViTFusion(IN_CHANNELS, dim=30, num_heads=4)
    with pytest.raises(ValueError, match=r"fusion\.dim=6 must be divisible by 4"):
        ViTFusion(IN_CHANNELS, dim=6, num_heads=2)
    with pytest.raises(ValueError, match=r"fusion\.token_stride=0"):
        ViTFusion(IN_CHANNELS, **_TINY_VIT, token_stride=0)
    with pytest.raises(ValueError, match=r"fusion\.dropout=1\.5"):
        ViTFusion(IN_CHANNELS, **{**_TINY_VIT, "dropout": 1.5})


def test_drop_path_increases_linearly_over_the_blocks() -> None:
    fusion = ViTFusion(IN_CHANNELS, **{**_TINY_VIT, "depth": 3, "drop_path": 0.2})
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in fusion.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def _seeded_fusion_outputs() -> dict[str, torch.Tensor]:
    """A seeded float64 ViT fusion with dropout and drop path: eval output, a train-mode output
    (dropout drawn from a seeded RNG) and the input gradient of a fixed weighted sum."""
    torch.manual_seed(0)
    fusion = ViTFusion(IN_CHANNELS, **{**_TINY_VIT, "dropout": 0.1, "drop_path": 0.1}).double()
    x = torch.randn(2, 3, IN_CHANNELS, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = torch.linspace(-1.0, 1.0, 2 * 32 * 4 * 4, dtype=torch.float64).reshape(2, 32, 4, 4)
    with torch.no_grad():
        evaluated = fusion.eval()(x)
    torch.manual_seed(2)
    x.requires_grad_(True)
    trained = fusion.train()(x)
    (trained * weights).sum().backward()
    return {"eval": evaluated, "train": trained.detach(), "grad": x.grad, "weights": weights}


def test_vit_blocks_reproduce_the_pinned_outputs() -> None:
    """Pinned from the hand-written attention/MLP block the timm ``Block`` replaced (same seed,
    same parameter init order): swapping the implementation changed no number beyond float64
    rounding, in eval, in train mode with dropout/drop path, nor in the backward pass."""
    out = _seeded_fusion_outputs()
    evaluated, trained, grad, weights = out["eval"], out["train"], out["grad"], out["weights"]
    pinned = {
        "eval": (
            1015.3358633795775,
            [-1.2437422215942917, 0.5019768567400587, -1.2660535767570507, 1.1259017534849431],
            [-2.6867999010824684, 0.2849345232014354],
        ),
        "train": (
            1015.324219414975,
            [-1.2461794934082542, 0.5065049186362862, -1.2594363178549253, 1.1208152569223757],
            [-2.6923510133322206, 0.29830951374456294],
        ),
    }
    for name, value in (("eval", evaluated), ("train", trained)):
        square_sum, first, last = pinned[name]
        assert value.square().sum().item() == pytest.approx(square_sum, rel=1e-13)
        torch.testing.assert_close(value[0, :4, 0, 0].tolist(), first, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(value[1, -2:, 3, 2].tolist(), last, rtol=1e-13, atol=1e-13)
    assert (trained * weights).sum().item() == pytest.approx(PINNED_WEIGHTED_SUM, rel=1e-12)
    assert grad.square().sum().item() == pytest.approx(PINNED_GRAD_SQUARE_SUM, rel=1e-12)


def test_vit_block_state_dict_keys_are_timm_vit_keys() -> None:
    """Checkpoints from before the switch to timm's ``Block`` load unchanged."""
    fusion = FUSIONS["vit"]()
    assert list(fusion.blocks[0].state_dict()) == [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias",
    ]  # fmt: skip
