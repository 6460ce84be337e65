"""Before/after of each code-level optimisation, measured side by side in one run.

    python experiments/benchmarks/before_after.py speed --pairs 8            # step time, one process
    python experiments/benchmarks/before_after.py memory --repeats 3         # peak RSS, fresh processes

The package holds only the new implementations; this script keeps the replaced ones verbatim
(``BEFORE``) and patches one in at a time. ``speed`` builds the ``fast_iteration`` trainer (as
shipped, GAN on, 256 px, batch 2, one real synthetic batch reused so loading is out of the
picture) and alternates steps with and without each patch in one process (A B A B ...), so the
machine's drift hits both alike; it reports the median of the paired step-time ratios.
``memory`` runs each variant in fresh processes, interleaved, and reports the peak RSS (VmHWM)
after a few steps.

``free_gradients`` swaps in an ``apply_gradients`` that keeps the gradients until the next step's
first batch clears them (``Networks.zero_grad``). The original code cleared them just before each
backward (G's lived through the next G forward and D step), which no longer maps onto one
function: this case now measures D's gradients held through the G step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from neuropbr.benchmarks.environment import environment, load_average, peak_memory_bytes
from neuropbr.benchmarks.worker import compose_training_config
from neuropbr.build import build_datamodule
from neuropbr.models.decoders.unet_heads import UNetHeadsDecoder
from neuropbr.train import build_trainer
from neuropbr.training import gan_step
from neuropbr.training import trainer as trainer_module
from neuropbr.training.distributed import DistInfo
from neuropbr.training.nonfinite import NonFiniteGuard
from neuropbr.training.tracking import NullTracker
from neuropbr.training.trainer import Trainer
from neuropbr.utils.seeding import seed_everything

_GIB = 1024**3


# --- the replaced implementations, verbatim --------------------------------------------------------


def _heads_one_by_one(self: UNetHeadsDecoder, x: Tensor) -> dict[str, Tensor]:
    return {name: head(x) for name, head in self.heads.items()}


def _apply_gradients_keeping_them(
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    module: Any,
    clip: float | None,
    loss: Tensor,
    guard: NonFiniteGuard,
) -> bool:
    # apply_gradients without its final zero_grad: the gradients stay allocated until the next
    # group's first batch clears them (Networks.zero_grad).
    norm = None
    if clip:
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip, foreach=True)
    finite = guard.finite(loss, None if scaler.is_enabled() else norm)
    if finite or scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    return finite


#: name -> (what changed, [(object, attribute, old implementation), ...])
BEFORE: dict[str, tuple[str, list[tuple[Any, str, Callable[..., Any]]]]] = {
    "heads": (
        "4 head convs -> one conv of the stacked weights",
        [(UNetHeadsDecoder, "_run_heads", _heads_one_by_one)],
    ),
    "free_gradients": (
        "gradients freed right after the optimizer step",
        # Patched where it is looked up: the G step (trainer) and the D step (gan_step).
        [(module, "apply_gradients", _apply_gradients_keeping_them) for module in (trainer_module, gan_step)],
    ),
}


@contextlib.contextmanager
def patched(names: list[str]) -> Iterator[None]:
    """Swap the old implementations of ``names`` in for the duration of the block."""
    saved = []
    for name in names:
        for owner, attribute, old in BEFORE[name][1]:
            saved.append((owner, attribute, getattr(owner, attribute)))
            setattr(owner, attribute, old)
    try:
        yield
    finally:
        for owner, attribute, new in reversed(saved):
            setattr(owner, attribute, new)


def build(gan: bool, extra: list[str]) -> tuple[Trainer, dict[str, Any], bool]:
    """The fast_iteration trainer (as shipped) and one real batch."""
    overrides = [
        "experiment=fast_iteration",
        "data=synthetic",
        "data.num_samples=16",
        "data.num_workers=0",
        "tracking=none",
        "trainer.device=cpu",
        "trainer.gan_start_epoch=0" if gan else "discriminator=none",
        *extra,
    ]
    cfg = compose_training_config(overrides, tempfile.mkdtemp(prefix="before-after-"))
    seed_everything(cfg.seed)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    trainer = build_trainer(cfg, datamodule, torch.device("cpu"), DistInfo(), NullTracker())
    batch = next(iter(trainer.train_loader))
    return trainer, batch, gan and trainer.discriminator is not None


def timed_step(trainer: Trainer, batch: dict[str, Any], gan_on: bool) -> float:
    start = time.perf_counter()
    trainer.train_step(batch, gan_on)
    return time.perf_counter() - start


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate steps with each old implementation and with none, in this process."""
    trainer, batch, gan_on = build(args.gan, [])
    for _ in range(2):  # warm-up
        timed_step(trainer, batch, gan_on)
    rows = {}
    variants = [[name] for name in args.names if name != "free_gradients"]
    if len(variants) > 1:
        variants.append([name for name in args.names if name != "free_gradients"])
    for names in variants:
        before, after = [], []
        for _ in range(args.pairs):
            with patched(names):
                before.append(timed_step(trainer, batch, gan_on))
            after.append(timed_step(trainer, batch, gan_on))
        ratios = [b / a for b, a in zip(before, after)]
        key = "+".join(names)
        rows[key] = {
            "change": "; ".join(BEFORE[n][0] for n in names),
            "before_s": statistics.median(before),
            "after_s": statistics.median(after),
            "speedup_median_paired": statistics.median(ratios),
            "speedup_range": [min(ratios), max(ratios)],
            "pairs": args.pairs,
        }
        print(f"{key}: {rows[key]}", flush=True)  # noqa: T201 -- progress of a long script
    return rows


def memory_child(args: argparse.Namespace) -> None:
    """One fresh process: a few steps with ``args.names`` patched; prints its peak RSS."""
    with patched(args.names):
        trainer, batch, gan_on = build(args.gan, [])
        seconds = [timed_step(trainer, batch, gan_on) for _ in range(args.steps)]
    print(json.dumps({"peak_rss_gib": peak_memory_bytes(torch.device("cpu")) / _GIB, "step_s": seconds}))  # noqa: T201


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS with and without each old implementation, fresh processes, interleaved."""
    variants = {"after (all new)": [], **{f"before: {BEFORE[n][0]}": [n] for n in args.names}}
    results: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(args.repeats):
        for key, names in variants.items():
            command = [
                sys.executable,
                __file__,
                "memory-child",
                "--steps",
                str(args.steps),
                "--names",
                *names,
            ]
            command += ["--gan"] if args.gan else []
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[key].append(json.loads(out.strip().splitlines()[-1])["peak_rss_gib"])
            print(f"{key}: {results[key][-1]:.2f} GiB", flush=True)  # noqa: T201
    return {key: {"median": statistics.median(v), "min": min(v), "max": max(v)} for key, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "memory", "memory-child"])
    parser.add_argument("--names", nargs="*", default=list(BEFORE), choices=list(BEFORE))
    parser.add_argument("--gan", action="store_true", help="GAN on (trainer.gan_start_epoch=0)")
    parser.add_argument("--pairs", type=int, default=8, help="speed: A/B step pairs per change")
    parser.add_argument("--repeats", type=int, default=3, help="memory: processes per variant")
    parser.add_argument("--steps", type=int, default=4, help="memory: steps per process")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()
    if args.mode == "memory-child":
        memory_child(args)
        return
    started = load_average()
    result = speed(args) if args.mode == "speed" else memory(args)
    report = {
        "mode": args.mode,
        "gan": args.gan,
        "environment": environment(torch.device("cpu")),
        "load_average_end": load_average(),
        "load_average_start": started,
        "result": result,
    }
    print(json.dumps(report["result"], indent=1))  # noqa: T201
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
