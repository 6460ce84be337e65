"""Encoders (timm backbones, U-Net): contract, pretrained weights, freezing, stem stride, checkpointing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import timm
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from neuropbr.models.contracts import Encoder
from neuropbr.models.encoders.timm_encoder import TimmEncoder
from neuropbr.models.encoders.unet import UNetEncoder

from .helpers import TINY_RESNET, assert_every_param_has_grad, assert_same_grads, projection_loss

#: Every encoder option at test size: timm families (5 or 4 levels, plain/deep/patchify stems,
#: NCHW or NHWC features) and the from-scratch U-Nets.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet": lambda **kw: TimmEncoder("resnet18", model_kwargs=TINY_RESNET, **kw),
    "convnext": lambda **kw: TimmEncoder("test_convnext", **kw),
    "efficientnet": lambda **kw: TimmEncoder("test_efficientnet", **kw),
    "mobilenetv3": lambda **kw: TimmEncoder("mobilenetv3_small_050", **kw),
    "mambaout_nhwc": lambda **kw: TimmEncoder("test_mambaout", **kw),  # channels-last features
    "efficientnet_same_pad": lambda **kw: TimmEncoder(
        "test_efficientnet", model_kwargs={"pad_type": "same"}, **kw
    ),
    "unet": lambda **kw: UNetEncoder([8, 16, 24, 32], downsample="maxpool", **kw),
    "unet_stride": lambda **kw: UNetEncoder([8, 16, 24, 32], downsample="stride", **kw),
    "unet_instance": lambda **kw: UNetEncoder([8, 16, 32], norm="instance", **kw),
    "unet_no_norm": lambda **kw: UNetEncoder([8, 16, 32], norm="none", **kw),
}
#: The ones cheap enough for backward passes in every test.
BACKWARD = ["resnet", "convnext", "efficientnet", "unet", "unet_stride", "unet_instance", "unet_no_norm"]


@pytest.mark.parametrize("option", list(ENCODERS))
def test_cardinality(option: str) -> None:
    encoder = ENCODERS[option]()
    assert isinstance(encoder, Encoder)
    features = encoder(torch.rand(2 * 3, 3, 64, 64))
    assert len(features) == len(encoder.out_channels) == len(encoder.reductions)
    for feature, channels, reduction in zip(features, encoder.out_channels, encoder.reductions):
        assert feature.shape == (6, channels, 64 // reduction, 64 // reduction)
    assert encoder.reductions == sorted(encoder.reductions)


def test_levels_are_read_from_the_backbone() -> None:
    resnet, convnext, unet = ENCODERS["resnet"](), ENCODERS["convnext"](), ENCODERS["unet"]()
    assert (resnet.out_channels, resnet.reductions) == ([16, 8, 16, 24, 32], [2, 4, 8, 16, 32])
    assert (convnext.out_channels, convnext.reductions) == ([24, 32, 48, 64], [4, 8, 16, 32])
    assert (unet.out_channels, unet.reductions) == ([8, 16, 24, 32], [1, 2, 4, 8])
    picked = TimmEncoder("resnet18", model_kwargs=TINY_RESNET, out_indices=[1, 2, 4])
    assert (picked.out_channels, picked.reductions) == ([8, 16, 32], [4, 8, 32])


@pytest.mark.parametrize(
    "option", ["resnet", "convnext", "efficientnet", "mobilenetv3", "efficientnet_same_pad"]
)
def test_stem_stride_1_doubles_every_level(option: str) -> None:
    base, full = ENCODERS[option](), ENCODERS[option](stem_stride=1)
    assert full.reductions == [r // 2 for r in base.reductions]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for coarse, fine in zip(base.eval()(x), full.eval()(x)):
            assert fine.shape[-2:] == (2 * coarse.shape[-2], 2 * coarse.shape[-1])


@pytest.mark.parametrize("option", BACKWARD)
def test_grad_flow(option: str) -> None:
    encoder = ENCODERS[option]().train()
    projection_loss(encoder(torch.rand(4, 3, 32, 32))).backward()
    assert_every_param_has_grad(encoder)


@pytest.mark.parametrize("option", ["resnet", "efficientnet", "unet", "unet_stride"])
def test_grad_checkpointing_gives_the_same_gradients(option: str) -> None:
    torch.manual_seed(0)
    plain = ENCODERS[option]().train()
    torch.manual_seed(0)
    checkpointed = ENCODERS[option](grad_checkpointing=True).train()
    x = torch.rand(4, 3, 32, 32)
    for encoder in (plain, checkpointed):
        projection_loss(encoder(x)).backward()
    assert_same_grads(plain, checkpointed)


@pytest.mark.parametrize("option", ["resnet", "unet"])
def test_wrong_input_shape_names_expected_and_actual(option: str) -> None:
    encoder = ENCODERS[option]()
    with pytest.raises(ValueError, match=r"encoder input: expected \(N, 3, H, W\), got \(2, 4, 32, 32\)"):
        encoder(torch.rand(2, 4, 32, 32))
    with pytest.raises(ValueError, match=r"encoder input: expected \(N, 3, H, W\), got \(2, 3, 3, 32, 32\)"):
        encoder(torch.rand(2, 3, 3, 32, 32))


def test_timm_normalises_with_the_backbone_statistics() -> None:
    encoder = ENCODERS["resnet"]().eval()
    mean, std = encoder.backbone.pretrained_cfg["mean"], encoder.backbone.pretrained_cfg["std"]
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx((0.229, 0.224, 0.225))
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        for ours, reference in zip(encoder(x), encoder.backbone(normalised)):
            torch.testing.assert_close(ours, reference)
    assert "mean" not in encoder.state_dict()  # a property of the backbone, not trained state


def test_pretrained_from_a_local_file(tmp_path) -> None:
    source = timm.create_model("resnet18", **TINY_RESNET)
    path = tmp_path / "resnet18_tiny.pth"
    torch.save(source.state_dict(), path)
    encoder = TimmEncoder("resnet18", pretrained=str(path), model_kwargs=TINY_RESNET)
    expected = source.state_dict()
    loaded = encoder.backbone.state_dict()
    assert loaded.keys() <= expected.keys() and len(loaded) > 10
    for key, value in loaded.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_pretrained_missing_file_names_the_option(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=rf"encoder\.pretrained.*{missing.name}"):
        TimmEncoder("resnet18", pretrained=str(missing), model_kwargs=TINY_RESNET)


def test_pretrained_true_offline_fails_fast_with_a_hint() -> None:
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE, "tests must run with HF_HUB_OFFLINE=1"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"encoder\.pretrained=true.*encoder\.pretrained=/path/to/"):
        TimmEncoder("resnet18", pretrained=True, model_kwargs=TINY_RESNET)
    assert time.monotonic() - start < 10


def test_freeze_bn_keeps_running_stats_and_affine_params() -> None:
    encoder = ENCODERS["resnet"](freeze_bn=True).train()
    batch_norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and all(not bn.training for bn in batch_norms)
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in batch_norms]
    projection_loss(encoder(torch.rand(4, 3, 32, 32))).backward()
    for bn, (mean, var) in zip(batch_norms, before):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert bn.weight.grad is None and bn.bias.grad is None
    assert_every_param_has_grad(encoder)  # the convs still train
    encoder.train()  # switching modes again keeps them frozen
    assert all(not bn.training for bn in batch_norms)


@pytest.mark.parametrize(
    ("option", "deepest"), [("resnet", "layer4"), ("convnext", "stages_3"), ("efficientnet", "blocks.")]
)
def test_freeze_backbone_trains_only_the_deepest_stage(option: str, deepest: str) -> None:
    # The guide: "Freeze early ResNet layers (fine-tune only later layers)".
    encoder = ENCODERS[option](freeze_backbone=True).train()
    trainable = [n for n, p in encoder.backbone.named_parameters() if p.requires_grad]
    frozen = [n for n, p in encoder.backbone.named_parameters() if not p.requires_grad]
    assert trainable and frozen and all(n.startswith(deepest) for n in trainable)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    projection_loss(encoder(x)).backward()
    assert x.grad is not None  # gradients still flow through the frozen stages to the input
    assert all(p.grad is None for n, p in encoder.backbone.named_parameters() if n in frozen)
    assert all(p.grad is not None for n, p in encoder.backbone.named_parameters() if n in trainable)


def test_timm_option_errors() -> None:
    with pytest.raises(ValueError, match=r"encoder\.name='resnet_nope'"):
        TimmEncoder("resnet_nope")
    with pytest.raises(ValueError, match=r"encoder\.stem_stride=4; expected 2 .* or 1"):
        TimmEncoder("resnet18", stem_stride=4, model_kwargs=TINY_RESNET)


def test_unet_option_errors() -> None:
    with pytest.raises(ValueError, match=r"encoder\.channels=\[8\]"):
        UNetEncoder([8])
    with pytest.raises(
        ValueError, match=r"encoder\.downsample='avgpool'; choose one of \['maxpool', 'stride'\]"
    ):
        UNetEncoder([8, 16], downsample="avgpool")
    with pytest.raises(ValueError, match=r"encoder\.norm='spectral'; choose one of"):
        UNetEncoder([8, 16], norm="spectral")


def test_unet_downsampling_modes_differ() -> None:
    maxpool, strided = ENCODERS["unet"](), ENCODERS["unet_stride"]()
    assert any(isinstance(m, nn.MaxPool2d) for m in maxpool.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in strided.modules())
    assert any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in strided.modules())


def test_checkpointing_survives_timm_checkpointing_inplace_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """timm < 1.0.31 checkpoints every top-level module of the feature wrapper alone, ResNet's
    in-place stem ReLU included, which fails in backward. With such a timm the encoder makes
    those modules out-of-place, so that per-module recipe runs; with the ReLU in-place it fails,
    as it did at 2048 px on an H200 (timm 1.0.29). Newer timm keeps the in-place ReLU (memory)."""
    from neuropbr.models.encoders import timm_encoder

    def old_timm_collect(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
        features = []
        for i, module in enumerate(modules):
            first_or_last = i in (0, len(modules) - 1)
            x = module(x) if first_or_last else checkpoint(module, x, use_reentrant=False)
            features.append(x)
        return sum(f.float().mean() for f in features)

    monkeypatch.setattr(timm_encoder, "_TIMM_SKIPS_INPLACE_CHECKPOINTS", False)
    encoder = ENCODERS["resnet"](grad_checkpointing=True).train()
    modules = list(encoder.backbone.children())
    assert not any(getattr(m, "inplace", False) for m in modules)
    old_timm_collect(modules, torch.rand(2, 3, 32, 32)).backward()
    assert_every_param_has_grad(encoder)

    modules[2].inplace = True  # the stem's act1, as timm builds it
    with pytest.raises(RuntimeError, match="inplace operation"):
        old_timm_collect(modules, torch.rand(2, 3, 32, 32)).backward()

    monkeypatch.setattr(timm_encoder, "_TIMM_SKIPS_INPLACE_CHECKPOINTS", True)
    newer = ENCODERS["resnet"](grad_checkpointing=True)
    assert newer.backbone.act1.inplace is True
    assert timm_encoder._version_tuple("1.0.31.dev0") == (1, 0, 31) > timm_encoder._version_tuple("1.0.29")


def test_unet_exposure_norm_ignores_the_views_exposure() -> None:
    """One gain per view: a photo twice as bright encodes to the same features; colour is kept."""
    encoder = UNetEncoder(channels=[4, 8], exposure_norm=True).eval()
    views = torch.rand(2, 3, 16, 16) * 0.5
    with torch.no_grad():
        for a, b in zip(encoder(views), encoder(views * 1.7)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        tinted = views * torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1)  # a colour change is seen
        assert not torch.allclose(encoder(views)[0], encoder(tinted)[0], atol=1e-3)
