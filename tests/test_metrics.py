"""Metrics: hand-computed values, the documented definitions, the validation accumulator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.metrics import ssim as kornia_ssim

from neuropbr.metrics import (
    ANGLE_BIN_DEG,
    EVAL_RENDER_SETUPS,
    PER_SAMPLE_KEYS,
    MetricAccumulator,
    compute_map_metrics,
    evaluation_render_configs,
    mae,
    normal_angular_error_deg,
    psnr,
    render_psnr,
    rmse,
    ssim,
    train_step_metrics,
)

VAL_KEYS = {
    *(
        f"{m}_{k}"
        for m in ("albedo", "roughness", "metallic", "normal")
        for k in ("psnr", "ssim", "mae", "rmse")
    ),
    "normal_angle_mean",
    "normal_angle_median",
    "normal_within_11_25",
    "normal_within_22_5",
    "normal_within_30",
    "overall_psnr",
    "overall_ssim",
    "render_psnr",
}


def random_maps(batch: int = 2, size: int = 8) -> dict[str, torch.Tensor]:
    normal = F.normalize(
        0.5 * torch.randn(batch, 3, size, size) + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), dim=1
    )
    return {
        "albedo": torch.rand(batch, 3, size, size),
        "roughness": torch.rand(batch, 1, size, size),
        "metallic": torch.rand(batch, 1, size, size),
        "normal": normal,
    }


def tilted(degrees: torch.Tensor) -> torch.Tensor:
    """Unit normals tilted from +z towards +x by ``degrees``: (B, 1, H, W) -> (B, 3, H, W)."""
    radians = torch.deg2rad(degrees)
    return torch.cat([radians.sin(), torch.zeros_like(radians), radians.cos()], dim=1)


# --- elementary metrics ---------------------------------------------------------------------------


def test_psnr_of_mse_001_is_20_db():
    target = torch.full((2, 3, 4, 4), 0.5, dtype=torch.float64)
    assert torch.allclose(psnr(target + 0.1, target), torch.full((2,), 20.0, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(
        psnr(2 * (target + 0.1), 2 * target, data_range=2.0), torch.full((2,), 20.0, dtype=torch.float64)
    )
    assert torch.equal(psnr(target, target), torch.full((2,), 100.0, dtype=torch.float64))  # capped, finite


def test_mae_rmse_per_sample():
    target = torch.zeros(2, 1, 1, 2)
    pred = torch.tensor([[0.1, -0.3], [0.2, 0.2]]).view(2, 1, 1, 2)
    assert torch.allclose(mae(pred, target), torch.tensor([0.2, 0.2]))
    assert torch.allclose(rmse(pred, target), torch.tensor([math.sqrt(0.05), 0.2]))


def test_ssim_identical_is_one():
    image = torch.rand(2, 3, 8, 8)
    assert torch.allclose(ssim(image, image), torch.ones(2), atol=1e-5)
    assert (ssim(image, torch.rand(2, 3, 8, 8)) < 0.9).all()


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 90.0),
        ((0.0, 0.0, 1.0), (0.0, 0.0, -1.0), 180.0),
        ((0.0, 0.0, 1.0), (0.0, 0.0, 1.0), 0.0),
        ((0.0, 3.0, 3.0), (0.0, 0.0, 2.0), 45.0),  # lengths do not matter
    ],
)
def test_normal_angular_error(pred, target, expected):
    p = torch.tensor(pred).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    t = torch.tensor(target).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    angles = normal_angular_error_deg(p, t)
    assert angles.shape == (2, 1, 2, 2)
    assert torch.allclose(angles, torch.full_like(angles, expected), atol=1e-5)


def test_small_angles_are_resolved():
    angles = torch.tensor([0.001, 0.01, 0.1]).view(1, 1, 1, 3)
    measured = normal_angular_error_deg(tilted(angles), tilted(torch.zeros_like(angles)))
    assert torch.allclose(measured, angles, rtol=1e-3)


# --- a batch --------------------------------------------------------------------------------------


def test_crafted_normal_statistics():
    # Rows of 8x8 normals tilted by 5, 15, 25, 40 degrees (two rows each) against flat normals.
    row_angles = torch.tensor([5.0, 5.0, 15.0, 15.0, 25.0, 25.0, 40.0, 40.0])
    angles = row_angles.view(1, 1, 8, 1).expand(1, 1, 8, 8)
    target = random_maps(1)
    pred = dict(target, normal=tilted(angles))
    target["normal"] = tilted(torch.zeros_like(angles))
    metrics = compute_map_metrics(pred, target)
    assert metrics["normal_within_11_25"].item() == pytest.approx(25.0)
    assert metrics["normal_within_22_5"].item() == pytest.approx(50.0)
    assert metrics["normal_within_30"].item() == pytest.approx(75.0)
    assert metrics["normal_angle_mean"].item() == pytest.approx(21.25, abs=1e-4)
    assert metrics["normal_angle_median"].item() == pytest.approx(15.0, abs=1e-4)  # lower median
    assert metrics["albedo_psnr"].item() == 100.0 and metrics["albedo_mae"].item() == 0.0


def test_keys_and_identical_maps():
    maps = random_maps()
    metrics = compute_map_metrics(maps, maps)
    assert set(metrics) == VAL_KEYS
    for key in ("albedo_psnr", "normal_psnr", "overall_psnr", "render_psnr"):
        assert metrics[key].item() == 100.0
    assert metrics["overall_ssim"].item() == pytest.approx(1.0, abs=1e-5)
    assert metrics["normal_angle_mean"].item() == pytest.approx(0.0, abs=1e-3)


def test_overall_metrics_are_over_the_8_channel_stack():
    pred, target = random_maps(), random_maps()
    metrics = compute_map_metrics(pred, target)

    def stack(maps):
        return torch.cat(
            [maps["albedo"], maps["roughness"], maps["metallic"], (maps["normal"] + 1) / 2], dim=1
        )

    assert metrics["overall_psnr"].item() == pytest.approx(
        psnr(stack(pred), stack(target)).mean().item(), abs=1e-4
    )
    direct_ssim = kornia_ssim(stack(pred), stack(target), 11).flatten(1).mean(1).mean()
    assert metrics["overall_ssim"].item() == pytest.approx(direct_ssim.item(), abs=1e-5)
    # normals are compared encoded on both sides
    encoded = psnr((pred["normal"] + 1) / 2, (target["normal"] + 1) / 2).mean()
    assert metrics["normal_psnr"].item() == pytest.approx(encoded.item(), abs=1e-4)


def test_render_psnr_uses_fixed_lights():
    pred, target = random_maps(), random_maps()
    first = render_psnr(pred, target)
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(render_psnr(pred, target), first)
    assert (first < 100).all() and torch.isfinite(first).all()
    configs = evaluation_render_configs(3)
    assert configs.light_position.shape == (len(EVAL_RENDER_SETUPS), 3, 3)
    assert torch.equal(configs.light_position[:, 0], torch.tensor([light for light, _ in EVAL_RENDER_SETUPS]))
    rougher = dict(target, roughness=(target["roughness"] + 0.3).clamp(max=1.0))
    assert (render_psnr(rougher, target) < 100).all()  # it sees roughness


def test_train_step_metrics():
    pred, target = random_maps(), random_maps()
    metrics = train_step_metrics(pred, target)
    expected_keys = {
        f"{k}_{m}" for k in ("mae", "rmse") for m in ("albedo", "roughness", "metallic", "normal")
    }
    assert set(metrics) == expected_keys | {"normal_angle_deg"}
    assert metrics["mae_albedo"].item() == pytest.approx(
        (pred["albedo"] - target["albedo"]).abs().mean().item()
    )
    encoded_diff = (pred["normal"] - target["normal"]) / 2
    assert metrics["rmse_normal"].item() == pytest.approx(
        encoded_diff.square().mean().sqrt().item(), rel=1e-5
    )
    angles = normal_angular_error_deg(pred["normal"], target["normal"])
    assert metrics["normal_angle_deg"].item() == pytest.approx(angles.mean().item(), rel=1e-5)


def test_bf16_inputs_give_finite_float32_metrics():
    pred, target = random_maps(1), random_maps(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = compute_map_metrics({k: v.bfloat16() for k, v in pred.items()}, target)
    for value in metrics.values():
        assert value.dtype == torch.float32 and torch.isfinite(value)


# --- a validation epoch ---------------------------------------------------------------------------


def test_accumulator_matches_the_concatenated_set():
    batches = [(random_maps(1), random_maps(1)), (random_maps(3), random_maps(3))]  # unequal sizes
    accumulator = MetricAccumulator()
    for pred, target in batches:
        accumulator.update(pred, target)
    result = accumulator.compute()
    assert set(result) == VAL_KEYS and all(isinstance(v, float) for v in result.values())

    pred_all = {name: torch.cat([p[name] for p, _ in batches]) for name in batches[0][0]}
    target_all = {name: torch.cat([t[name] for _, t in batches]) for name in batches[0][0]}
    reference = compute_map_metrics(pred_all, target_all)  # every sample weighted once
    for key in PER_SAMPLE_KEYS:
        assert result[key] == pytest.approx(reference[key].item(), rel=1e-5, abs=1e-5), key
    exact_median = (
        normal_angular_error_deg(pred_all["normal"], target_all["normal"]).flatten().median().item()
    )
    assert abs(result["normal_angle_median"] - exact_median) <= ANGLE_BIN_DEG / 2 + 1e-4


def test_accumulator_median_precision_over_many_values():
    accumulator = MetricAccumulator()
    all_angles = []
    for _ in range(3):
        angles = 60.0 * torch.rand(2, 1, 8, 8)
        all_angles.append(angles)
        target = random_maps(2)
        pred = dict(target, normal=tilted(angles))
        accumulator.update(pred, dict(target, normal=tilted(torch.zeros_like(angles))))
    exact = torch.cat(all_angles).flatten().median().item()
    assert abs(accumulator.compute()["normal_angle_median"] - exact) <= ANGLE_BIN_DEG / 2 + 1e-4


def test_accumulator_state_merge_and_reset():
    batches = [(random_maps(2), random_maps(2)) for _ in range(2)]
    whole, left, right = MetricAccumulator(), MetricAccumulator(), MetricAccumulator()
    for pred, target in batches:
        whole.update(pred, target)
    left.update(*batches[0])
    right.update(*batches[1])
    left.merge(right.state())  # what summing the state across ranks does
    assert left.compute() == pytest.approx(whole.compute())
    left.reset()
    with pytest.raises(RuntimeError, match="nothing accumulated"):
        left.compute()
