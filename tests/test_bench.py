"""The benchmark machinery at a tiny size: suites, worker processes, JSON and table (no timing asserted)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

from neuropbr.bench import run_suite, write_report
from neuropbr.benchmarks.cases import (
    LIKE_FOR_LIKE,
    Comparison,
    EpochCase,
    LoadingCase,
    Suite,
    Timing,
    TrainCase,
    build_suite,
)
from neuropbr.benchmarks.environment import peak_tflops
from neuropbr.synth import synthesize


def _positive_finite(value: Any, where: str) -> None:
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{where}: {value!r}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10G", 70.0),
        ("NVIDIA L40S", 362.1),
        ("NVIDIA H200", 989.4),
        ("Some Future Accelerator", None),
    ],
)
def test_peak_tflops_picks_the_longest_matching_name(name: str, expected: float | None) -> None:
    assert peak_tflops(name) == expected


def test_quick_suite_is_small_and_needs_no_dataset() -> None:
    suite = build_suite("quick", "cpu", 2, ["train", "epochs", "loading"], {})
    assert [c.name for c in suite.train] == [
        "fast_iteration/256/gan_on/synthetic",
        "quick_test/64/gan_on/shipped",
    ]
    assert all(c.timing.repeats == 1 and c.data == "synthetic" for c in suite.train)
    assert [c.name for c in suite.epochs] == ["epochs/quick_test/64"]
    assert suite.epochs[0].epochs == 3  # two boundaries
    assert [c.name for c in suite.loading] == ["loading/synthetic/augment/workers0"]
    assert not suite.needs_dataset and suite.comparisons == []
    assert suite.case_count == 4 and suite.expected is not None and suite.expected[0] <= 180
    overrides = suite.epochs[0].training_overrides("cpu", None)
    for key in ("trainer.max_epochs=3", "trainer.limit_train_batches=8", "trainer.val_every_n_epochs=1"):
        assert key in overrides


def test_standard_cpu_suite_keeps_the_former_quick_cases() -> None:
    suite = build_suite("standard", "cpu", 2, ["train", "loading"], {})
    assert [c.name for c in suite.train] == [
        "fast_iteration/256/gan_off/shipped",
        "fast_iteration/256/gan_off/like_for_like",
        "fast_iteration/256/gan_on/shipped",
        "fast_iteration/256/gan_on/like_for_like",
        "quick_test/64/gan_on/shipped",
        "quick_test/128/gan_on/shipped",
        "default/64/gan_on/shipped",
        "high_quality/64/gan_on/shipped",
    ]
    assert len(suite.loading) == 8 and suite.epochs == []


def test_standard_cpu_suite_reproduces_the_original_settings() -> None:
    suite = build_suite("standard", "cpu", 2, ["train", "loading"], {})
    cases = {case.name: case for case in suite.train}
    for gan in ("gan_off", "gan_on"):
        shipped, like = (
            cases[f"fast_iteration/256/{gan}/shipped"],
            cases[f"fast_iteration/256/{gan}/like_for_like"],
        )
        assert (shipped.resolution, shipped.batch_size, shipped.data) == (256, 2, "cache")
        assert like.data == "png" and like.num_workers == 1 and set(LIKE_FOR_LIKE) <= set(like.overrides)
        overrides = like.training_overrides("cpu", "/data")
        assert "experiment=fast_iteration" in overrides and "data.cache=False" in overrides
        assert ("trainer.gan_start_epoch=0" in overrides) == (gan == "gan_on")
        assert ("discriminator=none" in overrides) == (gan == "gan_off")
    assert {c.preset for c in suite.train} == {"fast_iteration", "quick_test", "default", "high_quality"}
    assert {c.num_workers for c in suite.loading} == {0, 2}
    assert [c.title for c in suite.comparisons] == ["fast_iteration GAN off", "fast_iteration GAN on"]


def test_full_and_cuda_suites() -> None:
    full = build_suite("full", "cpu", 4, ["train", "optimisations"], {})
    headline = next(c for c in full.train if c.name == "fast_iteration/256/gan_on/shipped")
    # As the original stack was timed (experiments/benchmarks/README.md): steps 5-44 of 44, 3 runs.
    timing = headline.timing
    assert (timing.warmup_steps, timing.windows * timing.window_steps, timing.repeats) == (4, 40, 3)
    assert max(c.resolution for c in full.train) == 512
    assert full.comparisons[-1].title.startswith("all changes")

    cuda = build_suite("standard", "cuda", 16, ["train"], {"repeats": 1})
    names = {c.name for c in cuda.train}
    assert {"default/1024/gan_on/shipped", "default/1024/gan_on/compiled"} <= names
    assert all(c.timing.repeats == 1 for c in cuda.train)
    full_cuda = build_suite("full", "cuda", 16, ["train"], {})
    at_2048 = next(c for c in full_cuda.train if c.name == "default/2048/gan_on/shipped")
    assert "encoder.grad_checkpointing=true" in at_2048.overrides

    with pytest.raises(
        ValueError, match=r"bench\.suite='huge'; choose one of \['quick', 'standard', 'full'\]"
    ):
        build_suite("huge", "cpu", 2, ["train"], {})


@pytest.mark.parametrize(
    ("suite_name", "device"), [("full", "cpu"), ("full", "cuda"), ("quick", "cpu"), ("quick", "cuda")]
)
def test_every_case_of_the_suites_composes(
    suite_name: str, device: str, compose_cfg: Callable[..., DictConfig]
) -> None:
    """A case whose overrides do not compose fails only after minutes of benchmarking (as
    ``experiment=default`` and quick_test on a folder dataset once did): compose them all here."""
    suite = build_suite(suite_name, device, 4, ["train", "epochs", "optimisations", "loading"], {})
    for case in [*suite.train, *suite.epochs]:
        cfg = compose_cfg(*case.training_overrides(device, "/data"))
        assert int(cfg.data.resolution) == case.resolution, case.name
    for loading in suite.loading:
        compose_cfg(*loading.overrides("/data"))


def test_tiny_suite_runs_and_writes_valid_json_and_table(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    root = tmp_path / "data"
    synthesize(out=root, num_materials=3, resolution=32, num_views=3, num_workers=1, progress=False)
    out = tmp_path / "bench.json"
    cfg = compose_cfg("device=cpu", f"out={out}", f"data_root={root}", config_name="bench")
    timing = Timing(warmup_steps=1, windows=2, window_steps=1, repeats=1)
    train_cases = [
        TrainCase(
            "smoke/32/gan_on/a", "train", "smoke", 32, 2, True, "a", timing, data="synthetic", inference=True
        ),
        TrainCase("smoke/32/gan_off/b", "train", "smoke", 32, 2, False, "b", timing, data="synthetic"),
    ]
    loading = [
        LoadingCase(f"loading/{source}/augment/workers0", source, 0, True, 32, 2, 2, 1)
        for source in ("png", "cache")
    ]
    comparison = Comparison("GAN off", train_cases[0].name, train_cases[1].name, "tiny")
    epochs = [EpochCase("epochs/smoke/32", "smoke", 32, 2, epochs=3, batches=2, val_batches=1)]
    suite = Suite("tiny", "cpu", train_cases, loading, [comparison], needs_dataset=True, epochs=epochs)

    report = run_suite(cfg, suite)
    json_path, table_path, table = write_report(report, out)

    loaded = json.loads(json_path.read_text())
    assert loaded["failures"] == []
    env = loaded["environment"]
    assert env["torch"] and env["device"] == "cpu" and env["torch_threads"] >= 1 and env["git_commit"]
    _positive_finite(loaded["reference_peak"]["tflops"], "reference peak")
    for entry in loaded["train"]:
        summary = entry["summary"]
        for key in ("median", "min", "max"):
            _positive_finite(summary["samples_per_s"][key], f"{entry['name']} samples/s {key}")
        _positive_finite(summary["peak_memory_gib"]["median"], "peak memory")
        _positive_finite(summary["step_s_median"], "step seconds")
        _positive_finite(summary["gflops_per_sample"]["train_step_per_sample"], "FLOPs")
        assert summary["memory_kind"] == "rss" and 0 <= summary["data_wait_share"] <= 1
        assert len(entry["runs"][0]["window_samples_per_s"]) == 2
    assert "inference_ms_per_sample" in loaded["train"][0]["summary"]
    assert loaded["train"][0]["summary"]["gflops_per_sample"]["d_forward"] > 0
    assert loaded["train"][1]["summary"]["gflops_per_sample"]["d_forward"] == 0  # discriminator=none
    _positive_finite(loaded["comparisons"][0]["speedup"], "speed-up")
    for entry in loaded["loading"]:
        _positive_finite(entry["summary"]["samples_per_s"]["median"], entry["name"])
    assert [s["num_workers"] for s in loaded["loading_speedups"]] == [0]

    epoch_summary = loaded["epochs"][0]["summary"]
    assert epoch_summary["boundaries"] == 2  # 3 epochs: 2 boundaries, each timed
    for key in ("before_s", "first_after_s", "after_s", "boundary_s"):
        _positive_finite(epoch_summary[key], key)
    assert table_path.read_text() == table
    for heading in (
        "## Training",
        "## Before/after: tiny",
        "## Data loading",
        "## Epoch boundaries",
        "peak RSS GiB",
    ):
        assert heading in table
    assert "smoke/32/gan_off/b" in table


def test_tiling_benchmark_prints_time_and_memory_per_megapixel(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m neuropbr.benchmarks.tiling`` at a tiny size: each row measured in a worker
    process, automatic and training-resolution tiles (no timing asserted)."""
    from neuropbr.benchmarks.tiling import main

    main(["--cases", "tiny_conv", "--sides", "256", "--threads", "1", "--training-tiles"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny_conv")]
    assert [row.split("|")[4].strip() for row in rows] == ["256", "64"]  # one tile, then 64 px tiles
    assert [row.split("|")[5].strip() for row in rows] == ["1", str(len(range(0, 256 - 64 + 1, 48)) ** 2)]
    for row in rows:
        seconds, per_mp, mib, mib_per_mp = (float(cell) for cell in row.split("|")[6:10])
        _positive_finite(seconds, row)
        _positive_finite(per_mp, row)
        assert mib >= 0 and mib_per_mp >= 0, row
