"""The trainer end to end on tiny models: objective, checkpoints, exact resume, overfitting, MLflow."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict
from trainer_setup import make_trainer

from neuropbr.build import build_datamodule, build_discriminator, build_generator
from neuropbr.train import train
from neuropbr.training.checkpoint import load_checkpoint
from neuropbr.training.trainer import LoopSettings


def _run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def test_smoke_run_returns_finite_objective_and_writes_the_guides_checkpoints(tiny_cfg: DictConfig) -> None:
    value = train(tiny_cfg)
    assert torch.isfinite(torch.tensor(value))
    files = sorted(p.name for p in (_run_dir(tiny_cfg) / "checkpoints").iterdir())
    assert files == ["best_model.pth", "checkpoint_epoch_0001.pth", "checkpoint_epoch_0002.pth", "latest.pth"]
    state = load_checkpoint(_run_dir(tiny_cfg) / "checkpoints" / "latest.pth")
    assert state["epoch"] == 2 and state["batch_in_epoch"] == 0
    assert state["config"]["encoder"]["_target_"].endswith("UNetEncoder")
    images = sorted(p.name for p in (_run_dir(tiny_cfg) / "images").iterdir())
    assert "epoch_0002_comparison.png" in images and "epoch_0002_error_heatmaps.png" in images


def test_optimized_metric_typo_fails_loudly(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("experiment=smoke", "tracking=none", "trainer.max_epochs=1", "optimized_metric=val/los")
    with pytest.raises(ValueError, match=r"optimized_metric='val/los': expected one of \['val/loss', "):
        train(cfg)


#: Everything a resumed run must reproduce (all but the config/paths and the MLflow run id).
_RESUMED_STATE = ("generator", "discriminator", "ema", "g_optimizer", "d_optimizer", "g_scheduler",
                  "d_scheduler", "g_scaler", "d_scaler", "rng", "step", "epoch", "batch_in_epoch", "best_metric")  # fmt: skip


def _weights_and_optimizer(path: Path) -> dict:
    state = load_checkpoint(path)
    return {k: state[k] for k in _RESUMED_STATE}


def _assert_bitwise_equal(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"differs at {where}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"keys differ at {where}"
        for key in a:
            _assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"length differs at {where}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{a!r} != {b!r} at {where}"


@pytest.mark.parametrize(
    "extra", [[], ["loss=rendering", "trainer.ema_decay=0.9"]], ids=["default", "render+ema"]
)
def test_two_epochs_equal_one_epoch_plus_resume(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, extra: list[str]
) -> None:
    base = ["experiment=smoke", "tracking=none", "data.num_samples=6", *extra]
    straight = compose_cfg(*base, "trainer.max_epochs=2")
    with open_dict(straight):
        straight.paths.checkpoint_dir = str(tmp_path / "straight")
    train(straight)

    first = compose_cfg(*base, "trainer.max_epochs=1")
    with open_dict(first):
        first.paths.checkpoint_dir = str(tmp_path / "split")
    train(first)
    resumed = compose_cfg(
        *base, "trainer.max_epochs=2", f"trainer.resume={tmp_path / 'split' / 'latest.pth'}"
    )
    with open_dict(resumed):
        resumed.paths.checkpoint_dir = str(tmp_path / "split")
    train(resumed)

    _assert_bitwise_equal(
        _weights_and_optimizer(tmp_path / "straight" / "latest.pth"),
        _weights_and_optimizer(tmp_path / "split" / "latest.pth"),
    )


def test_mid_epoch_stop_resumes_exactly(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    base = ["experiment=smoke", "tracking=none", "data.num_samples=10", "trainer.max_epochs=1"]
    straight = compose_cfg(*base)
    with open_dict(straight):
        straight.paths.checkpoint_dir = str(tmp_path / "straight")
    train(straight)
    partial = compose_cfg(*base, "trainer.max_steps=2")  # stops inside the epoch (4+ steps long)
    with open_dict(partial):
        partial.paths.checkpoint_dir = str(tmp_path / "split")
    train(partial)
    assert load_checkpoint(tmp_path / "split" / "latest.pth")["batch_in_epoch"] == 2
    resumed = compose_cfg(*base, f"trainer.resume={tmp_path / 'split' / 'latest.pth'}")
    with open_dict(resumed):
        resumed.paths.checkpoint_dir = str(tmp_path / "split")
    train(resumed)
    straight_state = _weights_and_optimizer(tmp_path / "straight" / "latest.pth")
    split_state = _weights_and_optimizer(tmp_path / "split" / "latest.pth")
    # The stop validated at step 2 as well, so its best value may be from there: the one
    # legitimate difference.
    straight_state.pop("best_metric"), split_state.pop("best_metric")
    _assert_bitwise_equal(straight_state, split_state)


def test_overfitting_one_batch_halves_the_l1_loss(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        "experiment=smoke",
        "tracking=none",
        "discriminator=none",
        "optimizer.g_lr=3e-3",
        "trainer.grad_clip_norm=null",
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    generator = build_generator(cfg)
    optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.optimizer.g_lr)
    settings = LoopSettings(max_epochs=1, grad_clip_norm=None, progress_bar=False)
    trainer = make_trainer(cfg, datamodule, generator, optimizer, settings)
    batch = next(iter(datamodule.train_dataloader()))
    first = trainer.train_step(batch, gan_on=False)["loss_l1_total"].item()
    for _ in range(50):
        last = trainer.train_step(batch, gan_on=False)["loss_l1_total"].item()
    assert last < 0.5 * first, (first, last)


def test_gan_step_updates_both_networks(tiny_cfg: DictConfig) -> None:
    datamodule = build_datamodule(tiny_cfg)
    datamodule.setup()
    generator, discriminator = build_generator(tiny_cfg), build_discriminator(tiny_cfg)
    assert discriminator is not None
    g_before = [p.detach().clone() for p in generator.parameters()]
    d_before = [p.detach().clone() for p in discriminator.parameters()]
    g_opt, d_opt = (
        torch.optim.Adam(generator.parameters(), 1e-3),
        torch.optim.Adam(discriminator.parameters(), 1e-3),
    )
    settings = LoopSettings(max_epochs=1, progress_bar=False)
    trainer = make_trainer(
        tiny_cfg, datamodule, generator, g_opt, settings, discriminator=discriminator, d_optimizer=d_opt
    )
    logs = trainer.train_step(next(iter(datamodule.train_dataloader())), gan_on=True)
    assert {
        "g_loss",
        "d_loss",
        "loss_gan_g",
        "loss_l1_total",
        "l1_albedo",
        "albedo_mae",
        "normal_angle_mean",
    } <= set(logs)
    assert all(not torch.equal(a, b) for a, b in zip(g_before, generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, discriminator.parameters()))
    assert all(p.requires_grad for p in discriminator.parameters())  # restored after the G step
    # Gradients are freed right after each optimizer step, not kept into the next step's peak.
    assert all(p.grad is None for p in [*generator.parameters(), *discriminator.parameters()])


def test_super_resolving_decoder_trains_against_larger_maps(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("experiment=smoke", "tracking=none", "decoder.sr_scale=2", "data.resolution=32",
                      "data.num_samples=4", "trainer.max_epochs=1")  # fmt: skip
    assert torch.isfinite(torch.tensor(train(cfg)))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_amp_step_on_cpu_is_finite(compose_cfg: Callable[..., DictConfig], precision: str) -> None:
    cfg = compose_cfg(
        "experiment=smoke",
        "tracking=none",
        "data.resolution=32",
        "data.num_samples=4",
        "trainer.max_epochs=1",
        f"trainer.precision={precision}",
    )
    assert torch.isfinite(torch.tensor(train(cfg)))


def test_mlflow_run_has_params_metrics_and_images(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        "experiment=smoke",
        "tracking=mlflow",
        f"tracking.uri={uri}",
        "tracking.experiment_name=test",
        "tracking.log_checkpoints=true",
    )
    train(cfg)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["seed"] == "42" and run.data.params["data.resolution"] == "64"
    assert not [key for key in run.data.params if "_target_" in key or "_partial_" in key]
    assert {"mlflow.source.git.commit", "mlflow.user", "git_dirty", "hostname"} <= set(run.data.tags)
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40  # the tests run from the source checkout
    for key in (
        "train/g_loss",
        "train/d_loss",
        "train/g_lr",
        "train/loss_l1_total",
        "train/loss_ssim",
        "train/loss_normal",
        "train/loss_gan_g",
        "train/l1_albedo",
        "train/albedo_mae",
        "train/albedo_rmse",
        "train/normal_angle_mean",
        "val/loss",
        "val/overall_psnr",
        "val/overall_ssim",
        "val/albedo_psnr",
        "val/normal_angle_mean",
        "val/normal_angle_median",
    ):
        assert key in run.data.metrics, key
    images = {a.path for a in client.list_artifacts(run.info.run_id, "images")}
    assert any(path.startswith("images/val~input_views+step+") for path in images), images
    # tracking.log_checkpoints=true: the full training state too.
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == [
        "checkpoints/best_model.pth",
        "checkpoints/latest.pth",
    ]


@pytest.mark.parametrize(("per_tensor", "expected"), [(False, {"fused": True}), (True, {"foreach": False})])
def test_optimizer_fused_by_default_and_plain_loop_for_like_for_like_benchmarks(
    compose_cfg: Callable[..., DictConfig], per_tensor: bool, expected: dict[str, bool]
) -> None:
    """``benchmark.per_tensor_optimizer=true`` is the per-tensor loop of the original stack
    (benchmarks' like-for-like), not torch's default, which is foreach on CUDA."""
    from neuropbr.build import build_optimizer

    cfg = compose_cfg("experiment=smoke", "tracking=none", f"benchmark.per_tensor_optimizer={per_tensor}")
    assert cfg.benchmark.per_tensor_optimizer is per_tensor
    params = [torch.nn.Parameter(torch.zeros(3))]
    optimizer = build_optimizer(cfg.optimizer.generator, params, 1e-3, torch.device("cpu"), per_tensor)
    assert {key: optimizer.defaults[key] for key in expected} == expected


def test_training_without_a_validation_set(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("experiment=smoke", "tracking=none", "data.val_ratio=0", "trainer.max_epochs=1")
    assert math.isnan(train(cfg))
    checkpoints = sorted(p.name for p in (_run_dir(cfg) / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint_epoch_0001.pth", "latest.pth"]  # no best model without validation
    trial = compose_cfg("experiment=smoke", "tracking=none", "data.val_ratio=0", "sweep.trial_number=0")
    with pytest.raises(ValueError, match=r"no validation set \(data\.val_ratio=0\.0\)"):
        train(trial)


def test_resuming_with_another_precision_starts_a_fresh_loss_scale(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    first = compose_cfg("experiment=smoke", "tracking=none", "data.resolution=32", "data.num_samples=4",
                        "trainer.max_epochs=1", "trainer.precision=fp32")  # fmt: skip
    train(first)
    latest = _run_dir(first) / "checkpoints" / "latest.pth"
    resumed = compose_cfg("experiment=smoke", "tracking=none", "data.resolution=32", "data.num_samples=4",
                          "trainer.max_epochs=2", "trainer.precision=fp16", f"trainer.resume={latest}")  # fmt: skip
    assert torch.isfinite(torch.tensor(train(resumed)))
    assert load_checkpoint(latest)["g_scaler"]  # fp16 run saved its (now enabled) scaler


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_on_cpu_stores_nhwc_and_trains_the_same(
    compose_cfg: Callable[..., DictConfig], channels_last: bool
) -> None:
    """``trainer.channels_last`` (default true) applies on the CPU too: the convolutions' weights
    are NHWC, and a training step computes the same losses as in NCHW (to float rounding)."""
    from neuropbr.train import build_trainer
    from neuropbr.training.distributed import DistInfo
    from neuropbr.training.tracking import NullTracker
    from neuropbr.utils.seeding import seed_everything

    def first_step(memory_format: bool) -> tuple[torch.nn.Module, dict[str, float]]:
        cfg = compose_cfg("experiment=smoke", "tracking=none", "trainer.gan_start_epoch=0",
                          f"trainer.channels_last={memory_format}")  # fmt: skip
        seed_everything(cfg.seed)
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        trainer = build_trainer(cfg, datamodule, torch.device("cpu"), DistInfo(), NullTracker())
        batch = next(iter(trainer.train_loader))
        logs = trainer.train_step(batch, gan_on=True, with_metrics=True)
        return trainer.generator, {k: float(v) for k, v in logs.items()}

    generator, logs = first_step(channels_last)
    convs = [
        m.weight for m in generator.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    ]
    assert convs
    nhwc = [w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs]
    assert all(nhwc) if channels_last else not any(nhwc)
    _, reference = first_step(not channels_last)
    assert logs.keys() == reference.keys()
    for key in ("g_loss", "d_loss", "loss_l1_total"):
        assert logs[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key
