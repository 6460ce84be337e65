"""``data.on_error=skip`` survives a PNG that passes the start-up scan but cannot be decoded.

Start-up reads headers and checks PNG chunk CRCs without decoding; a PNG whose chunks and CRCs are
intact around a pixel stream that is not zlib data only fails when a worker loads it. With
``skip`` the sample is skipped from then on (a warning names the file), the next loadable sample
takes its place, the epoch goes on, and the run's summary reaches the log and MLflow.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from neuropbr.data.index import DatasetError
from neuropbr.synth import synthesize
from neuropbr.train import train

from .helpers import env, train_cmd

#: The smoke preset's tiny model on a folder dataset (the preset itself is synthetic data).
FOLDER_RUN = (
    "data=folder",
    "encoder=tiny",
    "fusion=tiny",
    "decoder=tiny",
    "discriminator=tiny",
    "data.resolution=32",
    "data.batch_size=2",
    "data.val_ratio=0.3",
    "trainer.max_epochs=2",
    "trainer.gan_start_epoch=0",
    "trainer.device=cpu",
    "trainer.progress_bar=false",
    "scheduler.warmup_epochs=0",
)


def _png_with_undecodable_pixels(path: Path, size: int = 32) -> None:
    """Valid signature, chunks and CRCs around an IDAT that is not a zlib stream."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"junk" * 16) + chunk(b"IEND", b"")
    )


@pytest.fixture
def broken_dataset(tmp_path: Path) -> tuple[Path, Path, str]:
    """Six materials at 32 px; view 1 of the first sample cannot be decoded."""
    root = tmp_path / "ds"
    synthesize(out=root, num_materials=6, resolution=32, num_views=3, num_workers=1, progress=False)
    sample = sorted(p.name for p in (root / "input" / "clean").iterdir())[0]
    broken = root / "input" / "clean" / sample / "1.png"
    _png_with_undecodable_pixels(broken)
    return root, broken, f"clean/{sample}"


def test_skip_goes_on_and_reports_the_sample(
    compose_cfg: Callable[..., DictConfig],
    broken_dataset: tuple[Path, Path, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, broken, sample = broken_dataset
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg(
        *FOLDER_RUN,
        f"data.root={root}",
        "data.on_error=skip",
        "data.num_workers=0",
        f"tracking.uri={uri}",
        "tracking.log_checkpoint=false",
    )
    with caplog.at_level(logging.WARNING):
        train(cfg)
    messages = [r.getMessage() for r in caplog.records]
    # One warning naming the file when it failed (later epochs skip it without decoding again).
    assert sum(str(broken) in m and "found while loading" in m for m in messages) == 1
    assert any(f"0 sample(s) skipped at start-up, 1 while loading ({sample})" in m for m in messages)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("neuropbr").experiment_id])
    assert run.data.metrics["data/skipped_while_loading"] == 1.0
    assert run.data.tags["data_skipped_while_loading"] == sample
    assert run.info.status == "FINISHED"


def test_raise_names_the_file_and_the_way_out(
    compose_cfg: Callable[..., DictConfig], broken_dataset: tuple[Path, Path, str]
) -> None:
    root, broken, sample = broken_dataset
    cfg = compose_cfg(*FOLDER_RUN, f"data.root={root}", "data.num_workers=0", "tracking=none")
    with pytest.raises(DatasetError, match=r"data\.on_error=skip") as info:
        train(cfg)
    assert f"{sample} | {broken} | cannot decode image" in str(info.value)


@pytest.mark.slow
def test_skip_with_loader_workers_in_a_real_process(
    broken_dataset: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """Workers find the file: their warning reaches the log, the main process reports the sample."""
    root, broken, sample = broken_dataset
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        train_cmd(
            run_dir,
            *FOLDER_RUN,
            f"data.root={root}",
            "data.on_error=skip",
            "data.num_workers=2",
            "tracking=none",
            smoke=False,
        ),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_text = (run_dir / "train.log").read_text()
    assert str(broken) in log_text and "found while loading" in log_text
    assert f"1 while loading ({sample})" in log_text
