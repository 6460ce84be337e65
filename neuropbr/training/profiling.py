"""``trainer.profiler``: a torch.profiler trace of a few training batches (``debug=profiler``).

The schedule skips ``wait`` batches (start-up, allocator and cache warm-up), traces ``warmup``
more and throws them away (the profiler's own start-up cost), then records ``active`` batches.
What was recorded goes to ``<run dir>/profiler/``: ``trace.json`` (open it in Perfetto,
https://ui.perfetto.dev, or chrome://tracing) and ``key_averages.txt``, the operator table also
written to ``train.log``; ``train.py`` uploads the folder to MLflow as the artifact ``profiler/``.
A step here is one training batch (with gradient accumulation, a micro-batch).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

log = logging.getLogger(__name__)


def check_settings(wait: int, warmup: int, active: int, row_limit: int) -> None:
    """Raise ``ValueError`` naming the ``trainer.profiler.*`` key that is out of range."""
    for key, value, low in (("wait", wait, 0), ("warmup", warmup, 0), ("active", active, 1), ("row_limit", row_limit, 1)):  # fmt: skip
        if isinstance(value, bool) or value < low:
            raise ValueError(f"trainer.profiler.{key}={value}: expected an integer >= {low}")


class BatchProfiler:
    """Profiles training batches ``wait + warmup`` to ``wait + warmup + active - 1`` (0-based).

    Args:
        out_dir: where ``trace.json`` and ``key_averages.txt`` go (created when written).
        wait, warmup, active: the schedule (see the module docstring).
        record_shapes, profile_memory, with_stack: what each event records (torch.profiler's
            options of those names; the stack makes the trace much larger).
        row_limit: rows of the key-averages table.
        device: CUDA kernels are traced and the table sorted by device time when it is a GPU.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        wait: int = 1,
        warmup: int = 1,
        active: int = 3,
        record_shapes: bool = True,
        profile_memory: bool = True,
        with_stack: bool = False,
        row_limit: int = 20,
        device: torch.device | None = None,
    ) -> None:
        check_settings(wait, warmup, active, row_limit)
        self.out_dir = Path(out_dir)
        self.wait, self.warmup, self.active, self.row_limit = wait, warmup, active, row_limit
        self.cuda = device is not None and device.type == "cuda"
        self.trace_path = self.out_dir / "trace.json"
        self.table_path = self.out_dir / "key_averages.txt"
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self.with_stack = with_stack
        self._profile: profile | None = None
        self._batches = 0
        self.recorded = False

    def start(self) -> None:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        self._profile = profile(
            activities=activities,
            schedule=schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1),
            on_trace_ready=self._write,
            record_shapes=self.record_shapes,
            profile_memory=self.profile_memory,
            with_stack=self.with_stack,
        )
        self._profile.start()

    def step(self) -> None:
        """Call after each training batch."""
        if self._profile is not None:
            self._batches += 1
            self._profile.step()

    def stop(self) -> None:
        """End profiling (idempotent); a run shorter than the schedule writes what was recorded."""
        if self._profile is None:
            return
        profiler, self._profile = self._profile, None
        profiler.stop()
        if not self.recorded:
            log.warning(
                "trainer.profiler: the run ended after %d batch(es), before any was recorded "
                "(recording starts after wait=%d + warmup=%d); nothing written",
                self._batches,
                self.wait,
                self.warmup,
            )

    def _write(self, profiler: profile) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(self.trace_path))
        sort_by = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort_by, row_limit=self.row_limit)
        self.table_path.write_text(table + "\n")
        self.recorded = True
        log.info(
            "profiler: %d batch(es) recorded after %d skipped; Chrome trace %s (open it in "
            "https://ui.perfetto.dev); operators by %s:\n%s",
            min(self.active, self._batches - self.wait - self.warmup),
            self.wait + self.warmup,
            self.trace_path,
            sort_by,
            table,
        )
