"""trainer.accumulate_grad_batches: grouping, the mean gradient, AMP, step counting, exact resume."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, open_dict
from reliability.helpers import assert_same_state
from trainer_setup import make_trainer

from neuropbr.build import build_datamodule, build_generator
from neuropbr.train import train
from neuropbr.training.accumulation import group_of
from neuropbr.training.checkpoint import load_checkpoint
from neuropbr.training.trainer import LoopSettings, Trainer

SMOKE = ("experiment=smoke", "tracking=none")
#: What a resumed run must reproduce bitwise.
STATE = ("generator", "discriminator", "g_optimizer", "d_optimizer", "g_scheduler", "d_scheduler", "rng",
         "step", "epoch", "batch_in_epoch")  # fmt: skip


def test_groups_cover_the_epoch_and_the_last_one_may_be_shorter() -> None:
    groups = [group_of(b, 5, 2) for b in range(5)]
    assert groups == [(2, False), (2, True), (2, False), (2, True), (1, True)]
    assert [group_of(b, 3, 1) for b in range(3)] == [(1, True)] * 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.accumulate_grad_batches=0"],
            r"trainer\.accumulate_grad_batches=0: expected an integer >= 1",
        ),
        (["trainer.accumulate_grad_batches=-3"], r"trainer\.accumulate_grad_batches=-3: expected"),
        (
            ["trainer.accumulate_grad_batches=2", "trainer.d_steps_per_g_step=2"],
            r"trainer\.accumulate_grad_batches=2 and trainer\.d_steps_per_g_step=2",
        ),
    ],
)
def test_bad_values_fail_at_start_up_naming_the_key(
    compose_cfg: Callable[..., DictConfig], overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(compose_cfg(*SMOKE, *overrides))


def test_a_non_integer_fails_at_compose(compose_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("trainer.accumulate_grad_batches=2.5")
    assert "trainer.accumulate_grad_batches" in str(info.value) + str(info.value.__cause__)


def _trainer(cfg: DictConfig, accumulate: int) -> Trainer:
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    generator = build_generator(cfg)
    optimizer = torch.optim.SGD(generator.parameters(), lr=0.5)
    settings = LoopSettings(grad_clip_norm=None, progress_bar=False, accumulate_grad_batches=accumulate)
    return make_trainer(cfg, datamodule, generator, optimizer, settings)


def test_two_accumulated_halves_step_like_the_whole_batch(compose_cfg: Callable[..., DictConfig]) -> None:
    # No batch statistics anywhere (norm none, mean fusion, no GAN), so a batch of 4 is exactly
    # the mean of its two halves.
    cfg = compose_cfg(*SMOKE, "discriminator=none", "fusion=mean", "encoder.norm=none", "decoder.norm=none",
                      "data.batch_size=4", "data.num_samples=8")  # fmt: skip
    whole, halves = _trainer(cfg, 1), _trainer(cfg, 2)
    batch = next(iter(whole.train_loader))
    half = [{"views": batch["views"][i : i + 2], "maps": {k: v[i : i + 2] for k, v in batch["maps"].items()}}
            for i in (0, 2)]  # fmt: skip
    before = [p.detach().clone() for p in halves.generator.parameters()]
    whole.train_step(batch, gan_on=False, with_metrics=False)
    halves.train_step(half[0], gan_on=False, with_metrics=False, group_size=2, last=False)
    assert all(torch.equal(a, b) for a, b in zip(before, halves.generator.parameters()))  # no step yet
    assert all(p.grad is not None for p in halves.generator.parameters() if p.requires_grad)
    halves.train_step(half[1], gan_on=False, with_metrics=False, group_size=2, last=True)
    for a, b in zip(whole.generator.parameters(), halves.generator.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(before, halves.generator.parameters()))
    assert all(p.grad is None for p in halves.generator.parameters())


def test_steps_count_optimizer_steps(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    # 11 training samples, batch 2: 6 batches per epoch -> groups of 4 and 2: 2 steps per epoch.
    # fp16 with a GradScaler and clipping: unscale_ runs once per optimizer step (twice would raise).
    cfg = compose_cfg(*SMOKE, "data.num_samples=12", "trainer.accumulate_grad_batches=4",
                      "trainer.precision=fp16", "trainer.max_epochs=2", "data.resolution=32")  # fmt: skip
    assert torch.isfinite(torch.tensor(train(cfg)))
    state = load_checkpoint(Path(cfg.paths.checkpoint_dir) / "latest.pth")
    assert (state["epoch"], state["step"], state["batch_in_epoch"]) == (2, 4, 0)
    assert state["g_scheduler"]["steps"] == 4 and state["g_scaler"]["_growth_tracker"] >= 0
    budget = compose_cfg(*SMOKE, "data.num_samples=12", "trainer.accumulate_grad_batches=4",
                         "trainer.max_steps=1", "data.resolution=32")  # fmt: skip
    with open_dict(budget):
        budget.paths.checkpoint_dir = str(tmp_path / "budget")
    train(budget)
    state = load_checkpoint(tmp_path / "budget" / "latest.pth")
    assert (state["step"], state["batch_in_epoch"]) == (1, 4)  # one step = 4 batches


def test_a_stop_signal_mid_accumulation_saves_at_the_boundary_and_resumes_exactly(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 11 training samples, batch 2, k=2: groups (0,1) (2,3) (4,5) per epoch, 2 epochs.
    base = [*SMOKE, "data.num_samples=12", "data.resolution=32", "trainer.accumulate_grad_batches=2",
            "trainer.max_epochs=2", "trainer.ema_decay=0.9"]  # fmt: skip

    def config(name: str, *extra: str) -> DictConfig:
        cfg = compose_cfg(*base, *extra)
        with open_dict(cfg):
            cfg.paths.checkpoint_dir = str(tmp_path / name)
        return cfg

    train(config("straight"))
    step, calls = Trainer.train_step, []

    def terminated_inside_a_group(self: Trainer, *args: object, **kwargs: object) -> dict:
        calls.append(kwargs["last"])
        if len(calls) == 3:  # batch 2, the first of the second group
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", terminated_inside_a_group)
    with pytest.raises(SystemExit) as stopped:
        train(config("split"))
    assert stopped.value.code == 128 + signal.SIGTERM
    assert calls == [False, True, False, True]  # the group was finished before saving
    latest = tmp_path / "split" / "latest.pth"
    interrupted = load_checkpoint(latest)
    assert (interrupted["epoch"], interrupted["batch_in_epoch"], interrupted["step"]) == (0, 4, 2)
    monkeypatch.setattr(Trainer, "train_step", step)
    train(config("split", f"trainer.resume={latest}"))
    straight, resumed = load_checkpoint(tmp_path / "straight" / "latest.pth"), load_checkpoint(latest)
    assert_same_state(resumed, straight, STATE)


def test_ddp_syncs_gradients_only_at_the_groups_last_batch(compose_cfg: Callable[..., DictConfig]) -> None:
    """Inside a group every DDP-wrapped network runs under ``no_sync`` (its gradients stay local);
    the last batch all-reduces the sum (two real ranks: tests/test_train_e2e.py)."""
    import contextlib

    entered: list[bool] = []

    class RecordingDDP:
        @contextlib.contextmanager
        def no_sync(self) -> Iterator[None]:
            entered.append(True)
            yield

    cfg = compose_cfg(*SMOKE, "discriminator=none", "data.num_samples=8")
    trainer = _trainer(cfg, 2)
    trainer.networks.ddp = [RecordingDDP(), RecordingDDP()]  # type: ignore[list-item]
    batch = next(iter(trainer.train_loader))
    trainer.train_step(batch, gan_on=False, with_metrics=False, group_size=2, last=False)
    assert entered == [True, True]
    trainer.train_step(batch, gan_on=False, with_metrics=False, group_size=2, last=True)
    assert entered == [True, True]


def test_a_non_finite_batch_skips_its_groups_step(
    compose_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    """A NaN in the group's first batch (the second is fine): no step, buffers as at the group's
    start, one skipped step counted, and the message names the group's mean loss."""
    cfg = compose_cfg(*SMOKE, "discriminator=none", "data.num_samples=8")
    trainer = _trainer(cfg, 2)
    batch = next(iter(trainer.train_loader))
    poisoned = {**batch, "views": torch.full_like(batch["views"], float("nan"))}
    weights = [t.detach().clone() for t in trainer.generator.state_dict().values()]
    trainer.train_step(poisoned, gan_on=False, with_metrics=False, group_size=2, last=False)
    with caplog.at_level("WARNING", logger="neuropbr.training.nonfinite"):
        logs = trainer.train_step(batch, gan_on=False, with_metrics=False, group_size=2, last=True)
    assert torch.isfinite(logs["g_loss"])  # the last batch itself was fine
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.generator.state_dict().values()))
    assert trainer.nonfinite.skipped == 1 and "g_loss" in caplog.text
    assert all(p.grad is None for p in trainer.generator.parameters())
