"""``python -m neuropbr.bench [suite=quick|standard|full] [device=cpu|cuda] [out=FILE.json]``: how fast we train.

Training samples/s (the G + D step, steady state after warm-up, median of several timed windows),
peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA), inference latency per sample,
data-loading samples/s (PNG vs the decoded cache, 0/2/N workers) and, on CUDA, model TFLOP/s and
utilisation of the device's bf16 peak, and step times across epoch boundaries (validation and
checkpoint included). ``quick`` takes <= 3 minutes on 2 CPU cores (procedural data, one step time
per model size, the epoch boundaries); ``standard`` (~12 minutes) adds the presets at several
sizes, the fast_iteration pairs and PNG vs cache loading; ``full`` adds resolutions, steps and
repeats. The expected time is logged at the start, and a line per measured process. Writes ``out`` (JSON) and ``out`` with ``.md`` (the tables,
also printed), with the environment (torch, device, threads, CPU, git commit, load average).

Each configuration runs in its own fresh process (``neuropbr.benchmarks.worker``), so its peak
memory is its own, and repeats are interleaved (A B C A B C ...), so slow drifts of a shared
machine hit every configuration alike. Nothing here asserts a time: benchmarks print numbers.

Examples::

    python -m neuropbr.bench                                  # quick suite on this machine
    python -m neuropbr.bench suite=standard                   # the presets, pairs and loading
    python -m neuropbr.bench suite=full out=bench-full.json
    python -m neuropbr.bench sections=[optimisations] out=optim.json
    python -m neuropbr.bench only=[fast_iteration/256/gan_on] repeats=3 'overrides=["trainer.channels_last=false"]'
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from neuropbr.benchmarks.cases import EpochCase, LoadingCase, Suite, TrainCase, build_suite
from neuropbr.benchmarks.environment import environment, load_average, matmul_tflops
from neuropbr.benchmarks.report import (
    compare,
    format_report,
    summarize_epochs,
    summarize_loading,
    summarize_train,
)
from neuropbr.config import config_dir, register_configs
from neuropbr.data.cache import user_cache_root
from neuropbr.training.precision import resolve_device
from neuropbr.utils.choices import choice
from neuropbr.utils.system import available_cores

log = logging.getLogger(__name__)

#: The folder dataset the PNG and cache cases read (written once, reused by later runs).
BENCH_DATASET: dict[str, Any] = {"num_materials": 40, "resolution": 256, "num_views": 3, "seed": 0}


def ensure_dataset(root: str | None) -> str:
    """The folder dataset for PNG/cache cases: ``root`` as given, or one written by ``neuropbr.synth``.

    The default lives in the user cache folder and is written once (to a temporary folder,
    then renamed, so an interrupted write is never mistaken for a dataset).

    Args:
        root: an existing dataset root, or None.

    Returns:
        The dataset root.
    """
    if root is not None:
        if not (Path(root) / "input").is_dir():
            raise FileNotFoundError(f"bench.data_root={root}: no input/ folder (expected the folder layout)")
        return root
    spec = BENCH_DATASET
    target = (
        user_cache_root()
        / "bench"
        / (f"synth_r{spec['resolution']}_v{spec['num_views']}_m{spec['num_materials']}_s{spec['seed']}")
    )
    if (target / "input" / "render_metadata.json").is_file():
        return str(target)
    from neuropbr.synth import synthesize

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".synth-", dir=target.parent))
    log.info("writing the benchmark dataset (%s) to %s", spec, target)
    synthesize(out=partial, overwrite=True, progress=False, **spec)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return str(target)


def run_worker(job: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """Run one job in a fresh ``python -m neuropbr.benchmarks.worker`` process.

    Returns:
        The worker's result.

    Raises:
        RuntimeError: the worker failed or timed out (its stderr tail is in the message).
    """
    with tempfile.TemporaryDirectory(prefix="neuropbr-bench-job-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(json.dumps(job))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "neuropbr.benchmarks.worker", str(job_file), str(result_file)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"timed out after {timeout_s} s (bench.case_timeout_s)") from err
        if proc.returncode != 0 or not result_file.is_file():
            lines = proc.stderr.strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"exit code {proc.returncode}: {lines[-1]}")
        return json.loads(result_file.read_text())


def _train_job(case: TrainCase, cfg: DictConfig, device: str, data_root: str | None) -> dict[str, Any]:
    timing = case.timing
    return {
        "kind": "train",
        "name": case.name,
        "overrides": [*case.training_overrides(device, data_root), *cfg.overrides],
        "warmup_steps": timing.warmup_steps,
        "windows": timing.windows,
        "window_steps": timing.window_steps,
        "inference": case.inference,
        "fixed_batch": case.fixed_batch,
        "inference_runs": cfg.inference_runs or (5 if device == "cpu" else 20),
        "threads": cfg.threads,
    }


def _reference_peak(device: torch.device, env: dict[str, Any]) -> dict[str, Any] | None:
    """The peak that utilisation is measured against: bf16 data sheet on CUDA, measured fp32 matmul on CPU."""
    if device.type == "cuda":
        if env.get("peak_bf16_tflops") is None:
            log.warning("unknown device %r: no bf16 peak on file, no MFU reported", env["device_name"])
            return None
        return {"tflops": env["peak_bf16_tflops"], "source": f"{env['device_name']} dense bf16 data sheet"}
    return {
        "tflops": matmul_tflops(device, torch.float32),
        "source": "measured float32 2048^2 matmul on this CPU, same threads",
    }


def run_suite(cfg: DictConfig, suite: Suite | None = None) -> dict[str, Any]:
    """Run the configured suite and return the report (see the module docstring).

    Args:
        cfg: the composed ``conf/bench.yaml``.
        suite: cases to run instead of ``cfg.suite``'s (e.g. tiny ones in tests).

    Returns:
        The JSON-serialisable report.
    """
    started = time.perf_counter()
    device = resolve_device(choice(cfg.device))
    sections = [choice(s) for s in cfg.sections]
    settings = {
        key: cfg[key] for key in ("repeats", "warmup_steps", "windows", "window_steps", "loading_batches")
    }
    if suite is None:
        suite = build_suite(choice(cfg.suite), device.type, available_cores(), sections, settings)
    suite = suite.select(list(cfg.only) if cfg.only else None)
    if not suite.train and not suite.loading and not suite.epochs:
        raise ValueError(f"bench.only={list(cfg.only or [])}: no case of suite={suite.name} matches")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    env = environment(device)
    data_root = ensure_dataset(cfg.data_root) if suite.needs_dataset else cfg.data_root
    reference = _reference_peak(device, env) if suite.train else None
    expected = (
        f"expected ~{suite.expected[0] / 60:.1f} min on {suite.expected[1]}"
        if suite.expected
        else "no expected time on file for this device or selection"
    )
    log.info(
        "suite=%s on %s: %d training cases, %d epoch-boundary cases, %d loading cases; %s",
        suite.name,
        device,
        len(suite.train),
        len(suite.epochs),
        len(suite.loading),
        expected,
    )
    progress = _Progress(suite.case_count, started)

    runs: dict[str, list[dict[str, Any]]] = {case.name: [] for case in suite.train}
    failures: list[dict[str, str]] = []
    rounds = max((case.timing.repeats for case in suite.train), default=0)
    for round_index in range(rounds):  # interleaved: every case once per round
        for case in suite.train:
            if round_index >= case.timing.repeats:
                continue
            label = f"{case.name} (round {round_index + 1}/{rounds})"
            try:
                runs[case.name].append(
                    run_worker(_train_job(case, cfg, device.type, data_root), cfg.case_timeout_s)
                )
                progress.done(label)
            except RuntimeError as err:
                progress.done(label, failed=True)
                log.error("%s failed: %s", case.name, err)
                failures.append({"name": case.name, "error": str(err)})

    peak = reference["tflops"] if reference else None
    train_entries, summaries = [], {}
    for case in suite.train:
        entry = _case_entry(case, cfg, device.type, data_root)
        if runs[case.name]:
            entry["summary"] = summaries[case.name] = summarize_train(case, runs[case.name], peak)
            entry["runs"] = runs[case.name]
        train_entries.append(entry)
    comparisons = [
        compare(c, summaries) for c in suite.comparisons if c.before in summaries and c.after in summaries
    ]
    epoch_entries = [
        _run_epochs(case, cfg, device.type, data_root, failures, progress) for case in suite.epochs
    ]
    loading_entries = _run_loading(suite.loading, cfg, data_root, failures) if suite.loading else []
    if suite.loading:
        progress.done("data loading", failed=any(f["name"] == "loading" for f in failures))
    return {
        "suite": suite.name,
        "device": device.type,
        "sections": sections,
        "environment": env,
        "reference_peak": reference,
        "data_root": data_root,
        "train": train_entries,
        "comparisons": comparisons,
        "epochs": epoch_entries,
        "loading": loading_entries,
        "loading_speedups": _loading_speedups(loading_entries),
        "failures": failures,
        "load_average_end": load_average(),
        "runtime_s": time.perf_counter() - started,
    }


class _Progress:
    """One log line per measured process: which, how many are done, the time so far."""

    def __init__(self, total: int, started: float) -> None:
        self.total, self.count, self.started = total, 0, started

    def done(self, label: str, failed: bool = False) -> None:
        self.count += 1
        log.info(
            "[%d/%d] %s %s (%.0f s elapsed)",
            self.count,
            self.total,
            label,
            "failed" if failed else "done",
            time.perf_counter() - self.started,
        )


def _run_epochs(
    case: EpochCase,
    cfg: DictConfig,
    device: str,
    data_root: str | None,
    failures: list[dict[str, str]],
    progress: _Progress,
) -> dict[str, Any]:
    """One epoch-boundary case in its own process, summarised."""
    overrides = [*case.training_overrides(device, data_root), *cfg.overrides]
    entry: dict[str, Any] = {
        "name": case.name,
        "preset": case.preset,
        "resolution": case.resolution,
        "batch_size": case.batch_size,
        "epochs": case.epochs,
        "batches_per_epoch": case.batches,
        "val_batches": case.val_batches,
        "overrides": overrides,
    }
    job = {"kind": "epochs", "overrides": overrides, "threads": cfg.threads}
    try:
        run = run_worker(job, cfg.case_timeout_s)
    except RuntimeError as err:
        progress.done(case.name, failed=True)
        log.error("%s failed: %s", case.name, err)
        failures.append({"name": case.name, "error": str(err)})
        return entry
    progress.done(case.name)
    entry["summary"] = summarize_epochs(run)
    entry["run"] = run
    return entry


def _case_entry(case: TrainCase, cfg: DictConfig, device: str, data_root: str | None) -> dict[str, Any]:
    return {
        "name": case.name,
        "section": case.section,
        "variant": case.variant,
        "preset": case.preset,
        "resolution": case.resolution,
        "batch_size": case.batch_size,
        "gan": case.gan,
        "data": "device-resident batch" if case.fixed_batch else case.data,
        "overrides": [*case.training_overrides(device, data_root), *cfg.overrides],
        "timing": {
            "warmup_steps": case.timing.warmup_steps,
            "windows": case.timing.windows,
            "window_steps": case.timing.window_steps,
            "repeats": case.timing.repeats,
        },
    }


def _run_loading(
    cases: list[LoadingCase], cfg: DictConfig, data_root: str | None, failures: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """All loading cases in one worker process, their repeats interleaved (no model: memory is not measured)."""
    job = {
        "kind": "loading",
        "threads": cfg.threads,
        "cases": [
            {"name": c.name, "overrides": c.overrides(data_root), "batches": c.batches, "repeats": c.repeats}
            for c in cases
        ],
    }
    log.info("data loading: %d cases", len(cases))
    try:
        result = run_worker(job, cfg.case_timeout_s)["cases"]
    except RuntimeError as err:
        log.error("data loading failed: %s", err)
        failures.append({"name": "loading", "error": str(err)})
        result = {}
    entries = []
    for case in cases:
        entry: dict[str, Any] = {
            "name": case.name,
            "source": case.source,
            "augment": case.augment,
            "num_workers": case.num_workers,
            "resolution": case.resolution,
            "batch_size": case.batch_size,
            "batches": case.batches,
        }
        if case.name in result and result[case.name]["samples_per_s"]:
            entry["summary"] = summarize_loading(
                result[case.name]["samples_per_s"], result[case.name]["setup_s"]
            )
        entries.append(entry)
    return entries


def _loading_speedups(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cache / PNG samples/s at equal workers and transforms."""
    by_key = {(e["source"], e["augment"], e["num_workers"]): e for e in entries if e.get("summary")}
    speedups = []
    for (source, augment, workers), entry in by_key.items():
        png = by_key.get(("png", augment, workers))
        if source == "cache" and png is not None:
            speedups.append(
                {
                    "transforms": "augment" if augment else "decode only",
                    "num_workers": workers,
                    "speedup": entry["summary"]["samples_per_s"]["median"]
                    / png["summary"]["samples_per_s"]["median"],
                }
            )
    return speedups


def write_report(report: dict[str, Any], out: str | Path) -> tuple[Path, Path, str]:
    """Write ``out`` (JSON) and ``out`` with suffix ``.md`` (the tables).

    Returns:
        ``(json path, table path, table text)``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    table = format_report(report)
    table_path = out.with_suffix(".md")
    table_path.write_text(table)
    return out, table_path, table


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="bench")
def _main(cfg: DictConfig) -> None:
    report = run_suite(cfg)
    json_path, table_path, table = write_report(report, cfg.out)
    print(table)  # noqa: T201 -- the CLI's final table
    log.info("wrote %s and %s", json_path, table_path)


def main() -> None:
    """Entry point of ``python -m neuropbr.bench``."""
    register_configs()
    _main()


if __name__ == "__main__":
    main()
