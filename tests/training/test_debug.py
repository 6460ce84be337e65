"""The debug= group (fdr, overfit, limit, profiler) and the batch limits behind it."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from neuropbr.data.sampling import EpochSampler
from neuropbr.train import train
from neuropbr.training.batch_limits import LimitedSampler, check_limit, limited_batches
from neuropbr.training.checkpoint import load_checkpoint
from neuropbr.training.trainer import LoopSettings, Trainer

SMOKE = ("experiment=smoke", "tracking=none")


def test_an_unknown_debug_option_fails_at_compose_naming_the_group(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    with pytest.raises(
        Exception, match=r"(?s)Could not find 'debug/nonsense'.*fdr.*limit.*overfit.*profiler"
    ):
        compose_cfg("debug=nonsense")


def test_debug_options_set_their_keys_over_a_preset(compose_cfg: Callable[..., DictConfig]) -> None:
    assert compose_cfg().trainer.limit_train_batches is None  # default: no debug option
    fdr = compose_cfg("experiment=quick_test", "debug=fdr")
    trainer = fdr.trainer
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.limit_val_batches) == (1, 1, 1)
    assert fdr.trainer.fast_dev_run and fdr.task_name == "debug" and fdr.data.num_workers == 0
    assert compose_cfg("debug=overfit").trainer.overfit_batches == 2
    assert compose_cfg("debug=limit").trainer.limit_train_batches == 0.1
    assert compose_cfg("debug=profiler").trainer.profiler.enabled


@pytest.mark.parametrize(
    ("limit", "full", "expected"),
    [(None, 7, 7), (1.0, 7, 7), (0.5, 7, 3), (0.01, 7, 1), (3, 7, 3), (9, 7, 7)],
)
def test_limited_batches(limit: float | int | None, full: int, expected: int) -> None:
    assert limited_batches(limit, full) == expected


@pytest.mark.parametrize("value", [0, -2, 0.0, 1.5, True])
def test_bad_limits_name_the_key(value: object) -> None:
    with pytest.raises(
        ValueError, match=rf"trainer\.limit_val_batches={value!r}: expected null \(every batch\)"
    ):
        check_limit("limit_val_batches", value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.limit_train_batches=0"], r"trainer\.limit_train_batches=0: expected null"),
        (["trainer.overfit_batches=-1"], r"trainer\.overfit_batches=-1: expected >= 0"),
        (
            ["trainer.overfit_batches=2", "trainer.limit_train_batches=0.5"],
            r"trainer\.overfit_batches=2 and trainer\.limit_train_batches=0\.5",
        ),
        (["trainer.profiler.active=0"], r"trainer\.profiler\.active=0: expected an integer >= 1"),
    ],
)
def test_bad_debug_values_fail_at_start_up(
    compose_cfg: Callable[..., DictConfig], overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(compose_cfg(*SMOKE, *overrides))


def test_limited_sampler_cuts_the_epoch_and_resumes_inside_it() -> None:
    inner = EpochSampler(10, seed=3)
    sampler = LimitedSampler(inner, max_samples=4)
    sampler.set_epoch(1)
    full_order = list(EpochSampler(10, seed=3).__iter__())  # epoch 0
    epoch1 = list(sampler)
    assert len(epoch1) == len(sampler) == sampler.shard_size == 4 and epoch1 != full_order[:4]
    sampler.set_epoch(1, start=2)  # resumed after 2 samples: the same last 2
    assert list(sampler) == epoch1[2:] and len(sampler) == 2
    pinned = LimitedSampler(EpochSampler(10, seed=3), max_samples=4, fixed_epoch=0)
    seen = []
    for epoch in range(3):
        pinned.set_epoch(epoch)
        seen.append(list(pinned))
    assert seen[0] == seen[1] == seen[2] == full_order[:4]  # same indices and augmentation seeds


def test_fast_dev_run_trains_one_batch_and_uploads_no_weights(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        "experiment=smoke",
        "debug=fdr",
        f"tracking.uri={uri}",
        "tracking.log_checkpoints=true",  # a dev run uploads none anyway
        "data.num_samples=12",
    )
    train(cfg)
    state = load_checkpoint(Path(cfg.paths.checkpoint_dir) / "latest.pth")
    assert (state["epoch"], state["step"]) == (1, 1)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("neuropbr").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["task"] == "debug"
    assert "val/loss" in run.data.metrics and "train/d_loss" in run.data.metrics  # GAN from step 1
    assert client.list_artifacts(run.info.run_id, "checkpoints") == []
    assert not client.search_logged_models(experiment_ids=[run.info.experiment_id])


def test_overfit_batches_repeats_the_same_batches_and_the_loss_falls(
    compose_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], float]] = []
    step = Trainer.train_step

    def recording(self: Trainer, batch: dict, *args: object, **kwargs: object) -> dict:
        logs = step(self, batch, *args, **kwargs)
        seen.append((list(batch["sample"]), logs["loss_l1_total"].item()))
        return logs

    monkeypatch.setattr(Trainer, "train_step", recording)
    cfg = compose_cfg(
        *SMOKE,
        "debug=overfit",
        "trainer.overfit_batches=1",
        "trainer.max_epochs=20",
        "discriminator=none",
        "optimizer.g_lr=3e-3",
        "trainer.grad_clip_norm=null",
        "scheduler=none",
        "data.num_samples=12",
    )
    train(cfg)
    losses = [loss for _, loss in seen]
    assert len(seen) == 20  # one batch per epoch
    assert all(samples == seen[0][0] for samples, _ in seen)
    # The same batch seen again and again: the loss falls at every step.
    assert all(b < a for a, b in itertools.pairwise(losses)) and losses[-1] < 0.8 * losses[0], losses


def test_a_limited_run_resumes_exactly(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    base = [*SMOKE, "data.num_samples=14", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1"]

    def run(name: str, *extra: str) -> dict:
        cfg = compose_cfg(*base, *extra)
        with open_dict(cfg):
            cfg.paths.checkpoint_dir = str(tmp_path / name)
        train(cfg)
        return load_checkpoint(tmp_path / name / "latest.pth")

    straight = run("straight", "trainer.max_epochs=2")
    assert (straight["step"], straight["epoch"]) == (6, 2)  # 3 of the 6 batches per epoch
    assert run("split", "trainer.max_epochs=2", "trainer.max_steps=4")["batch_in_epoch"] == 1
    resumed = run("split", "trainer.max_epochs=2", f"trainer.resume={tmp_path / 'split' / 'latest.pth'}")
    for key in ("generator", "discriminator", "g_optimizer", "rng"):
        assert torch.equal(
            torch.cat([t.flatten().double() for t in _tensors(straight[key])]),
            torch.cat([t.flatten().double() for t in _tensors(resumed[key])]),
        ), key
    assert resumed["step"] == 6


def _tensors(tree: object) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


def test_profiler_writes_a_chrome_trace_and_uploads_it(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        "experiment=smoke",
        "debug=profiler",
        f"tracking.uri={uri}",
        "tracking.log_model=false",
        "data.num_samples=12",
        "trainer.limit_train_batches=3",
        "trainer.profiler.wait=0",
        "trainer.profiler.warmup=1",
        "trainer.profiler.active=2",
    )
    with caplog.at_level("INFO", logger="neuropbr.training.profiling"):
        train(cfg)
    folder = Path(cfg.paths.output_dir) / "profiler"
    trace = json.loads((folder / "trace.json").read_text())
    steps = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#1", "ProfilerStep#2"}  # batch 0 was the warm-up
    assert "aten::convolution_backward" in (folder / "key_averages.txt").read_text()
    assert "profiler: 2 batch(es) recorded" in caplog.text and "Self CPU" in caplog.text
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("neuropbr").experiment_id])
    uploaded = {a.path for a in client.list_artifacts(run.info.run_id, "profiler")}
    assert uploaded == {"profiler/trace.json", "profiler/key_averages.txt"}


def test_loop_settings_accept_limits_as_fraction_or_count() -> None:
    settings = LoopSettings(limit_train_batches=0.25, limit_val_batches=2, overfit_batches=0)
    assert (settings.limit_train_batches, settings.limit_val_batches) == (0.25, 2)
