"""Device and mixed-precision policy (``trainer.device``, ``trainer.precision``)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(kind: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's local rank) when available, else CPU."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "trainer.device=cuda but torch sees no CUDA device; use trainer.device=cpu or auto"
            )
        return torch.device("cuda", local_rank)
    if kind == "cpu":
        return torch.device("cpu")
    raise ValueError(f"trainer.device={kind!r}; choose one of ['auto', 'cpu', 'cuda']")


@dataclass(frozen=True)
class Precision:
    """What ``trainer.precision`` resolved to on this device.

    Attributes:
        name: bf16, fp16 or fp32.
        dtype: the autocast dtype, or None for fp32.
        device_type: "cuda" or "cpu" (autocast's device type).
    """

    name: str
    dtype: torch.dtype | None
    device_type: str

    @property
    def uses_grad_scaler(self) -> bool:
        """fp16 needs loss scaling (its exponent range underflows small gradients); bf16 does not."""
        return self.dtype is torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler (one per optimizer: G and D losses have very different scales)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_grad_scaler)


#: ``/proc/cpuinfo`` flags of CPUs where bf16 training is fast: Intel AMX tiles (Sapphire Rapids
#: and later). AVX512-BF16 alone is not enough: on a 2-core AMD EPYC with ``avx512_bf16`` a
#: quick_test training step (G + D, losses, AdamW) took 1.14x longer in bf16 than in fp32
#: (experiments/benchmarks/README.md), although a conv + attention probe ran 1.34x faster.
BF16_CPU_FLAGS = ("amx_bf16",)

#: bf16 is chosen on CPU only when the probe measures it at least this much faster than fp32.
MIN_CPU_BF16_SPEEDUP = 1.1


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"


def cpu_bf16_choice(
    flags: Iterable[str], capability: str, probe: Callable[[], float] | None = None
) -> tuple[bool, str]:
    """Whether ``trainer.precision=auto`` picks bf16 on this CPU, and why.

    Args:
        flags: the CPU's feature flags (:func:`cpu_flags`).
        capability: torch's CPU capability (``torch.backends.cpu.get_cpu_capability()``), for the
            reason only: it names the vector unit torch dispatches to, not bf16 support.
        probe: measures bf16 autocast's speed-up over fp32 on this CPU (called only when a
            native bf16 flag is present; None: trust the flag).

    Returns:
        ``(bf16?, reason)``.
    """
    native = [flag for flag in BF16_CPU_FLAGS if flag in set(flags)]
    if not native:
        return False, (
            f"no fast bf16 on this CPU (none of {', '.join(BF16_CPU_FLAGS)} in its flags; torch "
            f"capability {capability}): bf16 training would be slower than fp32"
        )
    if probe is None:
        return True, f"native bf16 on this CPU ({', '.join(native)}; torch capability {capability})"
    speedup = probe()
    if speedup < MIN_CPU_BF16_SPEEDUP:
        return False, (
            f"{', '.join(native)} present, but bf16 autocast measured {speedup:.2f}x fp32's speed "
            f"(below {MIN_CPU_BF16_SPEEDUP}x) on a conv + attention probe"
        )
    return True, f"{', '.join(native)} present and bf16 autocast measured {speedup:.2f}x fp32's speed"


def _probe_step(dtype: torch.dtype | None) -> float:
    """Seconds of one forward + backward of a small conv + attention block (the generator's op mix)."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    block = torch.nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True, dropout=0.0)
    image = torch.rand(2, 64, 64, 64, generator=generator)  # (B, C, H, W)
    tokens = torch.rand(2, 256, 256, generator=generator)  # (B, N, D)
    context = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
    start = time.perf_counter()
    with context:
        loss = conv(image).float().square().mean() + block(tokens).float().square().mean()
    loss.backward()
    return time.perf_counter() - start


def measure_cpu_bf16_speedup(runs: int = 3) -> float:
    """fp32 seconds / bf16-autocast seconds of the probe step (medians after a warm-up each)."""
    times: dict[torch.dtype | None, list[float]] = {None: [], torch.bfloat16: []}
    for dtype in times:
        _probe_step(dtype)  # warm-up: kernel selection, first-touch allocation
    for _ in range(runs):  # interleaved, so a busy neighbour slows both alike
        for dtype in times:
            times[dtype].append(_probe_step(dtype))
    return statistics.median(times[None]) / statistics.median(times[torch.bfloat16])


def _probe_cache_path() -> Path:
    from neuropbr.data.cache import user_cache_root

    return user_cache_root() / "cpu_bf16_probe.json"


@functools.cache
def cached_cpu_bf16_speedup() -> float:
    """:func:`measure_cpu_bf16_speedup`, measured once per CPU model, torch version and thread
    count and kept in the user cache folder (about a second saved at each later start)."""
    key = f"{_cpu_model()}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    path = _probe_cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached, dict) and isinstance(cached.get(key), float):
        return cached[key]
    speedup = measure_cpu_bf16_speedup()
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = speedup
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=1) + "\n")
    except OSError as err:  # a read-only home: measure again next time
        log.debug("could not cache the bf16 probe in %s: %s", path, err)
    return speedup


def auto_precision(device: torch.device, probe: Callable[[], float] | None = None) -> tuple[str, str]:
    """What ``trainer.precision=auto`` means on ``device``, and why.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 only where the CPU computes it
    natively (:data:`BF16_CPU_FLAGS`) and the probe measures it faster than fp32, else fp32.

    Args:
        device: the training device.
        probe: the CPU speed-up measurement (default: :func:`cached_cpu_bf16_speedup`).

    Returns:
        ``(name, reason)``.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bf16"
        return "fp16", "the GPU lacks bf16 (fp16 with loss scaling)"
    bf16, reason = cpu_bf16_choice(
        cpu_flags(), torch.backends.cpu.get_cpu_capability(), probe or cached_cpu_bf16_speedup
    )
    return ("bf16" if bf16 else "fp32"), reason


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: see :func:`auto_precision` (bf16 or fp16 on GPUs, bf16 on CPUs with native
    bf16 that measure it faster, else fp32); the choice and its reason are logged.

    On CPU, bf16 and fp16 autocast run when asked for explicitly (useful to exercise the AMP
    path without a GPU) even where they are slow.
    """
    reason = "trainer.precision"
    if name == "auto":
        name, reason = auto_precision(device)
        reason = f"trainer.precision=auto: {reason}"
    if name not in _DTYPES:
        raise ValueError(f"trainer.precision={name!r}; choose one of ['auto', 'bf16', 'fp16', 'fp32']")
    precision = Precision(name=name, dtype=_DTYPES[name], device_type=device.type)
    log.info("precision: %s on %s (%s)", name, device, reason)
    return precision
