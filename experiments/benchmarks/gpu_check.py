"""One-shot GPU check that fits a short device lease (~5 minutes on an H100/H200).

    python experiments/benchmarks/gpu_check.py --out DIR            # on the GPU machine
    python experiments/benchmarks/gpu_check.py --out DIR --smoke    # tiny, on CPU: checks the script

What only a GPU shows, in one process, each item saved to ``DIR/gpu_check.json`` as soon as it
is measured (a run cut short keeps what it measured):

1. the device's achieved bf16 matmul TFLOP/s (the reference peak);
2. which ``F.scaled_dot_product_attention`` kernels the fusion ViT gets (flash / efficient /
   math) at the token counts of 1024 and 2048 px, and their forward + backward times;
3. training steps of the default preset (ResNet50 + 4-block ViT + 6-layer PatchGAN, GAN on,
   batch 2) at 1024 px in bf16, fp16 (GradScaler) and fp32 (TF32 off: PyTorch's default), and at
   2048 px in bf16 with and without activation checkpointing: samples/s, peak allocated memory,
   model TFLOP/s and the share of the measured matmul peak; fast_iteration at 256 px;
4. inference latency (batch 1, eval, bf16) at 1024 and 2048 px;
5. ``trainer.compile=true`` at 1024 px bf16: compile time and steady samples/s (last: slowest).

Steps run through the real ``Trainer.train_step`` on one random batch kept on the GPU (views in
[0, 1], unit normals), so loading is excluded: ``neuropbr.bench`` measures the loader.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from neuropbr.benchmarks.environment import environment, matmul_tflops
from neuropbr.benchmarks.worker import compose_training_config, model_flops
from neuropbr.build import build_datamodule
from neuropbr.models.contracts import PBR_CHANNELS
from neuropbr.train import build_trainer
from neuropbr.training.distributed import DistInfo
from neuropbr.training.tracking import NullTracker

log = logging.getLogger("gpu_check")
_GIB = 1024**3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batch(batch: int, views: int, resolution: int, out: int, device: torch.device) -> dict[str, Any]:
    """A batch in the data contract's ranges: views and colour maps in [0, 1], unit normals (z > 0)."""
    maps: dict[str, torch.Tensor] = {}
    for name, channels in PBR_CHANNELS.items():
        if name == "normal":
            normal = torch.randn(batch, 3, out, out, device=device) * 0.3
            normal[:, 2] = normal[:, 2].abs() + 1.0
            maps[name] = normal / normal.square().sum(1, keepdim=True).sqrt()  # (B, 3, H', W')
        else:
            maps[name] = torch.rand(batch, channels, out, out, device=device)  # (B, C, H', W')
    return {"views": torch.rand(batch, views, 3, resolution, resolution, device=device), "maps": maps}


def train_case(
    name: str, overrides: list[str], steps: int, warmup: int, peak_tflops: float | None, device: torch.device
) -> dict[str, Any]:
    """Time ``Trainer.train_step`` of one configuration on a fixed device-resident batch."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        cfg = compose_training_config(
            [
                "data=synthetic",
                "data.num_samples=8",
                "data.num_workers=0",
                "data.batch_size=2",
                "tracking=none",
                f"trainer.device={device.type}",
                "trainer.progress_bar=false",
                "trainer.gan_start_epoch=0",
                "loss.weights.perceptual=0",  # VGG weights need the hub: offline here
                *overrides,
            ],
            tmp,
        )
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        trainer = build_trainer(cfg, datamodule, device, DistInfo(), NullTracker())
        gan_on = trainer.discriminator is not None and trainer.loss.uses_gan
        resolution = int(cfg.data.resolution)
        out = resolution * trainer.generator.decoder.sr_scale
        batch = random_batch(int(cfg.data.batch_size), int(cfg.data.num_views), resolution, out, device)
        trainer.generator.train()
        if trainer.discriminator is not None:
            trainer.discriminator.train()
        if name.startswith("inference:"):
            result = {
                "name": name,
                "overrides": overrides,
                "precision": trainer.precision.name,
                "resolution": resolution,
                "inference_ms": inference_ms(trainer, cfg, device),
            }
            del trainer, batch
            return result
        start = time.perf_counter()
        for _ in range(warmup):
            logs = trainer.train_step(batch, gan_on, with_metrics=False)
        _sync(device)
        warmup_s = time.perf_counter() - start
        step_s = []
        for _ in range(steps):
            _sync(device)
            start = time.perf_counter()
            logs = trainer.train_step(batch, gan_on, with_metrics=False)
            _sync(device)
            step_s.append(time.perf_counter() - start)
        median = statistics.median(step_s)
        flops = model_flops(cfg, gan_on)
        achieved = flops["train_step_per_sample"] * batch["views"].shape[0] / median / 1e12
        result: dict[str, Any] = {
            "name": name,
            "overrides": overrides,
            "precision": trainer.precision.name,
            "resolution": resolution,
            "batch_size": batch["views"].shape[0],
            "gan_on": gan_on,
            "warmup_steps": warmup,
            "warmup_s": warmup_s,
            "step_s": step_s,
            "median_step_s": median,
            "samples_per_s": batch["views"].shape[0] / median,
            "model_tflops_per_s": achieved,
            "share_of_matmul_peak": achieved / peak_tflops if peak_tflops else None,
            "peak_allocated_gib": torch.cuda.max_memory_allocated(device) / _GIB
            if device.type == "cuda"
            else None,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / _GIB
            if device.type == "cuda"
            else None,
            "params_generator": sum(p.numel() for p in trainer.generator.parameters()),
            "loss_finite": all(math.isfinite(float(v)) for v in logs.values()),
            "flops": flops,
        }
        del trainer, batch
    return result


@torch.inference_mode()
def inference_ms(trainer: Any, cfg: Any, device: torch.device, runs: int = 10) -> dict[str, float]:
    """Generator forward latency, batch 1, eval mode, the training precision."""
    model = trainer.generator.eval()
    resolution, num_views = int(cfg.data.resolution), int(cfg.data.num_views)
    views = torch.rand(1, num_views, 3, resolution, resolution, device=device)  # (1, V, 3, H, W)
    times = []
    for index in range(runs + 2):  # two warm-ups
        _sync(device)
        start = time.perf_counter()
        with trainer.precision.autocast():
            model(views)
        _sync(device)
        if index >= 2:
            times.append((time.perf_counter() - start) * 1e3)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def sdpa_check(tokens: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Which SDPA kernels run the fusion's attention shape (batch 2, 32 heads of 64, dropout
    0.1 as in training), and each one's forward + backward time."""
    shape = (2, 32, tokens, 64)  # (B, heads, V * h * w, head_dim) of the default ViT
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    results: dict[str, Any] = {"tokens": tokens, "shape": list(shape), "dtype": str(dtype)}
    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }
    for label, backend in backends.items():
        if label == "math" and tokens > 4096:
            results[label] = "skipped (B x heads x N^2 scores)"
            continue
        try:
            with sdpa_kernel([backend]):
                times = []
                for index in range(4):
                    _sync(device)
                    start = time.perf_counter()
                    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
                    out.sum().backward()
                    _sync(device)
                    if index:
                        times.append((time.perf_counter() - start) * 1e3)
            results[label] = {"fwd_bwd_ms": statistics.median(times)}
        except RuntimeError as err:  # "No available kernel" for this shape / dtype / dropout
            results[label] = f"unavailable: {str(err).splitlines()[0][:160]}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU: check the script runs")
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="skip cases once this much time has passed"
    )
    parser.add_argument(
        "--compile-by-s", type=float, default=260.0, help="start the compile case only before this time"
    )
    parser.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    report: dict[str, Any] = {"environment": environment(device), "sdpa": [], "train": [], "errors": []}
    path = args.out / "gpu_check.json"

    def save() -> None:
        report["elapsed_s"] = time.perf_counter() - started
        path.write_text(json.dumps(report, indent=1, default=str))

    dtype = torch.float32 if args.smoke else torch.bfloat16
    report["matmul_tflops"] = peak = matmul_tflops(device, dtype)
    log.info("matmul %s: %.1f TFLOP/s", dtype, peak)
    save()

    if not args.smoke and not args.only:
        for tokens in (3 * 32 * 32, 3 * 64 * 64):  # default ViT at 1024 and 2048 px (ResNet50, /32)
            try:
                report["sdpa"].append(sdpa_check(tokens, device, torch.bfloat16))
                log.info("sdpa %s", report["sdpa"][-1])
            except Exception as err:  # record and go on: the lease is short
                report["errors"].append({"item": f"sdpa/{tokens}", "error": repr(err)})
            save()

    tiny = ["experiment=smoke"] if args.smoke else []
    big, huge = (64, 128) if args.smoke else (1024, 2048)
    ckpt_all = [
        "encoder.grad_checkpointing=true",
        "fusion.grad_checkpointing=true",
        "decoder.grad_checkpointing=true",
    ]
    # (name, overrides, timed steps, warm-up steps), most important first.
    cases: list[tuple[str, list[str], int, int]] = [
        ("default/1024/bf16", [*tiny, f"data.resolution={big}", "trainer.precision=bf16"], 10, 3),
        ("default/1024/fp16", [*tiny, f"data.resolution={big}", "trainer.precision=fp16"], 10, 3),
        ("default/1024/fp32", [*tiny, f"data.resolution={big}", "trainer.precision=fp32"], 5, 2),
        (
            "default/2048/bf16/checkpointing",
            [*tiny, f"data.resolution={huge}", "trainer.precision=bf16", *ckpt_all],
            5,
            2,
        ),
        (
            "default/2048/bf16/ckpt_encoder_fusion",
            [*tiny, f"data.resolution={huge}", "trainer.precision=bf16", *ckpt_all[:2]],
            5,
            2,
        ),
        ("default/2048/bf16", [*tiny, f"data.resolution={huge}", "trainer.precision=bf16"], 5, 2),
        (
            "fast_iteration/256/bf16",
            [
                "experiment=smoke" if args.smoke else "experiment=fast_iteration",
                "data.resolution=256" if not args.smoke else "data.resolution=32",
                "trainer.precision=bf16",
            ],
            20,
            3,
        ),
        ("inference:default/1024/bf16", [*tiny, f"data.resolution={big}", "trainer.precision=bf16"], 1, 1),
        ("inference:default/2048/bf16", [*tiny, f"data.resolution={huge}", "trainer.precision=bf16"], 1, 1),
        (
            "default/1024/bf16/compile",
            [*tiny, f"data.resolution={big}", "trainer.precision=bf16", "trainer.compile=true"],
            10,
            3,
        ),
    ]
    if args.only:
        cases = [c for c in cases if any(key in c[0] for key in args.only)]
    for name, overrides, steps, warmup in cases:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s or ("compile" in name and elapsed > args.compile_by_s):
            report["errors"].append({"item": name, "error": f"skipped: {elapsed:.0f} s > --budget-s"})
            continue
        log.info("%s ...", name)
        try:
            result = train_case(name, overrides, steps, warmup, peak, device)
            if name.startswith("inference:"):
                report.setdefault("inference", []).append(result)
                log.info("%s: %s ms", name, result["inference_ms"])
                save()
                continue
            report["train"].append(result)
            log.info(
                "%s: %.3f samples/s, %.1f TFLOP/s, peak %s GiB, warm-up %.1f s",
                name,
                result["samples_per_s"],
                result["model_tflops_per_s"],
                result["peak_allocated_gib"],
                result["warmup_s"],
            )
        except torch.cuda.OutOfMemoryError as err:
            report["errors"].append({"item": name, "error": f"out of memory: {str(err).splitlines()[0]}"})
            log.info("%s: out of memory", name)
        except Exception as err:  # record and go on: the lease is short
            report["errors"].append(
                {"item": name, "error": repr(err), "traceback": traceback.format_exc()[-2000:]}
            )
            log.info("%s failed: %r", name, err)
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
        save()

    log.info("%-34s %9s %9s %9s %8s", "case", "samples/s", "TFLOP/s", "peak GiB", "warmup s")
    for r in report["train"]:
        log.info(
            "%-34s %9.3f %9.1f %9s %8.1f",
            r["name"],
            r["samples_per_s"],
            r["model_tflops_per_s"],
            f"{r['peak_allocated_gib']:.2f}" if r["peak_allocated_gib"] is not None else "-",
            r["warmup_s"],
        )
    for e in report["errors"]:
        log.info("error %s: %s", e["item"], e["error"][:200])
    save()


if __name__ == "__main__":
    main()
