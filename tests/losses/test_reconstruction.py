"""Per-map weighted L1, SSIM and normal angular terms (reference values, invariants, gradients)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from neuropbr.losses.reconstruction import (
    NormalAngularLoss,
    SquaredErrorLoss,
    SSIMLoss,
    WeightedL1Loss,
    map_to_unit_range,
    normal_angular_loss,
    ssim_loss,
    weighted_l1_loss,
)


def constant_maps(
    albedo: float, roughness: float, metallic: float, normal: tuple[float, float, float], size: int = 8
):
    return {
        "albedo": torch.full((1, 3, size, size), albedo, dtype=torch.float64),
        "roughness": torch.full((1, 1, size, size), roughness, dtype=torch.float64),
        "metallic": torch.full((1, 1, size, size), metallic, dtype=torch.float64),
        "normal": torch.tensor(normal, dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, size, size),
    }


# --- weighted L1 ----------------------------------------------------------------------------------


def test_l1_zero_for_identical_positive_otherwise(make_maps):
    pred, target = make_maps(), make_maps()
    total, per_map = WeightedL1Loss()(pred, pred)
    assert total == 0 and all(value == 0 for value in per_map.values())
    total, per_map = WeightedL1Loss()(pred, target)
    assert total > 0 and all(value > 0 for value in per_map.values())


def test_l1_reference_values_normals_in_unit_range():
    pred = constant_maps(0.5, 0.3, 1.0, (0.0, 0.0, 1.0))
    target = constant_maps(0.4, 0.5, 1.0, (1.0, 0.0, 0.0))
    total, per_map = weighted_l1_loss(pred, target, {"albedo": 2.0, "normal": 3.0})
    # Encoded normals (0.5, 0.5, 1) vs (1, 0.5, 0.5): mean |diff| = (0.5 + 0 + 0.5) / 3, half the
    # [-1, 1] value: both sides are compared in the same [0, 1] range.
    expected = {"albedo": 0.1, "roughness": 0.2, "metallic": 0.0, "normal": 1.0 / 3.0}
    for name, value in expected.items():
        assert per_map[name].item() == pytest.approx(value, abs=1e-12)
    assert total.item() == pytest.approx(2.0 * 0.1 + 0.2 + 0.0 + 3.0 / 3.0, abs=1e-12)


# --- squared error -------------------------------------------------------------------------------


def test_squared_error_reference_values_normals_in_unit_range():
    pred = constant_maps(0.5, 0.3, 1.0, (0.0, 0.0, 1.0))
    target = constant_maps(0.4, 0.5, 0.0, (1.0, 0.0, 0.0))
    total, per_map = SquaredErrorLoss(["albedo", "roughness", "metallic", "normal"])(pred, target)
    # Encoded normals (0.5, 0.5, 1) vs (1, 0.5, 0.5): squared differences 0.25, 0, 0.25.
    expected = {"albedo": 0.01, "roughness": 0.04, "metallic": 1.0, "normal": 0.5 / 3.0}
    for name, value in expected.items():
        assert per_map[name].item() == pytest.approx(value, abs=1e-12)
    assert total.item() == pytest.approx(sum(expected.values()), abs=1e-12)
    total, per_map = SquaredErrorLoss()(pred, target)  # default: roughness and metallic only
    assert sorted(per_map) == ["metallic", "roughness"] and total.item() == pytest.approx(1.04, abs=1e-12)


def test_squared_error_hedges_where_l1_commits():
    """The best constant guess for a map that is metal on 30 % of its texels: the mean (0.3)
    under squared error, the median (0: dielectric) under L1. The mean scores the higher PSNR."""
    target = constant_maps(0.5, 0.5, 0.0, (0.0, 0.0, 1.0), size=10)
    target["metallic"] = (torch.arange(100) < 30).double().view(1, 1, 10, 10)
    only_metallic = {"albedo": 0.0, "roughness": 0.0, "metallic": 1.0, "normal": 0.0}
    guesses = [g / 100 for g in range(101)]

    def best_guess(loss) -> float:
        values = [float(loss(constant_maps(0.5, 0.5, g, (0.0, 0.0, 1.0), size=10))) for g in guesses]
        return guesses[values.index(min(values))]

    assert best_guess(lambda pred: SquaredErrorLoss(["metallic"])(pred, target)[0]) == pytest.approx(0.3)
    assert best_guess(lambda pred: weighted_l1_loss(pred, target, only_metallic)[0]) == 0.0


def test_map_to_unit_range_encodes_only_normals():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    assert torch.equal(map_to_unit_range("normal", x).flatten(), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(map_to_unit_range("albedo", x), x)


def test_l1_gradcheck_float64(make_maps):
    pred, target = make_maps(1, dtype=torch.float64), make_maps(1, dtype=torch.float64)
    names = list(pred)

    def fn(*tensors):
        return weighted_l1_loss(dict(zip(names, tensors)), target, {"albedo": 1.5, "normal": 2.0})[0]

    inputs = tuple(pred[name].clone().requires_grad_() for name in names)
    assert gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("map_weights", "match"),
    [
        ({"albdo": 1.0}, r"loss.map_weights: unknown map\(s\) \['albdo'\]; valid maps"),
        ({"normal": -1.0}, "loss.map_weights.normal must be >= 0"),
    ],
)
def test_l1_bad_map_weights(map_weights, match):
    with pytest.raises(ValueError, match=match):
        WeightedL1Loss(map_weights)


def test_missing_map_and_shape_mismatch_are_named(make_maps):
    pred, target = make_maps(), make_maps()
    with pytest.raises(ValueError, match="pred has no 'metallic' map"):
        WeightedL1Loss()({k: v for k, v in pred.items() if k != "metallic"}, target)
    target["albedo"] = target["albedo"][..., :4]
    with pytest.raises(
        ValueError, match=r"albedo: pred has shape \(2, 3, 8, 8\) but target has \(2, 3, 8, 4\)"
    ):
        WeightedL1Loss()(pred, target)


# --- SSIM ------------------------------------------------------------------------------------------


def test_ssim_zero_for_identical_positive_otherwise(make_maps):
    pred, target = make_maps(size=16), make_maps(size=16)
    loss = SSIMLoss(maps=("albedo", "roughness", "normal"))
    assert 0 <= loss(pred, pred).item() < 1e-4
    assert loss(pred, target).item() > 0.1


def test_ssim_loss_is_one_minus_mean_ssim():
    # A constant image against the same constant plus 0.5: structure terms are 1, luminance
    # (2 * 0.25 * 0.75 + c1) / (0.25^2 + 0.75^2 + c1) with c1 = 0.01^2.
    c1 = 1e-4
    expected_ssim = (2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1)
    low, high = (torch.full((1, 1, 8, 8), v, dtype=torch.float64) for v in (0.25, 0.75))  # exact variances
    # abs: kornia adds 1e-12 to the denominator (~2e-9 here)
    assert ssim_loss(low, high, window_size=5).item() == pytest.approx(1.0 - expected_ssim, abs=1e-8)


def test_ssim_gradcheck_float64():
    # one channel: float64 grouped convolutions with several channels are ~20x slower on CPU
    pred = torch.rand(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert gradcheck(lambda x: ssim_loss(x, target, window_size=11), (pred,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"maps": ("albedo", "height")}, r"loss.ssim_maps: unknown map\(s\) \['height'\]"),
        ({"maps": ()}, "loss.ssim_maps is empty"),
        ({"window_size": 4}, "loss.ssim_window must be an odd integer >= 3, got 4"),
    ],
)
def test_ssim_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSIMLoss(**kwargs)


# --- normal angular ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ((0.0, 0.0, 1.0), 0.0),
        ((1.0, 0.0, 0.0), 1.0),
        ((0.0, 0.0, -1.0), 2.0),
        ((0.0, 1.0, 1.0), 1.0 - 0.5**0.5),
    ],
)
def test_normal_angular_reference_values(target, expected):
    pred = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    # Target need not be unit length: the cosine normalises.
    target_map = torch.tensor(target).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert normal_angular_loss(pred, target_map).item() == pytest.approx(expected, abs=1e-6)


def test_normal_module_zero_for_identical_positive_otherwise(make_maps):
    pred, target = make_maps(), make_maps()
    assert 0 <= NormalAngularLoss()(pred, pred).item() < 1e-6
    assert NormalAngularLoss()(pred, target).item() > 0


def test_normal_gradcheck_float64(make_maps):
    pred = make_maps(1, dtype=torch.float64)["normal"].requires_grad_()
    target = make_maps(1, dtype=torch.float64)["normal"]
    assert gradcheck(lambda n: normal_angular_loss(n, target), (pred,), eps=1e-6, atol=1e-5)


# --- precision ------------------------------------------------------------------------------------


def test_terms_float32_and_finite_under_bf16_autocast(make_maps):
    pred, target = make_maps(), make_maps()
    pred_bf16 = {name: value.bfloat16() for name, value in pred.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = [
            WeightedL1Loss()(pred_bf16, target)[0],
            SSIMLoss(("albedo", "normal"))(pred_bf16, target),
            NormalAngularLoss()(pred_bf16, target),
        ]
    for value in values:
        assert value.dtype == torch.float32 and torch.isfinite(value)
