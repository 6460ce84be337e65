"""Checkpoint files: atomic writes, clear errors for corrupt/mismatched files, RNG round trip."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuropbr.training.checkpoint import (
    Checkpointer,
    CheckpointError,
    capture_rng_state,
    find_resume_checkpoint,
    load_checkpoint,
    load_module_state,
    restore_rng_state,
    save_checkpoint,
    strip_wrapper_prefixes,
)


def _state(model: nn.Module) -> dict:
    return {"generator": model.state_dict(), "epoch": 1, "step": 10}


def test_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "c.pth", _state(model))
    state = load_checkpoint(tmp_path / "c.pth")
    assert state["format_version"] == 1 and state["step"] == 10
    clone = nn.Linear(3, 2)
    load_module_state(clone, state["generator"], "generator", "c.pth")
    assert torch.equal(clone.weight, model.weight)


def test_failed_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "latest.pth"
    save_checkpoint(path, _state(nn.Linear(3, 2)))
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"generator": {}, "epoch": 0, "step": 0, "bad": Unpicklable()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]  # no temp file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_gets_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.pth"
    save_checkpoint(path, _state(nn.Linear(3, 2)))
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=r"c\.pth is not a readable NeuroPBR checkpoint"):
        load_checkpoint(path)


def test_missing_file_and_missing_entries(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"model": {}}, tmp_path / "other.pth")
    with pytest.raises(
        CheckpointError, match=r"missing entries \['format_version', 'generator', 'epoch', 'step'\]"
    ):
        load_checkpoint(tmp_path / "other.pth")


def test_mismatched_weights_list_keys_and_shapes() -> None:
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()
    target = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as info:
        load_module_state(target, source, "generator", "x.pth")
    message = str(info.value)
    assert "missing keys (2): 2.bias, 2.weight" in message
    assert "0.weight: checkpoint (4, 3) vs model (5, 3)" in message


def test_compiled_and_ddp_prefixes_are_stripped() -> None:
    weights = {
        "_orig_mod.encoder.w": torch.ones(1),
        "module.fusion.b": torch.zeros(1),
        "enc._orig_mod.x": torch.ones(1),
    }
    assert set(strip_wrapper_prefixes(weights)) == {"encoder.w", "fusion.b", "enc.x"}


def test_rng_state_round_trip_through_a_file(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "r.pth", {"generator": {}, "epoch": 0, "step": 0, "rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(load_checkpoint(tmp_path / "r.pth")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_checkpointer_writes_the_guides_files(tmp_path: Path) -> None:
    ckpt = Checkpointer(tmp_path, save_every_n_epochs=2, save_best_only=False)
    state = _state(nn.Linear(1, 1))
    ckpt.save(state, improved=True, epochs_done=1)
    ckpt.save(state, improved=False, epochs_done=2)
    ckpt.save(state, improved=False, epochs_done=None)  # mid-epoch: latest only
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best_model.pth",
        "checkpoint_epoch_0002.pth",
        "latest.pth",
    ]
    best_only = Checkpointer(tmp_path / "b", save_every_n_epochs=1, save_best_only=True)
    best_only.save(state, improved=False, epochs_done=1)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["latest.pth"]
    disabled = Checkpointer(tmp_path / "rank1", 1, False, enabled=False)
    assert disabled.save(state, improved=True, epochs_done=1) == [] and not (tmp_path / "rank1").exists()


def test_resume_resolution(tmp_path: Path) -> None:
    assert find_resume_checkpoint(None, tmp_path, tmp_path) is None
    with pytest.raises(CheckpointError, match=r"trainer\.resume=.*no such checkpoint"):
        find_resume_checkpoint(str(tmp_path / "missing.pth"), tmp_path, tmp_path)
    runs = tmp_path / "outputs"
    config = {"seed": 1, "encoder": {"name": "resnet18"}, "trainer": {"max_epochs": 5}}
    assert find_resume_checkpoint("auto", tmp_path / "new" / "checkpoints", runs, config) is None
    for age, (name, encoder) in enumerate(
        [("old", "resnet18"), ("newer", "resnet18"), ("other", "resnet50")]
    ):
        path = runs / name / "checkpoints" / "latest.pth"
        stored = {**config, "encoder": {"name": encoder}, "trainer": {"max_epochs": 1}}
        save_checkpoint(path, {**_state(nn.Linear(1, 1)), "config": stored})
        os.utime(path, (1_000_000 + age * 100, 1_000_000 + age * 100))  # explicit order, no mtime race
    # The newest run trained another encoder: auto skips it and takes the newest matching one
    # (a different trainer.max_epochs is a legitimate change on resume).
    assert find_resume_checkpoint("auto", tmp_path / "new" / "checkpoints", runs, config) == (
        runs / "newer" / "checkpoints" / "latest.pth"
    )
    own = runs / "old" / "checkpoints"
    assert find_resume_checkpoint("auto", own, runs, config) == own / "latest.pth"
    # A sweep trial (config None) never adopts another run.
    assert find_resume_checkpoint("auto", tmp_path / "trial" / "checkpoints", runs, None) is None
