"""Our ``fast_iteration`` against the original stack's, side by side on one machine, runs interleaved.

::

    python experiments/benchmarks/side_by_side.py --original /path/to/NeuroPBR/training \\
        --original-pythonpath /path/to/einops-dir --runs 3 --gan on,off --out side_by_side_out
    python experiments/benchmarks/side_by_side.py --original ... --smoke      # the plumbing, 4 runs, ~5-9 min

The original imports einops, which this project does not need: install it apart
(``pip install --target /path/to/einops-dir einops``) and name that folder with ``--original-pythonpath``.

``--original`` is the ``training/`` folder of the original repository (NeuroPBR by josephHelfenbein,
commit ecb21be07f866600ea370f7f67bbc7988b6b2ea3), used as it is: nothing is copied from it and none
of its files is edited. Its Python modules are imported by a wrapper (``--child original``, this
file run in a fresh process) that applies, from outside, what the original needs to run here:

- its ResNet encoder always asks torchvision for ImageNet weights, which cannot be downloaded
  offline: the torchvision ResNet constructors are wrapped to force ``weights=None`` (random init,
  as ours);
- its ``fast_iteration`` preset sets ``encoder_stride=2`` after ``TrainConfig.__post_init__``
  derived ``decoder_sr_scale`` from the stride, so the decoder outputs 128 px for 256 px targets:
  ``decoder_sr_scale=2`` is set again;
- its GAN starts at epoch 5 (``gan_start_epoch``): 0 for the GAN-on case; GAN off is
  ``use_gan=False`` (no discriminator built), as ours is ``discriminator=none``;
- ``image_size``/``output_size`` are set to ``--resolution`` (its default is 2048 px), the batch size
  to 2 and the device to the CPU, as its command line would; and its ``val_ratio`` is chosen so
  that it trains on as many samples per epoch as our split by material leaves for training.

Everything else is each stack's default: the original's preset (its loader workers, TensorBoard
logging, validation every 2 epochs, checkpoints) and ours as shipped (``experiment=fast_iteration``
with ``data=folder`` and MLflow tracking). Both read one folder dataset written by
``python -m neuropbr.synth`` (the guide's ``input/clean/<sample>/{0,1,2}.png``,
``input/render_metadata.json`` and ``output/<material>/{albedo,roughness,metallic,normal}.png``).

Runs alternate original, ours, original, ours, ... (per GAN case, ``--runs`` of each), each in a
fresh process, after a 2048^2 fp32 matmul probe (GFLOP/s, default threads, its own process) that
shows how fast the shared machine was at that moment. A timing shim wraps each stack's training
loader from the wrapper: a step lasts from the request of its batch to the request of the next
(loading, forward, backward, optimizer, the loop's logging), so the same steps are timed in both
stacks; the first ``--skip`` steps are left out; the time between an epoch's last step and the next
epoch (validation, checkpoints, schedules) is reported apart. Peak memory: the training process's
``VmHWM`` when training returns, and the whole process tree's PSS (``/proc/<pid>/smaps_rollup`` of
the process and its descendants, loader workers included), sampled every 0.5 s until then.

Prints a Markdown table (median samples/s of each stack, ratio of medians, min-max of the ratios
of the runs paired in time, peak memory, the probes) and writes ``OUT/side_by_side.json`` (every
run's step times) and ``OUT/side_by_side.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The original repository's commit this wrapper was written against.
ORIGINAL_COMMIT = "ecb21be07f866600ea370f7f67bbc7988b6b2ea3"
STACKS = ("original", "ours")
RENDER_FILES = ("0.png", "1.png", "2.png")
MAP_FILES = ("albedo.png", "roughness.png", "metallic.png", "normal.png")
#: Our split's defaults (data.val_ratio, seed): the original's val_ratio is matched to them.
OURS_VAL_RATIO, SEED = 0.1, 42
_GIB = 1024**3


# --- arguments --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--smoke`` fills in the tiny defaults (1 run, 6 samples, 2 epochs)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--original", type=Path, help="the original repository's training/ folder")
    p.add_argument(
        "--original-pythonpath",
        action="append",
        default=[],
        help="folder put on the original's sys.path (e.g. a `pip install --target` of einops, "
        "which it imports and this project does not need); repeatable",
    )
    p.add_argument("--runs", type=int, default=None, help="runs of each stack per GAN case (default 3)")
    p.add_argument("--gan", default="on,off", help="GAN cases, in order: on,off | on | off")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 2)")
    p.add_argument(
        "--samples", type=int, default=None, help="materials in the dataset, 1 sample each (default 24)"
    )
    p.add_argument("--resolution", type=int, default=None, help="pixels (default 256)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--skip", type=int, default=4, help="first steps of a run left out of the timing")
    p.add_argument(
        "--data", type=Path, default=None, help="an existing folder dataset (default: written to OUT/data)"
    )
    p.add_argument("--out", type=Path, default=Path("side_by_side_out"))
    p.add_argument(
        "--ours-override", action="append", default=[], help="extra Hydra override for ours (repeatable)"
    )
    p.add_argument("--timeout", type=int, default=1800, help="seconds one run may take")
    p.add_argument("--keep", action="store_true", help="keep each run's checkpoints, logs and MLflow store")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the plumbing only: 1 run, 6 samples, 2 epochs (256 px: the original's 6-layer PatchGAN fails below)",
    )
    p.add_argument("--child", choices=["original", "ours", "gemm"], help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    small = args.smoke
    for name, full, tiny in (("runs", 3, 1), ("epochs", 2, 2), ("samples", 24, 6), ("resolution", 256, 256)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if small else full)
    args.gan_cases = parse_gan(args.gan)
    if args.child is None and args.original is None:
        p.error("--original PATH (the original repository's training/ folder) is required")
    return args


def parse_gan(text: str) -> list[bool]:
    """``"on,off"`` -> ``[True, False]``."""
    values = {"on": True, "off": False}
    cases = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not cases or any(c not in values for c in cases):
        raise argparse.ArgumentTypeError(f"--gan {text!r}: expected on, off or on,off")
    return [values[c] for c in cases]


# --- the dataset both stacks read -------------------------------------------------------------------


def write_dataset(root: Path, samples: int, resolution: int) -> None:
    """``samples`` procedural materials, one 3-view sample each, written by ``neuropbr.synth``."""
    cmd = [
        sys.executable,
        "-m",
        "neuropbr.synth",
        f"out={root}",
        f"num_materials={samples}",
        "samples_per_material=1",
        f"data.resolution={resolution}",
        "data.num_views=3",
        "seed=0",
        "num_workers=1",  # a shared machine: one core is enough for a few dozen samples
    ]
    subprocess.run(cmd, check=True)


def check_layout(root: Path) -> dict[str, str]:
    """The samples both stacks will read: ``{sample: material}``, checked against both layouts.

    The original reads ``input/clean/sample_*/{0,1,2}.png`` with ``input/render_metadata.json``
    and ``output/<material>/<4 maps>.png``; ours reads the same folders (``data=folder``).

    Raises:
        FileNotFoundError: a file either stack needs is missing.
    """
    metadata_path = root / "input" / "render_metadata.json"
    if not metadata_path.is_file():
        raise FileNotFoundError(f"{metadata_path}: missing (the folder layout's sample -> material map)")
    metadata = json.loads(metadata_path.read_text())
    found: dict[str, str] = {}
    problems = []
    for folder in sorted((root / "input" / "clean").glob("sample_*")):
        material = metadata.get(folder.name)
        if material is None:
            problems.append(f"{folder.name}: not in render_metadata.json")
            continue
        missing = [f"{folder}/{f}" for f in RENDER_FILES if not (folder / f).is_file()]
        missing += [
            f"{root}/output/{material}/{f}"
            for f in MAP_FILES
            if not (root / "output" / material / f).is_file()
        ]
        problems += missing
        if not missing:
            found[folder.name] = material
    if problems or not found:
        raise FileNotFoundError(f"{root}: not a 3-view folder dataset: {problems[:5] or 'no sample'}")
    return found


def original_val_ratio(num_samples: int, train_samples: int) -> float:
    """The original's ``val_ratio`` that leaves ``train_samples`` for training.

    It holds out ``int(num_samples * val_ratio)`` shuffled samples; ours holds out whole materials
    by a seeded draw, so the count is matched, not the ratio.
    """
    held_out = num_samples - train_samples
    if not 0 <= held_out < num_samples:
        raise ValueError(f"train_samples={train_samples} of {num_samples}")
    return (held_out + 0.5) / num_samples


def ours_train_samples(samples: dict[str, str]) -> int:
    """How many samples our split (``data.split=material``, defaults) leaves for training."""
    from neuropbr.data.split import split_by_material

    train, _ = split_by_material([samples[name] for name in sorted(samples)], OURS_VAL_RATIO, SEED)
    return len(train)


# --- in the child: the timing shim -------------------------------------------------------------------


@dataclass
class Recorder:
    """Timestamps (``time.monotonic``, one clock for every process of the machine) of the epochs
    and of each request for a training batch, filled in by :class:`TimedLoader`."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    sections: dict[str, list[float]] = field(default_factory=dict)

    def start_epoch(self) -> None:
        self.epochs.append({"start": time.monotonic(), "requests": [], "ready": [], "samples": []})

    def end_epoch(self) -> None:
        self.epochs[-1]["end"] = time.monotonic()

    def timed(self, name: str, fn: Any) -> Any:
        """``fn`` wrapped to add its duration to ``sections[name]`` (validation, checkpoint)."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sections.setdefault(name, []).append(time.monotonic() - start)

        return wrapper


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: ours is a dict with ``views``, the original's a ``(views, maps)`` tuple."""
    first = batch["views"] if isinstance(batch, dict) else batch[0]
    return int(first.shape[0])


class TimedLoader:
    """A training loader that stamps each batch request (the end of the previous step)."""

    def __init__(self, loader: Any, recorder: Recorder) -> None:
        self._loader, self._recorder = loader, recorder

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, ... as the loader's
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        epoch = self._recorder.epochs[-1]
        iterator = iter(self._loader)
        while True:
            epoch["requests"].append(time.monotonic())
            try:
                batch = next(iterator)
            except StopIteration:
                return
            epoch["ready"].append(time.monotonic())
            epoch["samples"].append(batch_size_of(batch))
            yield batch


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _finish(recorder: Recorder) -> None:
    recorder.marks["train_end"] = time.monotonic()
    recorder.marks["peak_rss_bytes"] = peak_rss_bytes()


def _wrap_epoch(recorder: Recorder, train_epoch: Any, loader_attr: str | None) -> Any:
    """``train_epoch`` with epoch marks and the loader swapped for a :class:`TimedLoader`.

    ``loader_attr``: the trainer attribute holding the loader (ours), or None when the loader is
    the first argument (the original's ``train_epoch(train_loader, epoch)``).
    """

    @functools.wraps(train_epoch)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder.start_epoch()
        try:
            if loader_attr is None:
                return train_epoch(self, TimedLoader(args[0], recorder), *args[1:], **kwargs)
            loader = getattr(self, loader_attr)
            setattr(self, loader_attr, TimedLoader(loader, recorder))
            try:
                return train_epoch(self, *args, **kwargs)
            finally:
                setattr(self, loader_attr, loader)
        finally:
            recorder.end_epoch()

    return wrapper


def _wrap_end(recorder: Recorder, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            _finish(recorder)

    return wrapper


def _force_no_weights(constructor: Any, *args: Any, weights: Any = None, **kwargs: Any) -> Any:
    return constructor(*args, weights=None, **kwargs)  # offline: ImageNet weights cannot be downloaded


def run_original(spec: dict[str, Any], recorder: Recorder) -> None:
    """The original's ``train.main`` with the patches listed in the module docstring."""
    training = Path(spec["original"]).resolve()
    sys.path[:0] = [str(training), *spec["original_pythonpath"]]
    import torchvision.models as tv_models

    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        setattr(tv_models, name, functools.partial(_force_no_weights, getattr(tv_models, name)))

    import train as original_train  # the original's training/train.py
    from configs.fast_iteration import get_config as fast_iteration  # its preset

    def config() -> Any:
        cfg = fast_iteration()
        size = (spec["resolution"], spec["resolution"])
        cfg.data.image_size, cfg.data.output_size = size, size
        cfg.model.decoder_sr_scale = 2  # the preset's stride 2 came after __post_init__ derived 0
        cfg.model.use_gan = spec["gan"]
        cfg.training.gan_start_epoch = 0
        cfg.data.val_ratio = spec["original_val_ratio"]
        return cfg

    # main() builds "default" through this module global; everything else stays its own.
    original_train.get_default_config = config
    trainer = original_train.Trainer
    trainer.train_epoch = _wrap_epoch(recorder, trainer.train_epoch, None)
    trainer.train = _wrap_end(recorder, trainer.train)
    trainer.validate = recorder.timed("validation", trainer.validate)
    trainer.save_checkpoint = recorder.timed("checkpoint", trainer.save_checkpoint)
    data = Path(spec["data"])
    args = argparse.Namespace(
        config="default",
        batch_size=spec["batch_size"],
        input_dir=str(data / "input"),
        output_dir=str(data / "output"),
        metadata_path=None,
        use_dirty=False,
        render_curriculum=None,
        device="cpu",
        epochs=spec["epochs"],
        resume=None,
        checkpoint_dir=str(Path.cwd() / "checkpoints"),
        distributed=False,
    )
    original_train.main(args)


def ours_overrides(spec: dict[str, Any]) -> list[str]:
    """Our command line: ``fast_iteration`` as shipped on the folder dataset (GAN off: no discriminator)."""
    return [
        "experiment=fast_iteration",
        "data=folder",
        f"data.root={spec['data']}",
        f"data.resolution={spec['resolution']}",
        f"data.batch_size={spec['batch_size']}",
        f"trainer.max_epochs={spec['epochs']}",
        "trainer.gan_start_epoch=0" if spec["gan"] else "discriminator=none",
        "trainer.device=cpu",
        "trainer.precision=fp32",  # what auto picks on a CPU; explicit so a GPU box runs the same
        f"hydra.run.dir={Path.cwd() / 'hydra'}",
        *spec["ours_overrides"],
    ]


def run_ours(spec: dict[str, Any], recorder: Recorder) -> None:
    """``python -m neuropbr.train`` with the timing shim around the trainer's epoch."""
    import neuropbr.training.trainer as trainer_module

    trainer = trainer_module.Trainer
    trainer._train_epoch = _wrap_epoch(recorder, trainer._train_epoch, "train_loader")
    trainer.fit = _wrap_end(recorder, trainer.fit)
    trainer._validate = recorder.timed("validation", trainer._validate)
    if hasattr(trainer_module, "save_trainer"):  # the checkpoint of each epoch
        trainer_module.save_trainer = recorder.timed("checkpoint", trainer_module.save_trainer)
    sys.argv = ["neuropbr.train", *ours_overrides(spec)]
    from neuropbr.train import main

    main()


def child(args: argparse.Namespace) -> None:
    """One run (``--child original|ours``) or the matmul probe (``--child gemm``), in this process."""
    import torch

    if args.child == "gemm":
        from neuropbr.benchmarks.environment import matmul_tflops

        gflops = matmul_tflops(torch.device("cpu"), torch.float32, size=2048, seconds=1.0) * 1000
        print(json.dumps({"gemm_gflops": gflops, "threads": torch.get_num_threads()}))  # noqa: T201
        return
    spec = json.loads(args.spec.read_text())
    recorder = Recorder(marks={"process_start": spec["process_start"], "child_start": time.monotonic()})
    error = None
    try:
        (run_original if args.child == "original" else run_ours)(spec, recorder)
    except BaseException as exc:  # the timings so far are still worth writing
        error = repr(exc)
        raise
    finally:
        result = {
            "epochs": recorder.epochs,
            "marks": recorder.marks,
            "sections": recorder.sections,
            "threads": torch.get_num_threads(),
            "error": error,
        }
        Path(spec["result"]).write_text(json.dumps(result))


# --- in the parent: process-tree memory ---------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (``/proc/<pid>/task/<tid>/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return found


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeSampler(threading.Thread):
    """Every ``interval`` s: ``(monotonic time, summed PSS, processes)`` of a process tree."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.samples = pid, interval, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pids = descendants(self.pid)
            self.samples.append((time.monotonic(), sum(pss_bytes(p) for p in pids), len(pids)))
            self._stop_event.wait(self.interval)

    def stop(self) -> list[tuple[float, int, int]]:
        self._stop_event.set()
        self.join()
        return self.samples


# --- the arithmetic -----------------------------------------------------------------------------------


def step_times(epochs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Every training step of a run, in order: ``{"epoch", "seconds", "load_s", "samples"}``.

    A step lasts from the request of its batch to the request of the next one (the epoch's last:
    to the request that ended the epoch, else the epoch's end).
    """
    steps = []
    for index, epoch in enumerate(epochs):
        requests = epoch["requests"]
        for i, samples in enumerate(epoch["samples"]):
            end = requests[i + 1] if i + 1 < len(requests) else epoch["end"]
            steps.append(
                {
                    "epoch": index,
                    "seconds": end - requests[i],
                    "load_s": epoch["ready"][i] - requests[i],
                    "samples": samples,
                }
            )
    return steps


def between_epochs(epochs: list[dict[str, Any]], train_end: float) -> list[float]:
    """Seconds from each epoch's last step to the next epoch (or the end of training): validation,
    checkpoints, schedules."""
    out = []
    for index, epoch in enumerate(epochs):
        last = epoch["requests"][-1] if epoch["requests"] else epoch["end"]
        following = epochs[index + 1]["start"] if index + 1 < len(epochs) else train_end
        out.append(following - last)
    return out


def summarize_run(result: dict[str, Any], skip: int, samples: list[tuple[float, int, int]]) -> dict[str, Any]:
    """One run's numbers: samples/s over steps ``skip+1..N``, the epoch boundaries, peak memory."""
    steps = step_times(result["epochs"])
    timed = steps[skip:]
    if not timed:
        raise ValueError(f"{len(steps)} steps: none left after skipping {skip}")
    seconds = sum(s["seconds"] for s in timed)
    marks = result["marks"]
    end = marks.get("train_end", float("inf"))
    tree = [pss for t, pss, _ in samples if t <= end]
    return {
        "samples_per_s": sum(s["samples"] for s in timed) / seconds,
        "step_s_median": statistics.median(s["seconds"] for s in timed),
        "load_s_median": statistics.median(s["load_s"] for s in timed),
        "timed_steps": len(timed),
        "steps": len(steps),
        "samples_per_epoch": [sum(e["samples"]) for e in result["epochs"]],
        "between_epochs_s": between_epochs(result["epochs"], end) if "train_end" in marks else None,
        "validation_s": sum(result["sections"].get("validation", [])),
        "checkpoint_s": sum(result["sections"].get("checkpoint", [])),
        "setup_s": result["epochs"][0]["start"] - marks["process_start"] if result["epochs"] else None,
        "peak_rss_gib": marks["peak_rss_bytes"] / _GIB if "peak_rss_bytes" in marks else None,
        "peak_tree_pss_gib": max(tree) / _GIB if tree else None,
        "max_processes": max((n for t, _, n in samples if t <= end), default=0),
        "threads": result["threads"],
    }


def compare(original: list[float], ours: list[float]) -> dict[str, float]:
    """Ratio (ours / original) of the medians and min-max of the ratios of runs paired in time."""
    pairs = [b / a for a, b in zip(original, ours)]
    return {
        "original_median": statistics.median(original),
        "ours_median": statistics.median(ours),
        "ratio_of_medians": statistics.median(ours) / statistics.median(original),
        "pair_min": min(pairs),
        "pair_max": max(pairs),
    }


def _span(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def format_table(report: dict[str, Any]) -> str:
    """The Markdown table of a report (one column per GAN case)."""
    cases = list(report["cases"])
    rows = [["", *[f"GAN {c}" for c in cases]], ["---"] * (len(cases) + 1)]

    def row(label: str, fn: Any) -> None:
        rows.append([label, *[fn(report["cases"][c]) for c in cases]])

    def runs(case: dict[str, Any], stack: str, key: str) -> list[float]:
        return [r[key] for r in case[stack] if r.get(key) is not None]

    for stack in STACKS:
        row(f"{stack}, samples/s median (min-max)", lambda c, s=stack: _span(runs(c, s, "samples_per_s")))
    row("**ours / original, ratio of medians**", lambda c: f"**{c['speed']['ratio_of_medians']:.2f}x**")
    row(
        "ours / original, runs paired in time (min-max)",
        lambda c: f"{c['speed']['pair_min']:.2f}-{c['speed']['pair_max']:.2f}x",
    )
    for stack in STACKS:
        row(f"{stack}, s/step median", lambda c, s=stack: _span(runs(c, s, "step_s_median")))
    for key, label in (
        ("peak_rss_gib", "peak RSS GiB, training process"),
        ("peak_tree_pss_gib", "peak PSS GiB, process tree"),
    ):
        row(
            f"{label}, original / ours",
            lambda c, k=key: f"{_span(runs(c, 'original', k), 2)} / {_span(runs(c, 'ours', k), 2)}",
        )
    for key, label in (
        ("validation_s", "validation s per run"),
        ("checkpoint_s", "checkpoint s per run"),
        ("setup_s", "start-up s (process to 1st epoch)"),
    ):
        row(
            f"{label}, original / ours",
            lambda c, k=key: f"{_span(runs(c, 'original', k), 1)} / {_span(runs(c, 'ours', k), 1)}",
        )
    row(
        "steps (timed) / samples per epoch, original; ours",
        lambda c: (
            "; ".join(
                f"{c[s][0]['steps']} ({c[s][0]['timed_steps']}) / {c[s][0]['samples_per_epoch'][0]}"
                for s in STACKS
            )
            if c["original"] and c["ours"]
            else "-"
        ),
    )
    row(
        "peak memory ours / original, ratio of medians: RSS; tree PSS",
        lambda c: (
            f"{c['peak_rss_gib']['ratio_of_medians']:.2f}; {c['peak_tree_pss_gib']['ratio_of_medians']:.2f}"
        ),
    )
    row("GEMM GFLOP/s before each run (min-max)", lambda c: _span(c["gemm_gflops"], 0))
    env = report["environment"]
    head = (
        f"{env['cpu_model']}, {env['cores']} cores, {'/'.join(map(str, report['threads']))} torch threads, torch {env['torch']}, {report['settings']['resolution']} px, "
        f"batch {report['settings']['batch_size']}, fp32, {report['settings']['runs']} runs each, "
        f"{report['settings']['epochs']} epochs, steps {report['settings']['skip'] + 1}-N timed, "
        f"load average {env['load_average_start']} -> {report['load_average_end']}, {env['time_utc']}"
    )
    return head + "\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


# --- the parent --------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[side_by_side {time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: T201


def gemm_probe(script: Path) -> float:
    """GFLOP/s of a 2048^2 fp32 matmul in a fresh process (the training runs' default threads)."""
    out = subprocess.run(
        [sys.executable, str(script), "--child", "gemm"], check=True, capture_output=True, text=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["gemm_gflops"])


def run_one(stack: str, spec: dict[str, Any], run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One training run in a fresh process, its tree's PSS sampled meanwhile; returns its summary."""
    work = run_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "result": str(run_dir / "result.json"), "process_start": time.monotonic()}
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        stack,
        "--spec",
        str(run_dir / "spec.json"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run_dir / "log.txt", "w") as log_file:
        proc = subprocess.Popen(cmd, cwd=work, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        ended = time.monotonic()
        samples = sampler.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)  # checkpoints of ~1.5 GB each, MLflow models
    result_path = run_dir / "result.json"
    if code != 0 or not result_path.is_file():
        tail = (run_dir / "log.txt").read_text()[-3000:]
        raise RuntimeError(f"{stack} run failed (exit {code}), {run_dir}/log.txt ends:\n{tail}")
    result = json.loads(result_path.read_text())
    summary = summarize_run(result, args.skip, samples)
    summary["wall_s"] = ended - spec["process_start"]
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    import torch

    from neuropbr.benchmarks.environment import environment, load_average

    script = Path(__file__).resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = args.data.resolve() if args.data else out / "data"
    if args.data is None and not (data / "input" / "render_metadata.json").is_file():
        _log(f"writing the dataset: {args.samples} samples at {args.resolution} px -> {data}")
        write_dataset(data, args.samples, args.resolution)
    samples = check_layout(data)
    train_samples = ours_train_samples(samples)
    base = {
        "original": str(args.original.resolve()),
        "original_pythonpath": [str(Path(p).resolve()) for p in args.original_pythonpath],
        "data": str(data),
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "original_val_ratio": original_val_ratio(len(samples), train_samples),
        "ours_overrides": args.ours_override,
    }
    report: dict[str, Any] = {
        "environment": environment(torch.device("cpu")),
        "original_commit": ORIGINAL_COMMIT,
        "settings": {
            **{
                k: v
                for k, v in vars(args).items()
                if k in ("runs", "epochs", "samples", "resolution", "skip", "smoke")
            },
            "batch_size": args.batch_size,
            "dataset_samples": len(samples),
            "train_samples_per_epoch": train_samples,
            "original_val_ratio": base["original_val_ratio"],
            "ours_overrides": ours_overrides({**base, "gan": True}),
        },
        "cases": {},
    }
    if "OMP_NUM_THREADS" in os.environ:  # inherited by the runs: both stacks would use that many threads
        _log(f"note: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} limits both stacks' threads")
    _log(
        f"{len(samples)} samples, {train_samples} trained per epoch; {args.runs} run(s) of each stack "
        f"x GAN {args.gan}, alternating original/ours"
    )
    for case in args.gan_cases:
        report["cases"]["on" if case else "off"] = {"original": [], "ours": [], "gemm_gflops": []}
    for run in range(args.runs):
        for gan in args.gan_cases:
            label = "on" if gan else "off"
            case = report["cases"][label]
            for stack in STACKS:
                gflops = gemm_probe(script)
                case["gemm_gflops"].append(gflops)
                run_dir = out / "runs" / f"gan_{label}" / f"{run + 1}_{stack}"
                summary = run_one(stack, {**base, "gan": gan}, run_dir, args)
                summary["gemm_gflops"] = gflops
                case[stack].append(summary)
                (out / "side_by_side.json").write_text(
                    json.dumps(report, indent=1)
                )  # kept if a later run fails
                _log(
                    f"GAN {label} run {run + 1} {stack}: {summary['samples_per_s']:.3f} samples/s "
                    f"({summary['timed_steps']} of {summary['steps']} steps), peak RSS "
                    f"{summary['peak_rss_gib']:.2f} GiB, tree PSS {summary['peak_tree_pss_gib']:.2f} GiB, "
                    f"GEMM {gflops:.0f} GFLOP/s, {summary['wall_s']:.0f} s"
                )
    for case in report["cases"].values():
        case["speed"] = compare(
            [r["samples_per_s"] for r in case["original"]], [r["samples_per_s"] for r in case["ours"]]
        )
        for key in ("peak_rss_gib", "peak_tree_pss_gib"):
            case[key] = compare([r[key] for r in case["original"]], [r[key] for r in case["ours"]])
    report["load_average_end"] = load_average()
    report["threads"] = sorted({r["threads"] for c in report["cases"].values() for s in STACKS for r in c[s]})
    table = format_table(report)
    (out / "side_by_side.json").write_text(json.dumps(report, indent=1))
    (out / "side_by_side.md").write_text(table)
    print(table)  # noqa: T201
    _log(f"wrote {out / 'side_by_side.json'} and {out / 'side_by_side.md'}")


if __name__ == "__main__":
    main()
