"""Metrics: hand-computed values, the documented definitions, the validation accumulator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.metrics import psnr as kornia_psnr
from kornia.metrics import ssim as kornia_ssim

from neuropbr.metrics import (
    ANGLE_BIN_DEG,
    BASELINE_KEYS,
    EVAL_RENDER_SETUPS,
    METRIC_KEYS,
    BaselineMaps,
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

VAL_KEYS = set(METRIC_KEYS)


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


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_psnr_is_kornias_per_image_psnr_capped_at_100_db(data_range: float) -> None:
    """Why ours stays: kornia pools one MSE over the batch and gives inf for identical images;
    per image and below the cap the two agree."""
    gen = torch.Generator().manual_seed(0)
    target = data_range * torch.rand(4, 3, 16, 16, generator=gen)
    pred = (target + 0.05 * data_range * torch.randn(4, 3, 16, 16, generator=gen)).clamp(0, data_range)
    pred[3] = target[3]
    per_image = torch.stack([kornia_psnr(p, t, data_range) for p, t in zip(pred, target)])
    assert math.isinf(per_image[3])
    torch.testing.assert_close(psnr(pred, target, data_range), per_image.clamp(max=100.0), rtol=1e-6, atol=0)


def test_ssim_is_kornias_mean_per_sample() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(3, 3, 16, 16, generator=gen)
    pred = (target + 0.1 * torch.randn(3, 3, 16, 16, generator=gen)).clamp(0, 1)
    expected = kornia_ssim(pred, target, 11, max_val=1.0).flatten(1).mean(dim=1)
    assert torch.equal(ssim(pred, target), expected)


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

    # PSNR of the set's MSE (every sample has as many pixels), per-sample PSNRs averaged apart
    set_mse = (stack(pred) - stack(target)).square().mean().item()
    assert metrics["overall_psnr"].item() == pytest.approx(10 * math.log10(1 / set_mse), abs=1e-4)
    assert metrics["overall_psnr_per_sample"].item() == pytest.approx(
        psnr(stack(pred), stack(target)).mean().item(), abs=1e-4
    )
    direct_ssim = kornia_ssim(stack(pred), stack(target), 11).flatten(1).mean(1).mean()
    assert metrics["overall_ssim"].item() == pytest.approx(direct_ssim.item(), abs=1e-5)
    # normals are compared encoded on both sides
    encoded_mse = ((pred["normal"] - target["normal"]) / 2).square().mean().item()
    assert metrics["normal_psnr"].item() == pytest.approx(10 * math.log10(1 / encoded_mse), abs=1e-4)


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
        f"{m}_{k}" for k in ("mae", "rmse") for m in ("albedo", "roughness", "metallic", "normal")
    }
    assert set(metrics) == expected_keys | {"normal_angle_mean"}
    # One vocabulary: every training key is the validation key of the same quantity.
    assert set(metrics) <= VAL_KEYS
    assert metrics["albedo_mae"].item() == pytest.approx(
        (pred["albedo"] - target["albedo"]).abs().mean().item()
    )
    encoded_diff = (pred["normal"] - target["normal"]) / 2
    assert metrics["normal_rmse"].item() == pytest.approx(
        encoded_diff.square().mean().sqrt().item(), rel=1e-5
    )
    angles = normal_angular_error_deg(pred["normal"], target["normal"])
    assert metrics["normal_angle_mean"].item() == pytest.approx(angles.mean().item(), rel=1e-5)


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
    for key in METRIC_KEYS:
        if key != "normal_angle_median":  # the accumulator's comes from a histogram (below)
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


# --- dataset-level PSNR and baselines, against hand computations ----------------------------------


def two_samples_of_different_error() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Sample 0 is off by 0.1 everywhere (MSE 1e-2, 20 dB), sample 1 by 0.01 (MSE 1e-4, 40 dB)."""
    target = {
        "albedo": torch.full((2, 3, 8, 8), 0.5),
        "roughness": torch.full((2, 1, 8, 8), 0.5),
        "metallic": torch.full((2, 1, 8, 8), 0.5),
        "normal": tilted(torch.zeros(2, 1, 8, 8)),
    }
    offset = torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    pred = {name: target[name] + offset for name in ("albedo", "roughness", "metallic")}
    pred["normal"] = target["normal"]
    return pred, target


def test_psnr_is_of_the_set_mean_squared_error():
    pred, target = two_samples_of_different_error()
    metrics = compute_map_metrics(pred, target)
    pooled = 10 * math.log10(1 / ((1e-2 + 1e-4) / 2))  # 22.967 dB, what papers report
    for name in ("albedo", "roughness", "metallic"):
        assert metrics[f"{name}_psnr"].item() == pytest.approx(pooled, abs=1e-3)
        assert metrics[f"{name}_psnr_per_sample"].item() == pytest.approx(30.0, abs=1e-3)  # (20 + 40) / 2
        assert metrics[f"{name}_rmse"].item() == pytest.approx(math.sqrt((1e-2 + 1e-4) / 2), rel=1e-4)
        assert metrics[f"{name}_mae"].item() == pytest.approx((0.1 + 0.01) / 2, rel=1e-4)
    accumulator = MetricAccumulator()  # two batches of one sample: the same set-level value
    for i in range(2):
        accumulator.update(
            {k: v[i : i + 1] for k, v in pred.items()}, {k: v[i : i + 1] for k, v in target.items()}
        )
    assert accumulator.compute()["albedo_psnr"] == pytest.approx(pooled, abs=1e-3)


def test_baselines_and_skill_match_hand_computation():
    pred, target = two_samples_of_different_error()
    # Target normals tilted by 10 and 30 degrees: the flat normal is off by exactly that much.
    target["normal"] = tilted(torch.tensor([10.0, 30.0]).view(2, 1, 1, 1).expand(2, 1, 8, 8))
    pred["normal"] = target["normal"]
    baseline = BaselineMaps(albedo=(0.3, 0.3, 0.3), roughness=0.7, metallic=0.0)
    # Views: sample 0 a uniform grey 0.2, sample 1 0.8; the view-mean baseline rescales each to
    # the constant albedo's luminance (0.3): its albedo guess is 0.3 everywhere, off by 0.2. The
    # photo-mean baseline takes the views as they are: 0.2 and 0.8 against 0.5, off by 0.3.
    views = torch.cat([torch.full((1, 3, 3, 8, 8), 0.2), torch.full((1, 3, 3, 8, 8), 0.8)])
    metrics = compute_map_metrics(pred, target, baseline, views)
    assert set(metrics) == set(METRIC_KEYS) | set(BASELINE_KEYS)

    def db(mse_value: float) -> float:
        return 10 * math.log10(1 / mse_value)

    assert metrics["baseline_constant_albedo_psnr"].item() == pytest.approx(db(0.2**2), abs=1e-3)
    assert metrics["baseline_constant_roughness_psnr"].item() == pytest.approx(db(0.2**2), abs=1e-3)
    assert metrics["baseline_constant_metallic_psnr"].item() == pytest.approx(db(0.5**2), abs=1e-3)
    assert metrics["baseline_view_mean_albedo_psnr"].item() == pytest.approx(db(0.2**2), abs=1e-3)
    assert metrics["baseline_photo_mean_albedo_psnr"].item() == pytest.approx(db(0.3**2), abs=1e-3)
    assert metrics["baseline_flat_normal_angle_mean"].item() == pytest.approx(20.0, abs=1e-3)
    # Flat vs tilted, encoded (n + 1) / 2: per-sample MSE = ((sin t)^2 + (1 - cos t)^2) / 12.
    flat_mse = [
        (math.sin(math.radians(t)) ** 2 + (1 - math.cos(math.radians(t))) ** 2) / 12 for t in (10, 30)
    ]
    assert metrics["baseline_flat_normal_psnr"].item() == pytest.approx(db(sum(flat_mse) / 2), abs=1e-3)
    pooled = db((1e-2 + 1e-4) / 2)
    assert metrics["albedo_skill_db"].item() == pytest.approx(pooled - db(0.04), abs=1e-3)
    assert metrics["metallic_skill_db"].item() == pytest.approx(pooled - db(0.25), abs=1e-3)
    assert metrics["albedo_skill_db_vs_view_mean"].item() == pytest.approx(pooled - db(0.04), abs=1e-3)
    assert metrics["albedo_skill_db_vs_photo_mean"].item() == pytest.approx(pooled - db(0.09), abs=1e-3)
    assert metrics["normal_angle_ratio"].item() == pytest.approx(0.0, abs=1e-4)  # perfect normals
    skills = [metrics[f"{m}_skill_db"].item() for m in ("albedo", "roughness", "metallic", "normal")]
    assert metrics["skill_db"].item() == pytest.approx(sum(skills) / 4, abs=1e-4)


def test_a_trivial_prediction_has_no_skill():
    _, target = two_samples_of_different_error()
    target["normal"] = tilted(torch.full((2, 1, 8, 8), 12.0))
    baseline = BaselineMaps(albedo=(0.4, 0.45, 0.5), roughness=0.6, metallic=0.1)
    views = torch.rand(2, 3, 3, 8, 8)
    metrics = compute_map_metrics(baseline.predict(target), target, baseline, views)
    for name in ("albedo", "roughness", "metallic", "normal"):
        assert metrics[f"{name}_skill_db"].item() == pytest.approx(0.0, abs=1e-4)
    assert metrics["normal_angle_ratio"].item() == pytest.approx(1.0, abs=1e-4)


def test_baseline_maps_average_the_training_maps_and_round_trip():
    maps = [
        {
            "albedo": torch.full((3, 4, 4), 0.2),
            "roughness": torch.full((1, 4, 4), 0.4),
            "metallic": torch.zeros(1, 4, 4),
        },
        {
            "albedo": torch.full((3, 4, 4), 0.6),
            "roughness": torch.full((1, 4, 4), 0.8),
            "metallic": torch.ones(1, 4, 4),
        },
    ]
    baseline = BaselineMaps.from_maps(maps)
    assert baseline.albedo == pytest.approx((0.4, 0.4, 0.4)) and baseline.roughness == pytest.approx(0.6)
    assert baseline.metallic == pytest.approx(0.5)
    assert BaselineMaps.from_dict(baseline.to_dict()) == baseline
    with pytest.raises(ValueError, match="3 values"):
        BaselineMaps.from_dict({"albedo": [0.1], "roughness": 0.5, "metallic": 0.0})
