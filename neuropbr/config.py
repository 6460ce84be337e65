"""Config schemas: one dataclass per implementation, registered in Hydra's ConfigStore, so
a misspelt or mistyped override fails at compose time naming the key.

Every YAML option in ``conf/<group>/`` extends its schema (``_SCHEMAS``) through its defaults list,
so a typo (``encoder.widht=3``) or a wrong type (``data.resolution=abc``) fails when the config is
composed, naming the key. Choice fields are enums, so ``data.renders=dirt`` fails the same way.
Range checks that need the final values live in the components' ``__init__``.

Fields named ``_target_`` point at the class or function ``train.py`` builds; arguments that
depend on other components (channels, number of views) are passed at build time by
``neuropbr/build.py``, so no two keys must be kept equal by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, SI

# --- where conf/ lives --------------------------------------------------------------------------


def config_dir() -> str:
    """Absolute path of the ``conf/`` tree.

    A source checkout (editable install) uses ``conf/`` beside the package; a wheel ships the same
    files as the package data ``neuropbr._conf``. Either way the result does not depend on the
    working directory.
    """
    beside = Path(__file__).resolve().parent.parent / "conf"
    if (beside / "train.yaml").is_file():
        return str(beside)
    packaged = Path(__file__).resolve().parent / "_conf"
    if (packaged / "train.yaml").is_file():
        return str(packaged)
    raise FileNotFoundError(
        f"NeuroPBR's conf/ tree is missing: looked for {beside}/train.yaml and {packaged}/train.yaml. "
        "Reinstall the package (pip install neuropbr) or run from a source checkout."
    )


# --- choices (enum member names are what users type) --------------------------------------------


class Renders(str, Enum):
    clean = "clean"
    dirty = "dirty"
    both = "both"


OnError = Enum("OnError", [("raise", "raise"), ("skip", "skip")], type=str)  # type: ignore[misc]
OnNonFinite = Enum("OnNonFinite", [("raise", "raise"), ("skip_step", "skip_step")], type=str)  # type: ignore[misc]


class NormalConvention(str, Enum):
    opengl = "opengl"
    directx = "directx"


class CameraKind(str, Enum):
    aligned = "aligned"
    perspective = "perspective"


class SplitKind(str, Enum):
    material = "material"
    family = "family"


class Downsample(str, Enum):
    maxpool = "maxpool"
    stride = "stride"


class Norm(str, Enum):
    """Discriminator normalisation (spectral normalises the conv weights instead of adding layers)."""

    batch = "batch"
    instance = "instance"
    spectral = "spectral"
    none = "none"


class ConvNorm(str, Enum):
    """Feature-map normalisation of the convolutional encoders and decoders."""

    batch = "batch"
    instance = "instance"
    none = "none"


class GanLoss(str, Enum):
    hinge = "hinge"
    bce = "bce"
    lsgan = "lsgan"


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"


class DeviceKind(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class MetricMode(str, Enum):
    min = "min"
    max = "max"


class ResumeFallback(str, Enum):
    """``trainer.resume_fallback``: what ``trainer.resume=auto`` does when the newest checkpoint is
    unreadable but an older one is usable."""

    error = "error"
    older = "older"


# --- data ---------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Training-time augmentation (validation is never augmented)."""

    _target_: str = "neuropbr.data.transforms.Augmentation"
    enabled: bool = True
    #: Per-view photometric jitter (kornia): brightness, contrast, saturation, hue ranges.
    photometric: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    #: Paired flips and 90-degree rotations of views AND maps (normal vectors transformed).
    #: Only meaningful when views are aligned with the maps; ignored otherwise.
    flips: bool = True
    rot90: bool = True
    aligned: bool = SI("${..aligned}")


@dataclass
class DataConfig:
    _target_: str = MISSING
    #: Side of the square views and maps served, in pixels.
    resolution: int = 256
    #: V, the number of views per sample.
    num_views: int = 3
    #: Which renders the model sees: clean/, dirty/ or both (a sample may exist in one only).
    renders: Renders = Renders.clean
    #: Share of MATERIALS (split=material) or FAMILIES (split=family) held out for validation.
    val_ratio: float = 0.1
    #: ``material``: no material in both train and val; ``family``: no family in both (measures
    #: generalisation to kinds of material never seen in training).
    split: SplitKind = SplitKind.material
    #: With split=family: the families to hold out (default: drawn from the seed with val_ratio).
    val_families: list[str] | None = None
    batch_size: int = 4
    #: Training loader workers, or ``auto``: none on <= 2 cores, else min(4, cores - 1).
    #: Validation starts at most as many at each validation (never kept between them).
    num_workers: int | str = "auto"
    pin_memory: bool = True
    #: Keep the training workers between epochs.
    persistent_workers: bool = True
    #: Views are rectified to texture space (pixel (i, j) sees texel (i, j)).
    aligned: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = SI("${seed}")


@dataclass
class LightSetupsConfig:
    """``data.light_setups``: weights of the lighting setups a synthetic view draws from; e.g.
    one lamp per view, from a random side: ``flash=0 sun=0 multi=0 area=0``."""

    #: A phone flash beside the lens (lights the sample almost along the view).
    flash: float = 0.3
    #: One lamp, near or far, from any side (raking light down to about 20 degrees).
    point: float = 0.25
    #: The sun (20-75 degrees high) and the sky; with an HDR map, the map itself.
    sun: float = 0.2
    #: Two or three lamps of different colours.
    multi: float = 0.15
    #: A softbox or window (four points over a rectangle).
    area: float = 0.1


@dataclass
class SyntheticDataConfig(DataConfig):
    """Procedural materials rendered on the fly (nothing written to disk)."""

    _target_: str = "neuropbr.data.synthetic.SyntheticDataModule"
    #: Samples in train + val together.
    num_samples: int = 512
    #: Samples sharing one material (different lights, cameras, artifacts).
    samples_per_material: int = 1
    camera: CameraKind = CameraKind.aligned
    #: Scale of the dirty artifacts (0 disables them).
    artifact_strength: float = 1.0
    #: Render every sample once at start-up (all cores) and serve it from memory; epochs then
    #: reuse the renders with fresh augmentation (much faster on a CPU, ~0.3 MB per sample at 128 px).
    cache: bool = False
    #: ``[low, high]``: the materials' mean normal tilt in degrees, drawn log-uniformly (null: the
    #: generator's default, 1-28; plastic and terrazzo keep their smooth 0.3-6).
    relief_tilt_deg: list[float] | None = None
    #: How often each lighting setup lights a view (weights, not all 0).
    light_setups: LightSetupsConfig = field(default_factory=LightSetupsConfig)
    #: Serve each training sample's key-light direction per pixel of each view (maps["light"]),
    #: the target of the ``light`` loss term (needs data.camera=aligned).
    light_targets: bool = False
    #: ``[low, high]`` stops: each sample's views are all exposed brighter or darker by one draw
    #: from this range, on top of their own -1..+1 EV (a camera that meters differently; null: none).
    exposure_shift_ev: list[float] | None = None
    #: Let a share of the materials re-tint their dielectric colour to a random hue (false: only
    #: the families' own colours).
    recolour: bool = True
    #: Let materials carry weathering layers: paint worn through, dirt in cavities, worn edges, a
    #: clear coat (false: each family's bare pattern).
    weathering: bool = True


@dataclass
class FolderDataConfig(DataConfig):
    """The guide's folder layout: ``root/input/{clean,dirty}/<sample>/{0..V-1}.png`` etc."""

    _target_: str = "neuropbr.data.folder.FolderDataModule"
    root: str = MISSING
    #: Decode images once at ``resolution`` into memory-mapped uint8 arrays.
    cache: bool = False
    #: Where the cache lives (default: ``<root>/.neuropbr_cache``, or the user cache dir if
    #: ``root`` is read-only).
    cache_dir: str | None = None
    on_error: OnError = OnError["raise"]  # type: ignore[misc]
    normal_convention: NormalConvention = NormalConvention.opengl


@dataclass
class LibraryDataConfig(DataConfig):
    """A material library rendered on the fly (neuropbr/data/library_data.py); nothing written."""

    _target_: str = "neuropbr.data.library_data.LibraryDataModule"
    #: The library folder (public naming conventions, this project's output/, or a layout.yaml).
    materials: str = MISSING
    #: Samples (turned crops, cameras, lights, dirt) per material.
    samples_per_material: int = 8
    camera: CameraKind = CameraKind.aligned
    artifact_strength: float = 1.0
    #: A ``.hdr`` file or folder of them; ``hdri_probability`` of the samples are lit by one.
    hdri: str | None = None
    hdri_probability: float = 0.5
    #: Crop side as a share of the largest crop that fits, drawn log-uniformly in [low, high].
    crop_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
    crop_rotation: bool = True
    #: A mapping file other than ``<materials>/layout.yaml``.
    layout: str | None = None
    #: Constant for materials without a roughness map (null: the layout's, else 0.5).
    roughness_default: float | None = None
    on_error: OnError = OnError["raise"]  # type: ignore[misc]
    #: Keep decoded textures on disk too (float16 .npy, memory-mapped; shared by loader workers).
    cache: bool = True
    #: Where (default ``<materials>/.neuropbr_cache/library``, or the user cache if read-only).
    cache_dir: str | None = None
    #: Decoded materials kept in memory per process.
    memory_cache: int = 8


@dataclass
class MixDataConfig(DataConfig):
    """Several data sources drawn by weight (neuropbr/data/mix.py). The keys above apply to every
    source; each source keeps its own kind-specific keys (``num_samples``, ``materials``, ``root``)."""

    _target_: str = "neuropbr.data.mix.MixDataModule"
    #: ``{name: a data config}`` (``synthetic``, ``library`` or ``folder``); add one with
    #: ``+data@data.sources.NAME=folder data.sources.NAME.root=DIR +data.weights.NAME=1``.
    sources: dict[str, Any] = field(default_factory=dict)
    #: ``{name: weight}``: the share of training samples drawn from each source (missing: 1; 0: only validates).
    weights: dict[str, float] = field(default_factory=dict)
    #: Training samples per epoch (null: the sources' training samples together).
    epoch_size: int | None = None


# --- model --------------------------------------------------------------------------------------


@dataclass
class TimmEncoderConfig:
    """Any timm backbone with ``features_only`` (resnet*, convnext*, efficientnet*, ...)."""

    _target_: str = "neuropbr.models.encoders.timm_encoder.TimmEncoder"
    name: str = "resnet50"
    #: false, true (download from the hub) or the path of a local weights file.
    pretrained: Any = False
    #: 2 keeps the backbone's stem; 1 halves the stride of its first conv (the guide's
    #: ``encoder_stride=1``: a stride-2 stem then keeps full resolution), so every feature level
    #: has twice the resolution.
    stem_stride: int = 2
    #: The guide's "freeze early layers": stem and stages up to the second-deepest feature level
    #: get no gradients; the deepest stage fine-tunes (use with pretrained weights).
    freeze_backbone: bool = False
    #: Batch-norm layers stay in eval mode (running statistics frozen) and are not trained.
    freeze_bn: bool = False
    #: Recompute activations in the backward pass (timm's per-stage checkpointing).
    grad_checkpointing: bool = False
    #: Feature levels to use (default: all the backbone has).
    out_indices: list[int] | None = None
    #: Extra keyword arguments for ``timm.create_model`` (e.g. tiny widths for tests).
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class UNetEncoderConfig:
    """From-scratch U-Net encoder; ``downsample=maxpool`` (unet) or ``stride`` (unet_stride)."""

    _target_: str = "neuropbr.models.encoders.unet.UNetEncoder"
    #: Width of each level, finest first; level i has reduction 2**i, the last is the bottleneck.
    channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    downsample: Downsample = Downsample.maxpool
    norm: ConvNorm = ConvNorm.batch
    #: Recompute each level in the backward pass (saves activation memory).
    grad_checkpointing: bool = False
    #: Scale each view to mean 0.5 first (one gain per view): removes the exposure, and with it
    #: how bright the photos are, the main clue to how light the material is.
    exposure_norm: bool = False
    #: Also feed each view's log-ratio to the mean of all views (6 input channels): albedo cancels,
    #: the lights' shading differences (the photometric-stereo cue for normals) remain.
    shading_ratio: bool = False
    #: 0: one shared encoder per view (any number of views). V: exactly V views stacked as the
    #: channels of one input (early fusion: the first layer compares the views' shading; the
    #: encoder runs once instead of V times); must equal data.num_views.
    stacked_views: int = 0
    #: Estimate each view's key light and give the encoder its direction at every pixel (3 more
    #: channels per view). Taught by loss.weights.light with data.light_targets=true (synthetic,
    #: aligned views); without it the estimator learns only through the maps' losses.
    light_estimation: bool = False


@dataclass
class ViTFusionConfig:
    """Cross-view attention over the bottleneck tokens of all views."""

    _target_: str = "neuropbr.models.fusion.vit.ViTFusion"
    dim: int = 2048
    depth: int = 4
    num_heads: int = 32
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    #: Dropout on attention weights and projections.
    dropout: float = 0.1
    #: Stochastic depth, linearly increasing to this value over the blocks.
    drop_path: float = 0.1
    #: Average-pool the bottleneck by this factor before attention (1 = no pooling).
    token_stride: int = 1
    #: Raise the token stride automatically until V * h * w / stride^2 <= max_tokens.
    max_tokens: int | None = 16384
    #: Content-derived view embedding (keeps the fusion order-independent).
    view_embedding: bool = True
    #: 2D sine-cosine position embedding (any feature-map size).
    pos_embedding: bool = True
    #: Recompute each transformer block in the backward pass.
    grad_checkpointing: bool = False


@dataclass
class PoolFusionConfig:
    """Mean or max over views (baselines)."""

    _target_: str = "neuropbr.models.fusion.pooling.MeanFusion"


@dataclass
class UNetHeadsDecoderConfig:
    """U-Net trunk over skips fused across views, super-resolution stage, one head per map."""

    _target_: str = "neuropbr.models.decoders.unet_heads.UNetHeadsDecoder"
    #: Width of each up-block, deepest first; the first len(skips) entries are used.
    channels: list[int] = field(default_factory=lambda: [256, 128, 64, 64, 32])
    #: Output resolution = input resolution * sr_scale (1, 2 or 4).
    sr_scale: int = 1
    #: Width of the super-resolution stage (PixelShuffle x2 steps from the finest skip level).
    sr_channels: int = 64
    norm: ConvNorm = ConvNorm.batch
    #: Recompute each up-block and the SR stage in the backward pass.
    grad_checkpointing: bool = False
    #: Add the image-wide mean and max of the features (through a small MLP) at every trunk level:
    #: material-wide properties (roughness, metallic, how light the albedo is) seen anywhere.
    global_context: bool = False
    #: The albedo head predicts a correction (in logit space) to the mean of the input photos,
    #: starting from it: the photos as taken already say most of the albedo.
    albedo_from_photos: bool = False


@dataclass
class PatchGANConfig:
    """PatchGAN on the 8-channel map stack; ``n_layers`` stride-2 convs set the receptive field."""

    _target_: str = "neuropbr.models.discriminators.patchgan.PatchGANDiscriminator"
    #: Stride-2 convs, 3..7: receptive field 9 * 2**n_layers - 2 = 70/142/286/574/1150 px.
    n_layers: int = 6
    #: Width of the first conv; each stride-2 conv doubles it up to ``max_channels``.
    ndf: int = 64
    max_channels: int = 512
    norm: Norm = Norm.batch
    #: Also show the discriminator the input views (pix2pix-style conditioning).
    conditional: bool = False


@dataclass
class ModelSummaryConfig:
    """``python -m neuropbr.summary``: the ``summary`` section of ``conf/summary.yaml``."""

    #: Input resolutions to estimate FLOPs and activation memory at (null: ``data.resolution``).
    resolutions: list[int] | None = None


@dataclass
class NoDiscriminatorConfig:
    """``discriminator=none``: no GAN; the loss's ``gan`` weight is ignored."""

    _target_: str | None = None


# --- loss, optimisation -------------------------------------------------------------------------


@dataclass
class LossConfig:
    """Composite loss; every term's weight is ``loss.weights.<term>`` (0 disables the term)."""

    _target_: str = "neuropbr.losses.composite.build_loss"
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "l1": 1.0,
            "mse": 0.0,
            "ssim": 0.3,
            "normal": 0.5,
            "gan": 0.05,
            "perceptual": 0.0,
            "render": 0.0,
            "light": 0.0,
        }
    )
    #: Per-map weights inside the L1 term (the guide's w_albedo, w_roughness, ...).
    map_weights: dict[str, float] = field(
        default_factory=lambda: {"albedo": 1.0, "roughness": 1.0, "metallic": 1.0, "normal": 1.0}
    )
    #: Maps the squared-error term (``weights.mse``) compares: PSNR rewards predicting the mean
    #: where the photos leave a map uncertain, which L1 (the median) does not.
    mse_maps: list[str] = field(default_factory=lambda: ["roughness", "metallic"])
    ssim_maps: list[str] = field(default_factory=lambda: ["albedo"])
    ssim_window: int = 11
    gan_type: GanLoss = GanLoss.hinge
    perceptual_maps: list[str] = field(default_factory=lambda: ["albedo"])
    #: Local VGG16 weights file (torchvision state dict); required when the term is on offline.
    perceptual_weights: str | None = None
    #: Random light/view configurations per step for the rendering loss.
    render_num_configs: int = 4
    render_eps: float = 0.01


@dataclass
class TorchOptimizerConfig:
    """A ``torch.optim`` class, called once per network with its parameters and learning rate."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class OptimizerConfig:
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    generator: TorchOptimizerConfig = field(default_factory=TorchOptimizerConfig)
    discriminator: TorchOptimizerConfig = field(default_factory=TorchOptimizerConfig)


@dataclass
class SchedulerConfig:
    """Per-epoch LR schedule with a linear warmup from ``warmup_start_factor`` of the lr."""

    _target_: str = MISSING
    _partial_: bool = True
    warmup_epochs: int = 0
    #: Warm up over this many optimizer steps instead (the lr rises every step); set
    #: ``warmup_epochs=0`` with it: both > 0 is an error.
    warmup_steps: int = 0
    warmup_start_factor: float = 0.1


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "neuropbr.training.schedules.cosine"
    warmup_epochs: int = 5
    min_lr: float = 1e-6


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "neuropbr.training.schedules.step"
    step_size: int = 30
    gamma: float = 0.1


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    _target_: str = "neuropbr.training.schedules.plateau"
    patience: int = 10
    factor: float = 0.5
    min_lr: float = 1e-6


@dataclass
class ConstantSchedulerConfig(SchedulerConfig):
    _target_: str = "neuropbr.training.schedules.constant"


# --- trainer, tracking, paths --------------------------------------------------------------------


@dataclass
class EarlyStoppingConfig:
    """``trainer.early_stopping``: stop when a validation metric stops improving (off while
    ``metric`` is null)."""

    #: A validation key to watch, e.g. ``val/loss`` or ``val/skill_db`` (null: no early stopping).
    metric: str | None = None
    #: Validations in a row without an improvement of more than ``min_delta`` before stopping.
    patience: int = 5
    mode: MetricMode = MetricMode.min
    min_delta: float = 0.0


@dataclass
class ProfilerConfig:
    """``trainer.profiler``: a torch.profiler trace of a few training batches (``debug=profiler``),
    written to ``<run dir>/profiler/`` (Chrome trace, operator table) and uploaded to MLflow."""

    enabled: bool = False
    #: Batches skipped first (start-up), then traced and discarded (the profiler's own warm-up),
    #: then recorded.
    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = True
    profile_memory: bool = True
    #: Python stacks per operator (a much larger trace).
    with_stack: bool = False
    #: Rows of the operator table written to train.log.
    row_limit: int = 20


@dataclass
class TrainerConfig:
    max_epochs: int = 100
    #: Optional cap on optimiser steps (smoke runs); training stops at whichever comes first.
    max_steps: int | None = None
    precision: Precision = Precision.auto
    device: DeviceKind = DeviceKind.auto
    #: A checkpoint path, or ``auto`` for ``checkpoints/latest.pth`` of this run directory.
    resume: str | None = None
    #: ``resume=auto`` when the newest ``latest.pth`` is unreadable and an older one is usable:
    #: ``error`` stops naming both, ``older`` resumes the older one with a warning.
    resume_fallback: ResumeFallback = ResumeFallback.error
    gan_start_epoch: int = 5
    d_steps_per_g_step: int = 1
    val_every_n_epochs: int = 1
    grad_clip_norm: float | None = 1.0
    d_grad_clip_norm: float | None = None
    #: Exponential moving average of the generator, used for validation (null = off).
    ema_decay: float | None = None
    #: torch.compile the generator and discriminator (CUDA).
    compile: bool = False
    #: channels_last (NHWC) memory format for the networks, on CUDA and CPU (oneDNN's convolutions
    #: are faster in it on CPU too: experiments/benchmarks/README.md).
    channels_last: bool = True
    #: DDP; also switched on when torchrun's WORLD_SIZE > 1 is in the environment.
    distributed: bool = False
    save_every_n_epochs: int = 5
    save_best_only: bool = False
    #: An optimizer step every k batches, on the mean gradient of the k (each loss divided by k;
    #: the epoch's last group may be shorter). D steps by the same rule. Steps (max_steps,
    #: log_every_n_steps, scheduler.warmup_steps) count optimizer steps, not batches.
    accumulate_grad_batches: int = 1
    #: Log the training window every this many optimizer steps.
    log_every_n_steps: int = 10
    log_images_every_n_epochs: int = 5
    #: Number of validation samples shown in image grids.
    num_log_images: int = 4
    progress_bar: bool = True
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    #: A step whose loss (or gradient norm) is NaN/inf is never applied; ``raise`` stops the run
    #: after ``nonfinite_patience`` such steps in a row (nothing saved), ``skip_step`` goes on.
    on_nonfinite: OnNonFinite = OnNonFinite["raise"]  # type: ignore[misc]
    nonfinite_patience: int = 3
    # --- debugging (conf/debug/) ---
    #: Training batches per epoch: null (all), a fraction in (0, 1] (at least one batch) or a
    #: count >= 1; the epoch's first batches, in its usual order.
    limit_train_batches: int | float | None = None
    #: Validation batches per validation (per process under DDP), as for training.
    limit_val_batches: int | float | None = None
    #: N > 0: train on the same N batches every epoch (same order, same augmentation) and validate
    #: on N batches: the training loss must fall. 0: off.
    overfit_batches: int = 0
    #: A development run (``debug=fdr``): checkpoints stay local, no MLflow model is logged.
    fast_dev_run: bool = False
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)


@dataclass
class MlflowTrackingConfig:
    _target_: str = "neuropbr.training.tracking.MlflowTracker"
    #: Tracking URI; null -> $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir.
    uri: str | None = None
    experiment_name: str = "neuropbr"
    run_name: str | None = None
    #: Also write TensorBoard event files under the run directory.
    tensorboard: bool = False
    #: Upload the full training state (best_model.pth, latest.pth: networks, optimizers, RNG) at
    #: the end of training; it stays a local checkpoint otherwise.
    log_checkpoints: bool = False
    #: Former name of ``log_checkpoints`` (accepted with a warning; null = not given).
    log_checkpoint: bool | None = None
    tensorboard_dir: str = SI("${paths.output_dir}/tensorboard")
    #: A remote server that stops answering mid-run: seconds between attempts to re-send what
    #: was kept in memory meanwhile (training goes on).
    retry_every_s: float = 60.0
    #: Log the generator (EMA weights when on) as an MLflow model at the end of training:
    #: ``runs:/<id>/model`` (the best validation's weights) and ``last_model`` (the final ones).
    log_model: bool = True
    #: Register ``model`` as a new version of this registered model (``models:/<name>/<version>``).
    register_model: str | None = None


@dataclass
class NoTrackingConfig:
    _target_: str = "neuropbr.training.tracking.NullTracker"


@dataclass
class PathsConfig:
    output_dir: str = SI("${hydra:runtime.output_dir}")
    checkpoint_dir: str = SI("${paths.output_dir}/checkpoints")


@dataclass
class SweepHandleConfig:
    """Set by the Optuna sweeper on each trial job (users leave these null)."""

    storage: str | None = None
    study_name: str | None = None
    trial_number: int | None = None
    mlflow_parent_run_id: str | None = None
    #: The trial's MLflow run name (its number and the values tried).
    run_name: str | None = None


@dataclass
class BenchmarkConfig:
    """``benchmark.*``: reproduce the original stack's work for like-for-like benchmarks
    (``neuropbr.bench``); never needed to train. Both off is the shipped loop."""

    #: Re-run the generator forward in the discriminator step instead of reusing its output.
    recompute_fakes: bool = False
    #: The per-tensor loop of Adam/AdamW/SGD instead of their fused kernel.
    per_tensor_optimizer: bool = False


@dataclass
class TrainConfig:
    """The root of ``conf/train.yaml``; the groups are filled in by its defaults list."""

    data: Any = MISSING
    encoder: Any = MISSING
    fusion: Any = MISSING
    decoder: Any = MISSING
    discriminator: Any = MISSING
    loss: Any = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: Any = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    sweep: SweepHandleConfig = field(default_factory=SweepHandleConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    #: Everything random derives from this.
    seed: int = 42
    #: What ``train`` returns to a sweeper and what picks ``best_model.pth``.
    optimized_metric: str = "val/loss"
    optimized_metric_mode: MetricMode = MetricMode.min
    task_name: str = "train"
    #: MLflow tags of the run: ``name`` (tag = true) or ``key:value``, e.g. ``tags=[baseline,owner:ana]``.
    tags: list[str] = field(default_factory=list)


# --- python -m neuropbr.synth ---------------------------------------------------------------------


@dataclass
class SynthDataConfig:
    """The data shape written by ``neuropbr.synth`` (named as in ``data=`` so overrides read alike)."""

    #: Side of the square views and maps, in pixels.
    resolution: int = 256
    #: V, the number of views per sample.
    num_views: int = 3


@dataclass
class SynthConfig:
    """The root of ``conf/synth.yaml``: write a synthetic dataset in the folder layout."""

    #: Dataset root to create (``out/input/...``, ``out/output/...``).
    out: str = MISSING
    num_materials: int = 16
    #: Samples (different lights, cameras, dirt) rendered per material.
    samples_per_material: int = 1
    camera: CameraKind = CameraKind.aligned
    seed: int = 0
    #: Worker processes (null = every core available to this process).
    num_workers: int | None = None
    #: Scale of the dirty artifacts (0 makes dirty renders equal to clean ones).
    artifact_strength: float = 1.0
    #: Optional equirectangular Radiance ``.hdr`` map that lights the scenes instead of skies.
    hdr: str | None = None
    #: Replace ``out/input`` and ``out/output`` if they already hold files.
    overwrite: bool = False
    data: SynthDataConfig = field(default_factory=SynthDataConfig)
    # --- library mode (``materials=PATH``; neuropbr/synth_library.py) ---
    #: A material library to render instead of procedural materials (see neuropbr/data/library.py).
    materials: str | None = None
    #: Library mode: samples (crops, cameras, lights) per material; running again with a larger
    #: value adds the missing samples (default: ``samples_per_material``).
    num_samples_per_material: int | None = None
    #: Library mode: a ``.hdr`` file or a folder of them; each sample draws one (or procedural lights).
    hdri: str | None = None
    #: Library mode: share of samples lit by an ``hdri`` map (the rest by the procedural lights).
    hdri_probability: float = 0.5
    #: Library mode: crop side as a share of the largest crop that fits, drawn log-uniformly.
    crop_scale: list[float] = field(default_factory=lambda: [0.25, 1.0])
    #: Library mode: turn crops by a random angle (normals turned with them).
    crop_rotation: bool = True
    #: Library mode: a mapping file other than ``<materials>/layout.yaml``.
    layout: str | None = None
    #: Library mode: constant for materials without a roughness map (null: the layout's, else 0.5).
    roughness_default: float | None = None
    #: Library mode: ``raise`` on any library problem, or ``skip`` the refused materials.
    on_error: OnError = OnError["raise"]  # type: ignore[misc]


# --- python -m neuropbr.infer / evaluate / export ---------------------------------------------------


class EvalSplit(str, Enum):
    """Which samples ``neuropbr.evaluate`` scores: the training run's split, or every sample."""

    train = "train"
    val = "val"
    all = "all"


class OutputNaming(str, Enum):
    """Batch inference's output folders: by material (from ``render_metadata.json``), by sample,
    or ``auto`` (by material when the metadata lists every sample, else by sample)."""

    auto = "auto"
    material = "material"
    sample = "sample"


class ExportFormat(str, Enum):
    """``onnx`` (dynamo exporter), ``torchscript`` (``torch.jit.trace`` -> ``.pt``) or ``pt2``
    (``torch.export`` ExportedProgram)."""

    onnx = "onnx"
    torchscript = "torchscript"
    pt2 = "pt2"


@dataclass
class InferConfig:
    """The root of ``conf/infer.yaml``: photos of a flat material -> four PBR texture files."""

    #: A checkpoint written by ``neuropbr.train`` (its stored config rebuilds the generator).
    checkpoint: str = MISSING
    #: Instead of ``checkpoint``: an MLflow model a training run logged, ``runs:/<run id>/model``,
    #: ``models:/<name>/<version>`` or a model directory (store: ``$MLFLOW_TRACKING_URI``, else
    #: ``sqlite:///mlflow.db`` in the working directory).
    model: str | None = None
    #: The V view images of one sample (aligned photos of the same material), in any order.
    views: list[str] | None = None
    #: Batch mode instead of ``views``: a dataset root in the folder layout
    #: (``input_dir/input/{clean,dirty}/<sample>/{0..V-1}.png``); see ``naming`` for the folders.
    input_dir: str | None = None
    #: Batch mode: which render folder to read; ``both`` writes ``out/{clean,dirty}/...``.
    renders: Renders = Renders.clean
    #: Batch mode: ``material`` writes ``out/<material>/`` (one sample per material) or
    #: ``out/<material>/<sample>/`` (several), from ``input/render_metadata.json``; ``sample``
    #: writes ``out/<sample>/``; ``auto``: material when the metadata lists every sample.
    naming: OutputNaming = OutputNaming.auto
    #: Output folder (created).
    out: str = "maps"
    #: ``[W, H]`` of the written maps (null: the size of the input views).
    size: list[int] | None = None
    #: Run on overlapping tiles at the photos' own scale instead of resizing them to the
    #: training resolution (for photos much larger than it).
    tiled: bool = False
    #: Tile side in input pixels (null: chosen from the model, ``inference.auto_tile_size``: the
    #: training resolution for ViT fusion, else as large as the memory budget allows).
    tile_size: int | None = None
    #: Share of a tile that overlaps its neighbour, in [0, 0.9].
    tile_overlap: float = 0.25
    #: Tiles per forward pass.
    tile_batch_size: int = 4
    #: 8 or 16 (16-bit PNGs).
    bit_depth: int = 8
    #: Encoding of ``normal.png``: opengl (+Y up) or directx (G flipped).
    normal_convention: NormalConvention = NormalConvention.opengl
    #: Also write ``preview.png``: the predicted material rendered under a point light.
    preview: bool = False
    #: Longest side of the preview (the maps are downscaled for it when larger).
    preview_max_size: int = 1024
    #: Use the EMA weights when the checkpoint has them.
    ema: bool = True
    device: DeviceKind = DeviceKind.auto
    #: Raw photos of one sample instead of ``views`` (handheld, in perspective, any sizes; the
    #: first is the reference); needs ``align=true``.
    photos: list[str] | None = None
    #: Rectify and align the photos before inference (``neuropbr.align``): ``photos``, or each
    #: sample's views in batch mode. Writes ``aligned/`` and ``align_report.json`` beside the maps.
    align: bool = False
    #: The sample's four corners in the reference photo, ``[[x, y], ...]`` in pixels, any order
    #: (null: found automatically on a plain, contrasting background). The pairs are checked as
    #: numbers before anything loads: OmegaConf 2.3 refuses integers in a nested float list.
    corners: list[list[Any]] | None = None
    #: Per photo, its own four corners or null (aligned to the reference by features).
    photo_corners: list[list[list[Any]] | None] | None = None
    #: Side of the rectified square views in pixels (null: the sample's size in the reference
    #: photo, at most 2048).
    align_resolution: int | None = None
    #: Long side of the photo copies that features are detected on.
    align_feature_size: int = 1024
    #: A photo aligned with fewer RANSAC inliers fails.
    align_min_inliers: int = 30


@dataclass
class EvaluateConfig:
    """The root of ``conf/evaluate.yaml``: the full metric set of a checkpoint on a dataset.

    ``data`` is null unless a group option is picked (``data=folder data.root=DIR``); then the
    checkpoint's own data config is used. Keys the checkpoint defines (``data.resolution``,
    ``data.num_views``, ``data.val_ratio``, ``data.seed``, ...) keep the training run's values unless
    given on the command line, so ``split=val`` is the training run's validation split.
    """

    checkpoint: str = MISSING
    data: Any = None
    #: ``val`` (the training run's validation materials), ``train`` or ``all`` samples.
    split: EvalSplit = EvalSplit.val
    #: Metrics JSON (null: ``<checkpoint without .pth>.<split>.<dataset>.metrics.json`` beside the
    #: checkpoint; ``<dataset>``: root folder name or data kind, renders, hash of the data config).
    out: str | None = None
    #: Also compute the training loss (``<split>/loss``) with the checkpoint's loss config.
    #: (Not named ``loss``: that is a config group, and ``loss=false`` would select an option.)
    compute_loss: bool = True
    ema: bool = True
    device: DeviceKind = DeviceKind.auto
    #: Autocast as in training's validation (``auto``: bf16/fp16 on GPU, fp32 on CPU).
    precision: Precision = Precision.auto
    tracking: Any = MISSING
    #: Seed of the split (null: the training run's ``data.seed``).
    seed: int | None = None


@dataclass
class ExportConfig:
    """The root of ``conf/export.yaml``: the generator alone, for another runtime."""

    checkpoint: str = MISSING
    format: ExportFormat = ExportFormat.onnx
    #: Output file (null: beside the checkpoint, ``.onnx`` / ``.pt`` / ``.pt2``); the contract is
    #: written to ``<out>.contract.json``.
    out: str | None = None
    #: ONNX opset (``format=onnx``); 18 runs on onnxruntime >= 1.14 and TensorRT 10.
    opset: int = 18
    ema: bool = True
    #: Compare the reloaded export with PyTorch and fail above ``tolerance`` (max abs diff, fp32).
    check: bool = True
    tolerance: float = 1e-4


# --- python -m neuropbr.bench ------------------------------------------------------------------


class BenchSuite(str, Enum):
    """``quick``: <= 3 minutes on 2 CPU cores; ``standard``: the presets, fast_iteration pairs and
    PNG vs cache loading (~12 minutes); ``full``: more resolutions, steps and repeats."""

    quick = "quick"
    standard = "standard"
    full = "full"


class BenchSection(str, Enum):
    """Parts of a benchmark suite (``bench.sections``)."""

    train = "train"
    #: Step times across epoch boundaries (fit() with validation and checkpoints).
    epochs = "epochs"
    loading = "loading"
    optimisations = "optimisations"


@dataclass
class BenchConfig:
    """The root of ``conf/bench.yaml``: training, inference and data-loading throughput.

    Every measured configuration runs in its own fresh process (its peak memory is its own);
    repeats are interleaved (A B A B ...). ``null`` fields take the suite's value.
    """

    suite: BenchSuite = BenchSuite.quick
    #: Where to measure (``auto``: CUDA when available).
    device: DeviceKind = DeviceKind.auto
    #: The JSON result; the table is written beside it (``.md``) and printed.
    out: str = "bench.json"
    #: Which parts to run; ``optimisations`` (like-for-like to as shipped one change at a time,
    #: plus the CPU-specific changes) is a longer, separate run.
    sections: list[BenchSection] = field(
        default_factory=lambda: [BenchSection.train, BenchSection.epochs, BenchSection.loading]
    )
    #: Run only the cases whose name contains one of these strings (null: all).
    only: list[str] | None = None
    #: Folder dataset for the PNG/cache cases (null: written once by ``neuropbr.synth`` into the
    #: user cache folder, 40 materials at 256 px).
    data_root: str | None = None
    #: Runs per case, interleaved across cases.
    repeats: int | None = None
    #: Steps excluded from the timing at the start of each run.
    warmup_steps: int | None = None
    #: Timed windows per run, and steps per window.
    windows: int | None = None
    window_steps: int | None = None
    #: Timed forward passes per inference measurement.
    inference_runs: int | None = None
    #: Batches timed per data-loading case (after the first, which starts the workers).
    loading_batches: int | None = None
    #: torch intra-op threads in every measured process (null: torch's default).
    threads: int | None = None
    #: Extra training overrides appended to every training case (e.g. to compare a change).
    overrides: list[str] = field(default_factory=list)
    #: Seconds after which one measured process is stopped (its case is reported as failed).
    case_timeout_s: int = 1800


#: Each group's schemas, extended by ``conf/<group>/<option>.yaml`` through its defaults list
#: (``- /encoder_timm_schema@_here_``). Stored under top-level names, not as options of their
#: group: a group option is listed by ``--help`` and tab completion as a choice
#: (``encoder=base_timm``), and composing one alone gives a config with nothing set.
_SCHEMAS: dict[str, dict[str, type]] = {
    "data": {
        "data_synthetic_schema": SyntheticDataConfig,
        "data_folder_schema": FolderDataConfig,
        "data_library_schema": LibraryDataConfig,
        "data_mix_schema": MixDataConfig,
    },
    "encoder": {"encoder_timm_schema": TimmEncoderConfig, "encoder_unet_schema": UNetEncoderConfig},
    "fusion": {"fusion_vit_schema": ViTFusionConfig, "fusion_pool_schema": PoolFusionConfig},
    "decoder": {"decoder_unet_heads_schema": UNetHeadsDecoderConfig},
    "discriminator": {
        "discriminator_patchgan_schema": PatchGANConfig,
        "discriminator_none_schema": NoDiscriminatorConfig,
    },
    "loss": {"loss_schema": LossConfig},
    "optimizer": {"optimizer_schema": OptimizerConfig},
    "scheduler": {
        "scheduler_cosine_schema": CosineSchedulerConfig,
        "scheduler_step_schema": StepSchedulerConfig,
        "scheduler_plateau_schema": PlateauSchedulerConfig,
        "scheduler_constant_schema": ConstantSchedulerConfig,
    },
    "trainer": {"trainer_schema": TrainerConfig},
    "tracking": {"tracking_mlflow_schema": MlflowTrackingConfig, "tracking_none_schema": NoTrackingConfig},
    "paths": {"paths_schema": PathsConfig},
}


def register_configs() -> None:
    """Register every schema in Hydra's ConfigStore, and our Optuna sweeper plugin. Called by
    the CLIs (and tests) before composing."""
    # Explicit, because Hydra's plugin scan cannot list hydra_plugins/ through an editable install.
    from hydra_plugins.neuropbr_optuna import register_plugin as register_optuna_sweeper

    register_optuna_sweeper()
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="synth_schema", node=SynthConfig)
    cs.store(name="summary_schema", node=ModelSummaryConfig)
    cs.store(name="infer_schema", node=InferConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="export_schema", node=ExportConfig)
    cs.store(name="bench_schema", node=BenchConfig)
    for schemas in _SCHEMAS.values():
        for name, schema in schemas.items():
            cs.store(name=name, node=schema)
