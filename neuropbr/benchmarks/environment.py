"""What a benchmark ran on: software, device, threads, load; peak memory; device peak FLOP/s."""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch

from neuropbr.utils.provenance import git_state
from neuropbr.utils.system import available_cores

#: Dense (no sparsity) bf16 tensor-core peak TFLOP/s per GPU, from the vendors' data sheets.
#: Matched against ``torch.cuda.get_device_name()`` by the longest key it contains.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.4,
    "GH200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,  # the SXM part's device name
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,  # an unnamed variant: the lowest H100 figure
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 6000 Ada": 364.2,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
    "A6000": 154.8,
}
_GIB = 1024**3


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak TFLOP/s of a GPU by name, or None for a device not in :data:`PEAK_BF16_TFLOPS`.

    Args:
        device_name: e.g. ``"NVIDIA H100 80GB HBM3"``.

    Returns:
        The peak, or None ("unknown device": no MFU is reported).
    """
    matches = [key for key in PEAK_BF16_TFLOPS if key.lower() in device_name.lower()]
    if not matches:
        return None
    return PEAK_BF16_TFLOPS[max(matches, key=len)]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD features that decide CPU matmul speed (AVX2, AVX-512, AMX, bf16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return [flag for flag in wanted if flag in flags]


def git_commit() -> str:
    """``<commit>`` of the source checkout, ``+dirty`` when the working tree has changes."""
    commit, dirty = git_state()
    return f"{commit}+dirty" if dirty else commit


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other processes competing for the cores)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` on CUDA, the CPU model on CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def environment(device: torch.device) -> dict[str, Any]:
    """Everything a reader needs to compare two benchmark files.

    Args:
        device: the measured device.

    Returns:
        A JSON-serialisable dict: versions, device, cores, threads, git commit, load average.
    """
    env: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": socket.gethostname(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "device": str(device),
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": available_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "git_commit": git_commit(),
        "load_average_start": load_average(),
        "memory_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / _GIB, 1)
        if hasattr(os, "sysconf")
        else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_memory_gib"] = round(props.total_memory / _GIB, 1)
        env["peak_bf16_tflops"] = peak_tflops(env["device_name"])
    return env


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's reserve).
    CPU: the resident-set high-water mark (``VmHWM``; ``ru_maxrss`` where /proc is missing).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, KiB on Linux


def children_peak_rss_bytes() -> int:
    """Largest peak RSS among this process's finished child processes (e.g. loader workers)."""
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (only at timing boundaries: never per step)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """Achieved dense-matmul TFLOP/s of this device and dtype (the practical peak on a CPU).

    Args:
        device: where to multiply.
        dtype: e.g. ``torch.float32`` on CPU, ``torch.bfloat16`` on CUDA.
        size: side of the square matrices.
        seconds: how long to keep multiplying after one warm-up product.

    Returns:
        TFLOP/s (``2 size^3`` per product).
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(4 if device.type == "cuda" else 1):
            torch.mm(a, b)
            count += 1
        synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e12
