"""One measured configuration, in its own process: ``python -m neuropbr.benchmarks.worker JOB RESULT``.

``JOB`` is a JSON file written by ``neuropbr.bench`` or ``neuropbr.benchmarks.tiling``
(``{"kind": "train" | "epochs" | "loading" | "probe" | "tiling", ...}``);
the measurements go to the JSON file ``RESULT``. A fresh process per configuration means its
peak memory (RSS on CPU, ``max_memory_allocated`` on CUDA) is its own.

Training is timed through the real code path: the config is composed from ``conf/`` with the
case's overrides, and :func:`neuropbr.train.build_trainer` builds the trainer users train with;
each step is ``Trainer.train_step`` on a batch from the real data module's loader (its wait
included). Warm-up steps are excluded; the device is synchronised only at window boundaries.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from neuropbr.benchmarks.environment import (
    children_peak_rss_bytes,
    matmul_tflops,
    peak_memory_bytes,
    synchronize,
)
from neuropbr.build import build_datamodule
from neuropbr.config import config_dir, register_configs
from neuropbr.models.contracts import PBR_TOTAL_CHANNELS
from neuropbr.models.summary import build_on_meta, estimate_cost
from neuropbr.training.distributed import DistInfo
from neuropbr.training.precision import resolve_device
from neuropbr.training.tracking import NullTracker
from neuropbr.utils.choices import choice
from neuropbr.utils.seeding import seed_everything

log = logging.getLogger(__name__)


def compose_training_config(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides``, as ``python -m neuropbr.train`` composes it.

    Args:
        overrides: Hydra overrides.
        output_dir: where a run would write (``paths.*``; nothing is written by the benchmark).

    Returns:
        The composed config.
    """
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name="bench"):
        cfg = compose(config_name="train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.checkpoint_dir = str(Path(output_dir) / "checkpoints")
    return cfg


def model_flops(cfg: DictConfig, gan_on: bool) -> dict[str, float]:
    """Forward FLOPs per sample of G and D at ``cfg``'s resolution, and the model FLOPs of a step.

    Model FLOPs count the work the algorithm needs, not what an implementation re-runs
    (checkpointing, recomputed fakes): per sample, the generator's forward and backward
    (``3 x G``) and, with the GAN, the D step on real and fake maps (``2 x 3 x D``) plus the G
    step's pass through D (forward + input gradients, ``2 x D``).

    Returns:
        ``{"g_forward", "d_forward", "train_step_per_sample"}`` in FLOPs.
    """
    generator, discriminator = build_on_meta(cfg)
    resolution, num_views = int(cfg.data.resolution), int(cfg.data.num_views)
    views = torch.empty(1, num_views, 3, resolution, resolution, device="meta")  # (1, V, 3, H, W)
    g_flops = estimate_cost(generator, lambda: generator(views)).flops
    d_flops = 0
    if discriminator is not None:
        out = resolution * generator.decoder.sr_scale
        maps = torch.empty(1, PBR_TOTAL_CHANNELS, out, out, device="meta")  # (1, 8, H', W')
        d_flops = estimate_cost(discriminator, lambda: discriminator(maps, views)).flops
    per_sample = 3 * g_flops + (8 * d_flops if gan_on else 0)
    return {
        "g_forward": float(g_flops),
        "d_forward": float(d_flops),
        "train_step_per_sample": float(per_sample),
    }


def epochs(loader: Any) -> Iterator[dict[str, Any]]:
    """A training loader's batches, epoch after epoch (each epoch reshuffled, as in ``fit``)."""
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch, start=0)
        yield from loader
        epoch += 1


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        "views": batch["views"].to(device),
        "maps": {k: v.to(device) for k, v in batch["maps"].items()},
    }


def _repeat(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        yield batch


def _build_trainer(overrides: list[str], output_dir: str) -> tuple[DictConfig, torch.device, Any, Any]:
    """The config, device, set-up data module and trainer a training run with ``overrides`` has."""
    from neuropbr.train import build_trainer  # imports the training stack (and its plugins) only here

    cfg = compose_training_config(overrides, output_dir)
    device = resolve_device(choice(cfg.trainer.device))
    seed_everything(cfg.seed)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return cfg, device, datamodule, build_trainer(cfg, datamodule, device, DistInfo(), NullTracker())


def run_train(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``Trainer.train_step`` of one training case.

    Args:
        job: ``{"overrides": [...], "warmup_steps", "windows", "window_steps", "inference",
            "inference_runs", "fixed_batch"}``.

    Returns:
        Per-window samples/s, per-step seconds, data-wait share, peak memory, FLOPs (and
        inference latency when asked).
    """
    with tempfile.TemporaryDirectory(prefix="neuropbr-bench-") as tmp:
        cfg, device, datamodule, trainer = _build_trainer(job["overrides"], tmp)
        gan_on = (
            trainer.discriminator is not None and trainer.loss.uses_gan and cfg.trainer.gan_start_epoch == 0
        )
        result: dict[str, Any] = {
            "device": str(device),
            "precision": trainer.precision.name,
            "threads": torch.get_num_threads(),
            "gan_on": gan_on,
            "batch_size": datamodule.batch_size,
            "num_workers": datamodule.num_workers,
            "params_generator": sum(p.numel() for p in trainer.generator.parameters()),
            "params_discriminator": sum(p.numel() for p in trainer.discriminator.parameters())
            if trainer.discriminator is not None
            else 0,
            "flops": model_flops(cfg, gan_on),
        }
        trainer.generator.train()
        if trainer.discriminator is not None:
            trainer.discriminator.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        batches = epochs(trainer.train_loader)
        if job.get("fixed_batch"):
            batches = _repeat(_to_device(next(batches), device))
        step_seconds, wait_seconds, window_rates = [], [], []
        # As in the training loop, the per-step metrics are computed on logging steps only.
        log_every, step = trainer.settings.log_every_n_steps, 0
        for _ in range(job["warmup_steps"]):
            step += 1
            trainer.train_step(next(batches), gan_on, with_metrics=step % log_every == 0)
        for _ in range(job["windows"]):
            synchronize(device)
            window_start, samples = time.perf_counter(), 0
            for _ in range(job["window_steps"]):
                start = time.perf_counter()
                batch = next(batches)
                loaded = time.perf_counter()
                step += 1
                trainer.train_step(batch, gan_on, with_metrics=step % log_every == 0)
                samples += batch["views"].shape[0]
                # Without a sync the device may still be busy: per-step times are exact on CPU only.
                step_seconds.append(time.perf_counter() - start)
                wait_seconds.append(loaded - start)
            synchronize(device)
            window_rates.append(samples / (time.perf_counter() - window_start))
        result["peak_memory_bytes"] = peak_memory_bytes(device)
        result["memory_kind"] = "cuda_max_allocated" if device.type == "cuda" else "rss"
        # Drop every reference to the loader: its (persistent) workers exit, and their peak RSS
        # becomes readable.
        del batches
        trainer.train_loader = None
        gc.collect()
        result["worker_peak_rss_bytes"] = children_peak_rss_bytes()
        result["window_samples_per_s"] = window_rates
        result["step_seconds"] = step_seconds if device.type == "cpu" else []
        result["data_wait_share"] = sum(wait_seconds) / max(sum(step_seconds), 1e-9)
        if job.get("inference"):
            result["inference_ms"] = _inference_ms(trainer, cfg, device, job.get("inference_runs", 5))
    return result


def _children_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) so far of each live child process (the loader workers)."""
    import multiprocessing

    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for child in multiprocessing.active_children():
        pid = child.pid
        if pid is None:  # not started
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return times


def run_epochs(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``Trainer.fit`` over a few short epochs, as a real run has them: each epoch boundary
    validates and writes ``latest.pth`` (and ``best_model.pth``), then training resumes.

    Every ``train_step`` call is timed (the device synchronised after it); the gap between the
    last step of one epoch and the first of the next is the boundary's own cost (the epoch's
    end, validation, checkpoint, the loader's next epoch).

    Args:
        job: ``{"overrides": [...]}``; the overrides set the epochs, batches per epoch,
            validation batches and checkpointing.

    Returns:
        ``{"steps": [{"epoch", "start", "seconds"}, ...], "boundaries": [seconds, ...]}`` with
        times relative to the first step's start, plus the run's device and workers.
    """
    with tempfile.TemporaryDirectory(prefix="neuropbr-bench-") as tmp:
        _, device, datamodule, trainer = _build_trainer(job["overrides"], tmp)
        steps: list[dict[str, float]] = []
        ends: list[float] = []
        step = trainer.train_step

        def timed_step(*args: Any, **kwargs: Any) -> dict[str, Any]:
            # CPU time and page faults too: they tell memory effects (faults, kernel time) from
            # a neighbour taking the cores (wall time up, CPU time not).
            workers = _children_cpu_s()
            usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            logs = step(*args, **kwargs)
            synchronize(device)
            end, after = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            workers_after = _children_cpu_s()
            steps.append(
                {
                    "epoch": trainer.epoch,
                    "start": start,
                    "seconds": end - start,
                    "user_s": after.ru_utime - usage.ru_utime,
                    "sys_s": after.ru_stime - usage.ru_stime,
                    "minor_faults": after.ru_minflt - usage.ru_minflt,
                    # Loader workers alive through the step (a worker that exits mid-step is missed).
                    "workers_cpu_s": sum(t - workers.get(pid, 0.0) for pid, t in workers_after.items()),
                }
            )
            ends.append(end)
            return logs

        trainer.train_step = timed_step  # type: ignore[method-assign]
        trainer.fit()
        origin = steps[0]["start"] if steps else 0.0
        boundaries = [
            steps[i]["start"] - ends[i - 1]
            for i in range(1, len(steps))
            if steps[i]["epoch"] != steps[i - 1]["epoch"]
        ]
        return {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "num_workers": datamodule.num_workers,
            "val_workers": trainer.val_loader.num_workers if trainer.val_loader is not None else 0,
            "steps": [{**s, "start": s["start"] - origin} for s in steps],
            "boundaries": boundaries,
        }


@torch.inference_mode()
def _inference_ms(trainer: Any, cfg: DictConfig, device: torch.device, runs: int) -> dict[str, float]:
    """Generator forward latency (eval mode, no grad, the training precision), batch 1."""
    model = trainer.generator.eval()
    resolution, num_views = int(cfg.data.resolution), int(cfg.data.num_views)
    views = torch.rand(1, num_views, 3, resolution, resolution, device=device)  # (1, V, 3, H, W)
    times = []
    for index in range(runs + 1):  # the first is a warm-up
        synchronize(device)
        start = time.perf_counter()
        with trainer.precision.autocast():
            model(views)
        synchronize(device)
        if index:
            times.append((time.perf_counter() - start) * 1e3)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": len(times)}


def run_loading(job: dict[str, Any]) -> dict[str, Any]:
    """Samples/s of the training loader of several loading cases, interleaved in this process.

    Args:
        job: ``{"cases": [{"name", "overrides", "batches", "repeats"}, ...]}``.

    Returns:
        ``{"cases": {name: {"samples_per_s": [per repeat], "setup_s": [...]}}}``.
    """
    results: dict[str, dict[str, list[float]]] = {
        c["name"]: {"samples_per_s": [], "setup_s": []} for c in job["cases"]
    }
    repeats = max(c["repeats"] for c in job["cases"])
    with tempfile.TemporaryDirectory(prefix="neuropbr-bench-") as tmp:
        for repeat in range(repeats):
            for case in job["cases"]:
                if repeat >= case["repeats"]:
                    continue
                cfg = compose_training_config(case["overrides"], tmp)
                start = time.perf_counter()
                datamodule = build_datamodule(cfg)
                datamodule.setup()  # the decoded cache is built here, before timing
                results[case["name"]]["setup_s"].append(time.perf_counter() - start)
                results[case["name"]]["samples_per_s"].append(_loader_rate(datamodule, case["batches"]))
    return {"cases": results}


def _loader_rate(datamodule: Any, batches: int) -> float:
    """Samples/s of ``batches`` training batches after the first (which starts the workers)."""
    loader = datamodule.train_dataloader()
    iterator = epochs(loader)
    next(iterator)
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        samples += next(iterator)["views"].shape[0]
    rate = samples / (time.perf_counter() - start)
    del iterator, loader  # stop the workers before the next case starts its own
    gc.collect()
    return rate


def run_environment_probe(job: dict[str, Any]) -> dict[str, Any]:
    """The device's achieved dense-matmul TFLOP/s (fp32 on CPU, bf16 on CUDA), as a reference peak."""
    device = resolve_device(job["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"matmul_tflops": matmul_tflops(device, dtype), "matmul_dtype": str(dtype).removeprefix("torch.")}


def run_tiling(job: dict[str, Any]) -> dict[str, Any]:
    """Time and measure ``predict_tiled`` on one square photo with an untrained generator.

    Args:
        job: ``{"overrides": [...], "side": photo side in px, "tile_size": None (automatic) or
            "training" (the training resolution), "tile_batch_size"}``.

    Returns:
        The tile size and why, the tile count, seconds, megapixels and the peak memory it added
        (RSS high-water mark on CPU, ``max_memory_allocated`` on CUDA).
    """
    from neuropbr.build import build_generator
    from neuropbr.inference import LoadedGenerator, auto_tile_size, predict_tiled, tile_starts

    with tempfile.TemporaryDirectory(prefix="neuropbr-bench-") as tmp:
        cfg = compose_training_config(job["overrides"], tmp)
    if "pretrained" in cfg.encoder:
        cfg.encoder.pretrained = False  # timing needs no trained weights (and no download)
    device = resolve_device(choice(cfg.trainer.device))
    generator = build_generator(cfg).to(device).eval().requires_grad_(False)
    model = LoadedGenerator(generator, cfg, Path("untrained"), "generator", 0, 0, None)
    side, batch = int(job["side"]), int(job["tile_batch_size"])
    views = torch.rand(model.num_views, 3, side, side, generator=torch.Generator().manual_seed(0))
    tile, why = auto_tile_size(model, side, side, batch)
    if job.get("tile_size") == "training":
        tile, why = model.resolution, "the training resolution (the former default)"
    count = len(tile_starts(side, tile, 0.25, model.size_multiple)) ** 2
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_memory_bytes(device) if device.type == "cuda" else _current_rss_bytes()
    synchronize(device)
    start = time.perf_counter()
    predict_tiled(model, views, tile=tile, overlap=0.25, batch_size=batch, progress=False)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "side": side,
        "megapixels": side * side / 1e6,
        "training_resolution": model.resolution,
        "tile_size": tile,
        "auto": job.get("tile_size") is None,
        "why": why,
        "tiles": count,
        "tile_batch_size": batch,
        "seconds": seconds,
        "added_peak_bytes": max(0, peak_memory_bytes(device) - before),
        "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "rss",
    }


def _current_rss_bytes() -> int:
    """Resident set size now (the baseline the high-water mark is compared with)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # kB
    return peak_memory_bytes(torch.device("cpu"))


_KINDS = {
    "train": run_train,
    "epochs": run_epochs,
    "loading": run_loading,
    "probe": run_environment_probe,
    "tiling": run_tiling,
}


def main(argv: list[str] | None = None) -> None:
    """``python -m neuropbr.benchmarks.worker JOB.json RESULT.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m neuropbr.benchmarks.worker JOB.json RESULT.json")
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    job = json.loads(Path(args[0]).read_text())
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    if job["kind"] not in _KINDS:
        raise ValueError(f"job kind={job['kind']!r}; choose one of {sorted(_KINDS)}")
    result = _KINDS[job["kind"]](job)
    Path(args[1]).write_text(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
    main()
