"""What a benchmark suite measures: training cases, data-loading cases and the comparisons between them.

A :class:`TrainCase` is one training configuration (a preset plus overrides) timed in its own
process; a :class:`LoadingCase` times the folder or synthetic data module alone. A
:class:`Comparison` names a ``before`` and an ``after`` case measured in the same run, whose
ratio the report prints. :class:`EpochCase` times steps across epoch boundaries (validation and checkpoint
included). :func:`build_suite` lists them for ``suite=quick|standard|full`` on CPU or CUDA.

The ``fast_iteration`` pair reproduces the original stack's published measurements
(experiments/benchmarks/README.md): *like-for-like* is the original stack's
algorithmic work (activation checkpointing everywhere, the generator forward re-run in the
discriminator step, per-tensor AdamW, PNG decoding in one loader worker); *as shipped* is our
default (no forced checkpointing, fakes reused, fused AdamW, the decoded cache).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from neuropbr.utils.system import available_cores

#: Training data of a case: the folder dataset decoded from PNG on every load, the same
#: dataset through the decoded cache, or procedural data rendered on the fly.
DATA_SOURCES = ("png", "cache", "synthetic")

#: The networks in NCHW, the original's layout (ours are channels_last on CUDA and CPU).
NCHW = "trainer.channels_last=false"

#: The original stack's algorithmic work (experiments/benchmarks/README.md), on top of ``experiment=fast_iteration``.
LIKE_FOR_LIKE: tuple[str, ...] = (
    "encoder.grad_checkpointing=true",
    "fusion.grad_checkpointing=true",
    "decoder.grad_checkpointing=true",
    "benchmark.recompute_fakes=true",
    "benchmark.per_tensor_optimizer=true",
    NCHW,
)
#: The original stack's single loader worker decoding PNGs.
LIKE_FOR_LIKE_WORKERS = 1


@dataclass(frozen=True)
class Timing:
    """How one run is timed: ``warmup_steps`` untimed, then ``windows`` x ``window_steps`` timed."""

    warmup_steps: int
    windows: int
    window_steps: int
    repeats: int

    def __post_init__(self) -> None:
        for key in ("warmup_steps", "windows", "window_steps", "repeats"):
            minimum = 0 if key == "warmup_steps" else 1
            if getattr(self, key) < minimum:
                raise ValueError(f"bench.{key}={getattr(self, key)}: expected >= {minimum}")


@dataclass(frozen=True)
class TrainCase:
    """One training configuration, timed through the real ``Trainer.train_step``.

    Attributes:
        name: unique key (``<preset>/<px>/<gan>/<variant>``).
        section: the table it belongs to (``train`` or ``optimisations``).
        preset: the ``experiment=`` preset.
        resolution: input views in pixels.
        batch_size: samples per step.
        gan: the discriminator step is on (``trainer.gan_start_epoch=0``); off is
            ``discriminator=none``, which keeps the same generator.
        variant: a short label (``as shipped``, ``like-for-like``, ...).
        data: one of :data:`DATA_SOURCES`.
        num_workers: loader workers (None: the preset's ``data.num_workers``).
        overrides: extra training overrides.
        inference: also time the generator's inference (eval mode, no grad, batch 1).
        fixed_batch: draw one real batch, keep it on the device and train on it every step:
            the model's throughput with data loading excluded (used for GPU utilisation).
        timing: steps and repeats.
    """

    name: str
    section: str
    preset: str
    resolution: int
    batch_size: int
    gan: bool
    variant: str
    timing: Timing
    data: str = "cache"
    num_workers: int | None = None
    overrides: tuple[str, ...] = ()
    inference: bool = False
    fixed_batch: bool = False

    def __post_init__(self) -> None:
        if self.data not in DATA_SOURCES:
            raise ValueError(f"case {self.name}: data={self.data!r}; choose one of {list(DATA_SOURCES)}")

    def training_overrides(self, device: str, data_root: str | None) -> list[str]:
        """The Hydra overrides that compose this case's training config (paths are added later).

        Args:
            device: ``cpu`` or ``cuda``.
            data_root: the folder dataset (needed unless ``data == "synthetic"``).

        Returns:
            Overrides for ``conf/train.yaml``.
        """
        # "default" is conf/train.yaml's own recipe: no experiment preset on top.
        overrides = [] if self.preset == "default" else [f"experiment={self.preset}"]
        if self.data == "synthetic":
            overrides.append("data=synthetic")
        else:
            if data_root is None:
                raise ValueError(f"case {self.name}: data={self.data} needs bench.data_root")
            overrides += ["data=folder", f"data.root={data_root}", f"data.cache={self.data == 'cache'}"]
        overrides += [
            f"data.resolution={self.resolution}",
            f"data.batch_size={self.batch_size}",
            "tracking=none",
            f"trainer.device={device}",
            "trainer.progress_bar=false",
            # Perceptual loss needs VGG16 weights from the hub; the benchmark runs offline.
            "loss.weights.perceptual=0",
        ]
        if self.num_workers is not None:
            overrides.append(f"data.num_workers={self.num_workers}")
        overrides.append("trainer.gan_start_epoch=0" if self.gan else "discriminator=none")
        return [*overrides, *self.overrides]


@dataclass(frozen=True)
class LoadingCase:
    """Data-loading throughput of the training loader alone (no model).

    Attributes:
        name: unique key.
        source: one of :data:`DATA_SOURCES`.
        num_workers: loader workers.
        augment: the training augmentation (as in training) or none (decoding alone).
        resolution: side of the views and maps served.
        batch_size: samples per batch.
        batches: batches timed after the first (which starts the workers).
        repeats: runs, interleaved with the other loading cases.
    """

    name: str
    source: str
    num_workers: int
    augment: bool
    resolution: int
    batch_size: int
    batches: int
    repeats: int

    def overrides(self, data_root: str | None) -> list[str]:
        """Training-config overrides that build this case's data module."""
        if self.source == "synthetic":
            data = ["data=synthetic", "data.num_samples=64"]
        else:
            if data_root is None:
                raise ValueError(f"case {self.name}: source={self.source} needs bench.data_root")
            data = ["data=folder", f"data.root={data_root}", f"data.cache={self.source == 'cache'}"]
        return [
            "experiment=fast_iteration",
            *data,
            f"data.resolution={self.resolution}",
            f"data.batch_size={self.batch_size}",
            f"data.num_workers={self.num_workers}",
            f"data.augment.enabled={self.augment}",
            "tracking=none",
        ]


@dataclass(frozen=True)
class EpochCase:
    """Steps across epoch boundaries, as a real run has them: ``Trainer.fit`` over ``epochs``
    short epochs, each ending with validation and ``latest.pth`` (and ``best_model.pth``).

    The report gives the steady step time before the first boundary, the first step after a
    boundary, the steady step time after it, and the boundary's own cost (the gap between an
    epoch's last step and the next one's first).

    Attributes:
        name: unique key.
        preset: the ``experiment=`` preset.
        resolution, batch_size: the data's shape.
        epochs: epochs run (2 boundaries need 3).
        batches: training batches per epoch (``trainer.limit_train_batches``).
        val_batches: validation batches per epoch (``trainer.limit_val_batches``).
        data: one of :data:`DATA_SOURCES`.
        overrides: extra training overrides.
    """

    name: str
    preset: str
    resolution: int
    batch_size: int
    epochs: int = 3
    batches: int = 6
    val_batches: int = 2
    data: str = "synthetic"
    overrides: tuple[str, ...] = ()

    def training_overrides(self, device: str, data_root: str | None) -> list[str]:
        """Overrides for ``conf/train.yaml`` (GAN on from the first step, one log line per step)."""
        case = TrainCase(
            self.name, "epochs", self.preset, self.resolution, self.batch_size, True, "epochs",
            Timing(0, 1, 1, 1), data=self.data,
        )  # fmt: skip
        return [
            *case.training_overrides(device, data_root),
            f"trainer.max_epochs={self.epochs}",
            f"trainer.limit_train_batches={self.batches}",
            f"trainer.limit_val_batches={self.val_batches}",
            "trainer.val_every_n_epochs=1",
            "trainer.log_every_n_steps=1",
            *self.overrides,
        ]


@dataclass(frozen=True)
class Comparison:
    """``after`` vs ``before``, measured in the same run; the report prints their ratio.

    Attributes:
        title: what changed, e.g. ``"fused AdamW (was per-tensor)"``.
        before, after: case names.
        table: which before/after table it belongs to.
    """

    title: str
    before: str
    after: str
    table: str


def _needs_dataset(
    train: Sequence[TrainCase], loading: Sequence[LoadingCase], epochs: Sequence[EpochCase]
) -> bool:
    """Whether any case reads a folder dataset (data or source other than ``synthetic``)."""
    return (
        any(c.data != "synthetic" for c in train)
        or any(c.data != "synthetic" for c in epochs)
        or any(c.source != "synthetic" for c in loading)
    )


@dataclass
class Suite:
    """The cases and comparisons of one ``bench`` invocation."""

    name: str
    device: str
    train: list[TrainCase] = field(default_factory=list)
    loading: list[LoadingCase] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    #: Whether a folder dataset is needed (PNG or cache cases).
    needs_dataset: bool = False
    epochs: list[EpochCase] = field(default_factory=list)
    #: What the whole suite took where it was measured (seconds, and on what), or None.
    expected: tuple[float, str] | None = None

    @property
    def case_count(self) -> int:
        """Measured processes: training runs (repeats included), epoch runs, one for loading."""
        runs = sum(case.timing.repeats for case in self.train) + len(self.epochs)
        return runs + (1 if self.loading else 0)

    def select(self, only: list[str] | None) -> Suite:
        """Keep the cases whose name contains one of ``only`` (all when None), and the
        comparisons whose two cases are both kept."""
        if not only:
            return self
        keep = [c for c in self.train if any(s in c.name for s in only)]
        loading = [c for c in self.loading if any(s in c.name for s in only)]
        epochs = [c for c in self.epochs if any(s in c.name for s in only)]
        names = {c.name for c in keep}
        comparisons = [c for c in self.comparisons if c.before in names and c.after in names]
        return replace(
            self,
            train=keep,
            loading=loading,
            epochs=epochs,
            comparisons=comparisons,
            needs_dataset=_needs_dataset(keep, loading, epochs),
            expected=None,  # measured for the whole suite only
        )


# --- the suites -------------------------------------------------------------------------------


def _gan_label(gan: bool) -> str:
    return "gan_on" if gan else "gan_off"


def _fast_iteration_pairs(timing: Timing, device: str) -> tuple[list[TrainCase], list[Comparison]]:
    """``fast_iteration`` at 256 px, batch 2, GAN on and off, as shipped and like-for-like."""
    cases, comparisons = [], []
    for gan in (False, True):
        base = f"fast_iteration/256/{_gan_label(gan)}"
        shipped = TrainCase(
            f"{base}/shipped",
            "train",
            "fast_iteration",
            256,
            2,
            gan,
            "as shipped",
            timing,
            data="cache",
            inference=gan,
        )
        like = TrainCase(
            f"{base}/like_for_like",
            "train",
            "fast_iteration",
            256,
            2,
            gan,
            "like-for-like",
            timing,
            data="png",
            num_workers=LIKE_FOR_LIKE_WORKERS,
            overrides=LIKE_FOR_LIKE,
        )
        cases += [shipped, like]
        comparisons.append(
            Comparison(
                f"fast_iteration GAN {'on' if gan else 'off'}", like.name, shipped.name, "fast_iteration"
            )
        )
    if device == "cuda":  # the original configuration was measured on CPU; on GPU show compile too
        cases = [c for c in cases if c.variant == "as shipped"]
        comparisons = []
    return cases, comparisons


#: Activation checkpointing of the whole generator for 2048 px, batch 2: 18.1 GiB peak allocated
#: instead of 46.7 GiB, at 0.76x the samples/s (encoder + fusion only: 23.3 GiB, 0.80x; measured
#: on an H200, experiments/benchmarks/README.md).
CHECKPOINT_ALL: tuple[str, ...] = (
    "encoder.grad_checkpointing=true",
    "fusion.grad_checkpointing=true",
    "decoder.grad_checkpointing=true",
)


def _preset_cases(
    presets: dict[str, list[int]], timing: Timing, batch_size: int, device: str
) -> list[TrainCase]:
    cases = []
    cuda = device == "cuda"
    for preset, resolutions in presets.items():
        for resolution in resolutions:
            overrides: tuple[str, ...] = CHECKPOINT_ALL if cuda and resolution >= 2048 else ()
            cases.append(
                TrainCase(
                    f"{preset}/{resolution}/gan_on/shipped",
                    "train",
                    preset,
                    resolution,
                    batch_size,
                    True,
                    "checkpointing" if overrides else "as shipped",
                    timing,
                    # The presets' own data (quick_test sizes its synthetic set; a folder
                    # dataset would reject its data.num_samples).
                    data="synthetic",
                    num_workers=_cuda_workers() if cuda else None,
                    overrides=overrides,
                    inference=True,
                    fixed_batch=cuda,
                )
            )
    return cases


def _cuda_workers() -> int:
    """Loader workers on a GPU machine: enough to decode large cached samples in parallel."""
    return min(8, available_cores())


def _optimisation_cases(timing: Timing) -> tuple[list[TrainCase], list[Comparison]]:
    """From like-for-like to as shipped one change at a time (GAN on), plus CPU-specific changes.

    Each step's comparison is against the previous step, all measured side by side in one run.
    """
    steps: list[tuple[str, str, tuple[str, ...], str, int | None]] = [
        # (key, title, overrides, data, workers)
        (
            "0_like_for_like",
            "like-for-like (the original's work)",
            LIKE_FOR_LIKE,
            "png",
            LIKE_FOR_LIKE_WORKERS,
        ),
        (
            "1_no_checkpointing",
            "no activation checkpointing",
            ("benchmark.recompute_fakes=true", "benchmark.per_tensor_optimizer=true", NCHW),
            "png",
            LIKE_FOR_LIKE_WORKERS,
        ),
        (
            "2_reuse_fakes",
            "generator output reused in the D step",
            ("benchmark.per_tensor_optimizer=true", NCHW),
            "png",
            1,
        ),
        ("3_fused_adamw", "fused AdamW / Adam", (NCHW,), "png", 1),
        ("4_decoded_cache", "decoded cache, default workers", (NCHW,), "cache", None),
        ("5_channels_last", "channels_last (NHWC) on the CPU too = as shipped", (), "cache", None),
    ]
    cases = [
        TrainCase(
            f"optim/fast_iteration/256/gan_on/{key}",
            "optimisations",
            "fast_iteration",
            256,
            2,
            True,
            title,
            timing,
            data=data,
            num_workers=workers,
            overrides=overrides,
        )
        for key, title, overrides, data, workers in steps
    ]
    comparisons = [
        Comparison(after.variant, before.name, after.name, "cumulative") for before, after in pairwise(cases)
    ]
    comparisons.append(
        Comparison("all changes (as shipped vs like-for-like)", cases[0].name, cases[-1].name, "cumulative")
    )
    return cases, comparisons


def _loading_cases(device: str, cores: int, repeats: int, batches: int) -> list[LoadingCase]:
    workers = sorted({0, 2, cores})
    cases = []
    for source in ("png", "cache"):
        for augment in (True, False):
            for count in workers if augment else [0]:
                name = f"loading/{source}/{'augment' if augment else 'decode_only'}/workers{count}"
                cases.append(LoadingCase(name, source, count, augment, 256, 2, batches, repeats))
    cases += [
        LoadingCase(
            f"loading/synthetic/augment/workers{count}", "synthetic", count, True, 256, 2, batches, repeats
        )
        for count in (workers if device == "cpu" else [cores])
    ]
    return cases


#: The suites of ``python -m neuropbr.bench``: ``quick`` (the default, <= 3 minutes on 2 CPU
#: cores), ``standard`` (the presets, fast_iteration pairs and loading; ~12 minutes), ``full``.
SUITES = ("quick", "standard", "full")

#: What each suite takes on CPU (seconds, on what): printed at the start of a run, for the
#: default sections. A busy machine takes several times longer (experiments/benchmarks/README.md:
#: the quick suite took 8.9 min at a load average of 4-5 on 2 cores).
EXPECTED_CPU: dict[str, tuple[float, str]] = {
    "quick": (60, "2 idle cores of an AMD EPYC, measured: 59 s"),
    "standard": (720, "2 idle cores of an AMD EPYC"),
}


def _epoch_cases(device: str, quick: bool) -> list[EpochCase]:
    """Steps across two epoch boundaries. ``quick``: quick_test at 64 px (a fraction of a second
    per step on 2 CPU cores); otherwise fast_iteration's model, whose checkpoint (weights and
    AdamW state of 136 M parameters, ~1.6 GB) is what a real run writes at each boundary."""
    if device == "cuda":
        return [EpochCase("epochs/fast_iteration/256", "fast_iteration", 256, 2, batches=20, val_batches=4)]
    if quick:
        return [EpochCase("epochs/quick_test/64", "quick_test", 64, 2, batches=8, val_batches=2)]
    return [EpochCase("epochs/fast_iteration/128", "fast_iteration", 128, 2, batches=5, val_batches=2)]


def _quick_suite(device: str, sections: list[str], timing: Callable[..., Timing]) -> Suite:
    """<= 3 minutes on 2 CPU cores: one step time per model size, the epoch boundaries, and
    loading; procedural data only (no dataset to write on a fresh machine)."""
    suite = Suite(name="quick", device=device)
    if "train" in sections:
        few = timing(1, 2, 1, 1) if device == "cpu" else timing(5, 3, 5, 1)
        resolution = 256 if device == "cpu" else 512
        suite.train = [
            TrainCase(
                f"fast_iteration/{resolution}/gan_on/synthetic",
                "train",
                "fast_iteration",
                resolution,
                2,
                True,
                "as shipped, procedural data",
                few,
                data="synthetic",
                inference=True,
            ),
            TrainCase(
                f"quick_test/{64 if device == 'cpu' else 512}/gan_on/shipped",
                "train",
                "quick_test",
                64 if device == "cpu" else 512,
                2,
                True,
                "as shipped",
                few,
                data="synthetic",
                inference=True,
            ),
        ]
    if "epochs" in sections:
        suite.epochs = _epoch_cases(device, quick=True)
    if "loading" in sections:
        cores = [0] if device == "cpu" else [_cuda_workers()]
        suite.loading = [
            LoadingCase(f"loading/synthetic/augment/workers{n}", "synthetic", n, True, 256, 2, 12, 1)
            for n in cores
        ]
    if device == "cpu":
        suite.expected = EXPECTED_CPU["quick"]
    return suite


def build_suite(name: str, device: str, cores: int, sections: list[str], settings: dict[str, Any]) -> Suite:
    """The cases of ``suite=<name>`` on ``device``.

    Args:
        name: ``quick``, ``standard`` or ``full`` (see :data:`SUITES`).
        device: ``cpu`` or ``cuda``.
        cores: CPU cores available (the ``N`` of the 0/2/N loader workers).
        sections: which of ``train``, ``epochs``, ``loading``, ``optimisations`` to include.
        settings: overrides of the suite's timing (``repeats``, ``warmup_steps``, ``windows``,
            ``window_steps``, ``loading_batches``); None values keep the suite's.

    Returns:
        The :class:`Suite`.
    """
    if name not in SUITES:
        raise ValueError(f"bench.suite={name!r}; choose one of {list(SUITES)}")

    def timing(warmup: int, windows: int, window_steps: int, repeats: int) -> Timing:
        values = {
            "warmup_steps": warmup,
            "windows": windows,
            "window_steps": window_steps,
            "repeats": repeats,
        }
        chosen = {k: int(settings[k]) if settings.get(k) is not None else v for k, v in values.items()}
        return Timing(**chosen)

    if name == "quick":
        return _quick_suite(device, sections, timing)
    # standard: the former quick suite (a few steps per case); full: the original measurements' timing.
    standard = name == "standard"

    # The original stack was timed over steps 5-44 of 44 in 3 runs (full does the same); standard times 3
    # one-step windows after 2 warm-up steps, 2 interleaved runs.
    headline = timing(2, 3, 1, 2) if standard else timing(4, 4, 10, 3)
    presets_timing = timing(1, 2, 1, 1) if standard else timing(2, 3, 3, 2)
    if device == "cuda":
        headline = timing(5, 4, 5, 2) if standard else timing(10, 5, 10, 3)
        presets_timing = headline
        presets = (
            {"quick_test": [512], "default": [512, 1024], "high_quality": [512]}
            if standard
            else {"quick_test": [512, 1024], "default": [512, 1024, 2048], "high_quality": [512, 1024]}
        )
    else:
        presets = (
            {"quick_test": [64, 128], "default": [64], "high_quality": [64]}
            if standard
            else {"quick_test": [64, 128, 256, 512], "default": [64, 128, 256], "high_quality": [64, 128]}
        )
    suite = Suite(name=name, device=device)
    if "train" in sections:
        cases, comparisons = _fast_iteration_pairs(headline, device)
        suite.train += cases + _preset_cases(presets, presets_timing, 2, device)
        suite.comparisons += comparisons
        if device == "cuda":
            if not standard:  # what encoder + fusion checkpointing alone costs at 2048 px
                suite.train += [
                    replace(
                        c,
                        name=c.name.replace("/shipped", "/ckpt_encoder_fusion"),
                        variant="encoder + fusion checkpointing",
                        overrides=CHECKPOINT_ALL[:2],
                        inference=False,
                    )
                    for c in suite.train
                    if c.preset == "default" and c.resolution >= 2048
                ]
            suite.train += [
                replace(
                    c,
                    name=c.name.replace("/shipped", "/compiled"),
                    variant=f"{c.variant} + compile",
                    overrides=(*c.overrides, "trainer.compile=true"),
                    inference=False,
                )
                for c in suite.train
                if c.preset == "default" and c.resolution >= 1024 and c.name.endswith("/shipped")
            ]
            suite.comparisons += [
                Comparison(
                    f"trainer.compile, {c.preset} {c.resolution} px",
                    c.name.replace("/compiled", "/shipped"),
                    c.name,
                    "compile",
                )
                for c in suite.train
                if c.name.endswith("/compiled")
            ]
    if "optimisations" in sections:
        optim_timing = timing(2, 3, 2, 3) if standard else timing(4, 4, 10, 3)
        cases, comparisons = _optimisation_cases(optim_timing)
        suite.train += cases
        suite.comparisons += comparisons
    if "loading" in sections:
        repeats = settings.get("repeats") or (1 if standard else 3)
        batches = settings.get("loading_batches") or (12 if standard else 48)
        suite.loading = _loading_cases(device, cores, repeats, batches)
    if "epochs" in sections:
        suite.epochs = _epoch_cases(device, quick=False)
    suite.needs_dataset = _needs_dataset(suite.train, suite.loading, suite.epochs)
    if device == "cpu" and name in EXPECTED_CPU:
        suite.expected = EXPECTED_CPU[name]
    return suite
