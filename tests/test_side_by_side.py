"""experiments/benchmarks/side_by_side.py without the original stack: its arguments, the dataset
check, the split matching, the timing shim and the arithmetic of the table."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "side_by_side.py"


@pytest.fixture(scope="module")
def sbs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("side_by_side", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["side_by_side"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_arguments(sbs: ModuleType) -> None:
    args = sbs.parse_args(["--original", "/x/training"])
    assert (args.runs, args.epochs, args.samples, args.resolution, args.skip) == (3, 2, 24, 256, 4)
    assert args.gan_cases == [True, False]
    smoke = sbs.parse_args(["--original", "/x", "--smoke", "--gan", "off"])
    assert (smoke.runs, smoke.samples, smoke.gan_cases) == (1, 6, [False])
    assert sbs.parse_args(["--original", "/x", "--smoke", "--runs", "2"]).runs == 2  # given values win
    with pytest.raises(SystemExit):
        sbs.parse_args([])  # --original is required outside the child processes
    with pytest.raises(argparse.ArgumentTypeError):
        sbs.parse_gan("on,maybe")


def _write_sample(root: Path, sample: str, material: str) -> None:
    for name in ("0.png", "1.png", "2.png"):
        path = root / "input" / "clean" / sample / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for name in ("albedo.png", "roughness.png", "metallic.png", "normal.png"):
        path = root / "output" / material / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def test_check_layout(sbs: ModuleType, tmp_path: Path) -> None:
    metadata = {"sample_0000": "material_0000", "sample_0001": "material_0001"}
    for sample, material in metadata.items():
        _write_sample(tmp_path, sample, material)
    (tmp_path / "input" / "render_metadata.json").write_text(json.dumps(metadata))
    assert sbs.check_layout(tmp_path) == metadata
    (tmp_path / "output" / "material_0001" / "normal.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"normal\.png"):
        sbs.check_layout(tmp_path)


def test_split_matching(sbs: ModuleType) -> None:
    for num, train in ((24, 22), (6, 5), (10, 10), (28, 25)):
        ratio = sbs.original_val_ratio(num, train)
        assert num - int(num * ratio) == train  # the original's own split arithmetic
    samples = {f"sample_{i:04d}": f"material_{i:04d}" for i in range(24)}
    assert 0 < sbs.ours_train_samples(samples) < 24


def test_timed_loader_and_step_times(sbs: ModuleType) -> None:
    recorder = sbs.Recorder()

    class Loader(list):
        sampler = "the sampler"

    loader = Loader([{"views": torch.zeros(2, 3)}, {"views": torch.zeros(1, 3)}])
    recorder.start_epoch()
    timed = sbs.TimedLoader(loader, recorder)
    assert len(timed) == 2 and timed.sampler == "the sampler"  # ours reads loader attributes
    assert [sbs.batch_size_of(b) for b in timed] == [2, 1]
    recorder.end_epoch()
    epoch = recorder.epochs[0]
    assert len(epoch["requests"]) == 3 and epoch["samples"] == [2, 1]  # 2 batches + the final request
    assert sbs.batch_size_of((torch.zeros(4, 3), None)) == 4  # the original's (views, maps)


def _epoch(start: float, step_s: list[float], samples: int = 2) -> dict[str, Any]:
    requests = [start]
    for s in step_s:
        requests.append(requests[-1] + s)
    return {
        "start": start,
        "requests": requests,
        "ready": [r + 0.1 for r in requests[:-1]],
        "samples": [samples] * len(step_s),
        "end": requests[-1] + 0.5,
    }


def test_summarize_run(sbs: ModuleType) -> None:
    # 2 epochs of 3 steps; 10 s of validation + checkpoint between them, 5 s after the last.
    epochs = [_epoch(100.0, [9.0, 9.0, 4.0]), _epoch(132.0, [4.0, 4.0, 4.0])]
    result = {
        "epochs": epochs,
        "marks": {"process_start": 90.0, "train_end": 149.0, "peak_rss_bytes": 3 * 1024**3},
        "sections": {"validation": [2.0, 1.0], "checkpoint": [6.0]},
        "threads": 2,
    }
    samples = [
        (95.0, 1 * 1024**3, 1),
        (120.0, 4 * 1024**3, 2),
        (160.0, 9 * 1024**3, 1),
    ]  # last after training
    summary = sbs.summarize_run(result, skip=2, samples=samples)
    assert summary["samples_per_s"] == pytest.approx(8 / 16)  # steps 3-6: 4 x 2 samples in 4 x 4 s
    assert summary["timed_steps"] == 4 and summary["steps"] == 6
    assert summary["step_s_median"] == pytest.approx(4.0)
    assert summary["load_s_median"] == pytest.approx(0.1)
    assert summary["between_epochs_s"] == pytest.approx([10.0, 5.0])
    assert (summary["validation_s"], summary["checkpoint_s"], summary["setup_s"]) == (3.0, 6.0, 10.0)
    assert summary["peak_rss_gib"] == 3.0 and summary["peak_tree_pss_gib"] == 4.0
    assert summary["samples_per_epoch"] == [6, 6]
    with pytest.raises(ValueError):
        sbs.summarize_run(result, skip=6, samples=samples)


def test_compare_and_table(sbs: ModuleType) -> None:
    speed = sbs.compare([0.40, 0.30, 0.50], [0.80, 0.90, 0.75])
    assert speed["ratio_of_medians"] == pytest.approx(0.80 / 0.40)
    assert (speed["pair_min"], speed["pair_max"]) == (pytest.approx(1.5), pytest.approx(3.0))

    def run(rate: float, rss: float) -> dict[str, Any]:
        return {
            "samples_per_s": rate,
            "step_s_median": 2 / rate,
            "peak_rss_gib": rss,
            "peak_tree_pss_gib": rss + 0.5,
            "validation_s": 3.0,
            "checkpoint_s": 10.0,
            "setup_s": 6.0,
            "steps": 22,
            "timed_steps": 18,
            "samples_per_epoch": [22, 22],
        }

    case: dict[str, Any] = {
        "original": [run(0.4, 3.5)],
        "ours": [run(0.9, 3.4)],
        "gemm_gflops": [140.0, 150.0],
    }
    case["speed"] = sbs.compare([0.4], [0.9])
    for key in ("peak_rss_gib", "peak_tree_pss_gib"):
        case[key] = sbs.compare([r[key] for r in case["original"]], [r[key] for r in case["ours"]])
    report = {
        "environment": {
            "cpu_model": "CPU",
            "cores": 2,
            "torch": "2",
            "load_average_start": [0.1],
            "time_utc": "t",
        },
        "settings": {"resolution": 256, "batch_size": 2, "runs": 1, "epochs": 2, "skip": 4},
        "load_average_end": [0.2],
        "threads": [2],
        "cases": {"on": case},
    }
    table = sbs.format_table(report)
    assert "| **ours / original, ratio of medians** | **2.25x** |" in table
    assert "22 (18) / 22; 22 (18) / 22" in table
