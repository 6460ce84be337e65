"""Library equivalence checks: our schedules and PSNR against torch/kornia, and a fixed-seed
training run before/after the library replacements.

Usage:
    python experiments/library_equivalence/compare.py schedules
    python experiments/library_equivalence/compare.py psnr
    python experiments/library_equivalence/compare.py train --before DIR --after DIR [--preset ...]

``train`` runs ``python -m neuropbr.train`` once from each source tree (e.g. a ``git archive`` of
the commit before the change and one after it), with the same seed and overrides, then compares
the logged losses and every tensor of the final checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from kornia.metrics import psnr as kornia_psnr
from torch.optim import SGD, Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

from neuropbr import metrics
from neuropbr.training import schedules

log = logging.getLogger("library_equivalence")

#: Fixed-seed runs: the tiny preset with EMA and a step-warmed-up cosine, and quick_test cut short.
PRESETS: dict[str, list[str]] = {
    "smoke": [
        "experiment=smoke",
        "trainer.ema_decay=0.9",
        "scheduler=cosine",
        "scheduler.warmup_steps=3",
        "trainer.max_epochs=2",
    ],
    "quick_test": [
        "experiment=quick_test",
        "data.resolution=32",
        "data.num_samples=12",
        "data.num_workers=0",
        "trainer.max_epochs=2",
        "trainer.gan_start_epoch=1",
        "trainer.ema_decay=0.99",
        "trainer.device=cpu",
        "trainer.precision=fp32",
        "trainer.progress_bar=false",
        "trainer.log_every_n_steps=1",
    ],
}


def _optimizer(lr: float = 1.0) -> Optimizer:
    return SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _epoch_lrs(sched: schedules.EpochScheduler | LRScheduler, epochs: int) -> list[float]:
    out = []
    for _ in range(epochs):
        out.append(sched.get_last_lr()[0])
        sched.step()
    return out


def _max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def compare_schedules() -> None:
    """Our epoch schedules next to torch's chains of the same shape; logs the differences."""
    cases: list[tuple[str, Callable[[Optimizer], object], Callable[[Optimizer], LRScheduler], int]] = [
        (
            "cosine warmup_epochs=2 max_epochs=12 min_lr=1e-3",
            lambda o: schedules.cosine(o, max_epochs=12, warmup_epochs=2, min_lr=1e-3),
            lambda o: SequentialLR(
                o,
                [LinearLR(o, 0.1, 1.0, total_iters=2), CosineAnnealingLR(o, T_max=10, eta_min=1e-3)],
                milestones=[2],
            ),
            12,
        ),
        (
            "cosine, 3 epochs past max_epochs=12",
            lambda o: schedules.cosine(o, max_epochs=12, warmup_epochs=2, min_lr=1e-3),
            lambda o: SequentialLR(
                o,
                [LinearLR(o, 0.1, 1.0, total_iters=2), CosineAnnealingLR(o, T_max=10, eta_min=1e-3)],
                milestones=[2],
            ),
            15,
        ),
        (
            "step step_size=3 gamma=0.1 warmup_epochs=2",
            lambda o: schedules.step(o, max_epochs=12, step_size=3, gamma=0.1, warmup_epochs=2),
            lambda o: SequentialLR(
                o, [LinearLR(o, 0.1, 1.0, total_iters=2), StepLR(o, step_size=3, gamma=0.1)], milestones=[2]
            ),
            12,
        ),
    ]
    for name, ours_factory, torch_factory, epochs in cases:
        ours, theirs = (
            _epoch_lrs(ours_factory(_optimizer()), epochs),
            _epoch_lrs(torch_factory(_optimizer()), epochs),
        )
        log.info(
            "%s: max |ours - torch| = %.3g (last lr ours %.6g, torch %.6g)",
            name,
            _max_diff(ours, theirs),
            ours[-1],
            theirs[-1],
        )

    # Resume a 4-epoch cosine after 2 epochs into an 8-epoch run (trainer.max_epochs raised).
    short = schedules.cosine(_optimizer(), max_epochs=4, warmup_epochs=0, min_lr=0.0)
    _epoch_lrs(short, 2)
    longer = schedules.cosine(_optimizer(), max_epochs=8, warmup_epochs=0, min_lr=0.0)
    longer.load_state_dict(short.state_dict())
    opt = _optimizer()
    torch_short = CosineAnnealingLR(opt, T_max=4)
    _epoch_lrs(torch_short, 2)
    opt2 = _optimizer()
    torch_longer = CosineAnnealingLR(opt2, T_max=8)
    torch_longer.load_state_dict(torch_short.state_dict())
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]  # what the optimizer's state restores
    want = 0.5 * (1 + math.cos(math.pi * 2 / 8))
    log.info(
        "resume 4 -> 8 epochs at epoch 2: new schedule %.6f; ours %.6f; torch %.6f (its state restores T_max=%d)",
        want,
        longer.get_last_lr()[0],
        torch_longer.get_last_lr()[0],
        torch_longer.T_max,
    )
    torch_next = _epoch_lrs(torch_longer, 3)[1:]
    ours_next = _epoch_lrs(longer, 3)[1:]
    log.info(
        "  next two epochs: ours %s, torch %s",
        [f"{x:.6f}" for x in ours_next],
        [f"{x:.6f}" for x in torch_next],
    )

    # Plateau: torch's default relative threshold 1e-4 and no warm-up awareness.
    readings = [1.0, 0.99995, 0.99990, 0.99985, 0.99980, 0.99975]
    ours_plateau = schedules.plateau(_optimizer(), max_epochs=10, patience=1, factor=0.5, min_lr=0.0)
    torch_default = ReduceLROnPlateau(_optimizer(), mode="min", factor=0.5, patience=1)
    torch_zero = ReduceLROnPlateau(_optimizer(), mode="min", factor=0.5, patience=1, threshold=0.0)
    lrs: dict[str, list[float]] = {"ours": [], "torch threshold=1e-4": [], "torch threshold=0": []}
    for value in readings:
        for key, sched in (
            ("ours", ours_plateau),
            ("torch threshold=1e-4", torch_default),
            ("torch threshold=0", torch_zero),
        ):
            lrs[key].append(sched.get_last_lr()[0])
            sched.step(value)
    log.info("plateau, slowly improving metric: %s", {k: v for k, v in lrs.items()})


def compare_psnr() -> None:
    """Our per-sample PSNR next to kornia's per-image and batch values."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(4, 3, 32, 32, generator=gen)
    pred = (target + 0.05 * torch.randn(4, 3, 32, 32, generator=gen)).clamp(0, 1)
    pred[3] = target[3]  # one perfect sample
    ours = metrics.psnr(pred, target)
    per_image = torch.stack([kornia_psnr(p, t, 1.0) for p, t in zip(pred, target)])
    finite = torch.isfinite(per_image)
    log.info("per sample: ours %s; kornia per image %s", ours.tolist(), per_image.tolist())
    log.info(
        "max |ours - kornia| on imperfect samples: %.3g dB",
        (ours[finite] - per_image[finite]).abs().max().item(),
    )
    log.info(
        "batch: kornia pooled %.4f dB; ours of the mean MSE %.4f dB; mean of ours per sample %.4f dB",
        kornia_psnr(pred, target, 1.0).item(),
        metrics.psnr_from_mse(metrics.mse(pred, target).mean()).item(),
        ours.mean().item(),
    )


_LOSS_LINE = re.compile(r"step (\d+) \(epoch \d+\): (.*?), g_lr")


def _train(
    tree: Path, overrides: list[str], out: Path
) -> tuple[dict[int, dict[str, float]], dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "neuropbr.train",
        *overrides,
        "tracking=none",
        "seed=42",
        f"hydra.run.dir={out}",
    ]
    log.info("%s: %s", tree, " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    losses: dict[int, dict[str, float]] = {}
    for line in (out / "train.log").read_text().splitlines():
        match = _LOSS_LINE.search(line)
        if match:
            pairs = (item.rsplit(" ", 1) for item in match.group(2).split(", "))
            losses[int(match.group(1))] = {k: float(v) for k, v in pairs}
    return losses, torch.load(out / "checkpoints" / "latest.pth", map_location="cpu", weights_only=False)


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    items = (
        state.items()
        if isinstance(state, dict)
        else enumerate(state)
        if isinstance(state, list | tuple)
        else ()
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def compare_train(before: Path, after: Path, preset: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        losses_a, ckpt_a = _train(before, PRESETS[preset], Path(tmp) / "before")
        losses_b, ckpt_b = _train(after, PRESETS[preset], Path(tmp) / "after")
    assert losses_a.keys() == losses_b.keys(), "different logged steps"
    for step_index in sorted(losses_a):
        log.info("step %d: before %s", step_index, losses_a[step_index])
        log.info("step %d: after  %s", step_index, losses_b[step_index])
    logged = max(abs(losses_a[s][k] - losses_b[s][k]) for s in losses_a for k in losses_a[s])
    ta, tb = _tensors(ckpt_a), _tensors(ckpt_b)
    assert ta.keys() == tb.keys(), f"checkpoint keys differ: {sorted(ta.keys() ^ tb.keys())[:5]}"
    diffs = {k: (ta[k].double() - tb[k].double()).abs().max().item() for k in ta if ta[k].numel()}
    worst = max(diffs, key=diffs.__getitem__)
    ema = [v for k, v in diffs.items() if k.startswith("/ema/")]
    log.info(
        "%s: %d logged steps, max |logged loss diff| = %.3g (4 decimals logged)",
        preset,
        len(losses_a),
        logged,
    )
    log.info(
        "%s: %d checkpoint tensors, max |diff| = %.3g (%s); ema tensors: %d, max |diff| = %.3g; bitwise equal: %s",
        preset,
        len(diffs),
        diffs[worst],
        worst,
        len(ema),
        max(ema, default=float("nan")),
        all(torch.equal(ta[k], tb[k]) for k in ta),
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The schedules are stepped without an optimizer step on purpose (only their lrs are compared).
    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step()`")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("schedules")
    sub.add_parser("psnr")
    train = sub.add_parser("train")
    train.add_argument("--before", type=Path, required=True, help="source tree of the commit before")
    train.add_argument("--after", type=Path, required=True, help="source tree of the commit after")
    train.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    args = parser.parse_args()
    if args.command == "schedules":
        compare_schedules()
    elif args.command == "psnr":
        compare_psnr()
    else:
        compare_train(args.before, args.after, args.preset)


if __name__ == "__main__":
    main()
