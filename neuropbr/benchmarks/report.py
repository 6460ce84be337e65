"""Summaries of repeated runs (median and min-max), ratios of comparisons, and the printed tables."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from neuropbr.benchmarks.cases import Comparison, TrainCase

_GIB = 1024**3

#: The original stack on our 2-core machines (its own published measurements, quoted in
#: experiments/benchmarks/README.md): fast_iteration, 256 px, batch 2,
#: fp32, steps 5-44 of 44, 3 runs, median (min-max).
ORIGINAL_FAST_ITERATION: dict[str, dict[str, Any]] = {
    "gan_off": {"samples_per_s": 0.504, "range": [0.444, 0.511], "step_s": 3.96, "peak_rss_gib": 3.21},
    "gan_on": {"samples_per_s": 0.344, "range": [0.284, 0.392], "step_s": 5.46, "peak_rss_gib": 3.51},
}


def median_range(values: Sequence[float]) -> dict[str, float]:
    """``{"median", "min", "max", "n"}`` of ``values`` (non-empty)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize_train(case: TrainCase, runs: list[dict[str, Any]], peak_tflops: float | None) -> dict[str, Any]:
    """One case's runs reduced to the numbers the tables show.

    Samples/s is the median over every timed window of every run (min-max over windows);
    ``run_samples_per_s`` keeps each run's mean over its windows. Model TFLOP/s uses the
    algorithm's FLOPs (:func:`neuropbr.benchmarks.worker.model_flops`); utilisation is against
    ``peak_tflops`` (the GPU's data-sheet bf16 peak, or the CPU's measured fp32 matmul rate).

    Args:
        case: the case.
        runs: the worker results of its repeats (failed runs left out).
        peak_tflops: the reference peak, or None (no utilisation reported).

    Returns:
        A JSON-serialisable summary.
    """
    windows = [rate for run in runs for rate in run["window_samples_per_s"]]
    rate = median_range(windows)
    steps = [s for run in runs for s in run.get("step_seconds", [])]
    memory = [run["peak_memory_bytes"] / _GIB for run in runs]
    flops = runs[0]["flops"]["train_step_per_sample"]
    tflops = flops * rate["median"] / 1e12
    summary: dict[str, Any] = {
        "samples_per_s": rate,
        "run_samples_per_s": [statistics.fmean(run["window_samples_per_s"]) for run in runs],
        "step_s_median": statistics.median(steps) if steps else case.batch_size / rate["median"],
        "peak_memory_gib": median_range(memory),
        "memory_kind": runs[0]["memory_kind"],
        "worker_peak_rss_gib": max(run["worker_peak_rss_bytes"] for run in runs) / _GIB,
        "data_wait_share": statistics.median(run["data_wait_share"] for run in runs),
        "model_tflops": tflops,
        "utilisation": tflops / peak_tflops if peak_tflops else None,
        "gflops_per_sample": {k: v / 1e9 for k, v in runs[0]["flops"].items()},
        "params": {
            "generator": runs[0]["params_generator"],
            "discriminator": runs[0]["params_discriminator"],
        },
        "precision": runs[0]["precision"],
        "threads": runs[0]["threads"],
        "num_workers": runs[0]["num_workers"],
    }
    inference = [run["inference_ms"]["median"] for run in runs if "inference_ms" in run]
    if inference:
        summary["inference_ms_per_sample"] = median_range(inference)
    return summary


def summarize_epochs(run: dict[str, Any]) -> dict[str, Any]:
    """Step times around epoch boundaries from an ``epochs`` worker run.

    ``before_s``: the median step of the first epoch, its first step (warm-up) left out;
    ``first_after_s``: the median over boundaries of the first step after one; ``after_s``: the
    median of the later epochs' other steps; ``boundary_s``: the median gap between an epoch's
    last step and the next epoch's first (validation, checkpoint, the loader's next epoch).
    """
    by_epoch: dict[int, list[float]] = {}
    for step in run["steps"]:
        by_epoch.setdefault(int(step["epoch"]), []).append(float(step["seconds"]))
    epochs = sorted(by_epoch)
    first, later = by_epoch[epochs[0]], [by_epoch[e] for e in epochs[1:]]
    before = first[1:] or first
    after = [s for steps in later for s in steps[1:]]
    first_after = [steps[0] for steps in later if steps]

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def ratio(value: float | None, base: float | None) -> float | None:
        return value / base if value is not None and base else None

    summary: dict[str, Any] = {
        "before_s": median(before),
        "first_after_s": median(first_after),
        "after_s": median(after),
        "boundary_s": median(run["boundaries"]),
        "boundaries": len(run["boundaries"]),
        "num_workers": run["num_workers"],
        "val_workers": run["val_workers"],
    }
    summary["after_ratio"] = ratio(summary["after_s"], summary["before_s"])
    summary["first_after_ratio"] = ratio(summary["first_after_s"], summary["before_s"])
    return summary


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def _epochs_table(entries: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            entry["name"],
            f"{entry['epochs']} x {entry['batches_per_epoch']}",
            _seconds(entry["summary"]["before_s"]),
            f"{_seconds(entry['summary']['first_after_s'])} ({_ratio(entry['summary']['first_after_ratio'])})",
            f"{_seconds(entry['summary']['after_s'])} ({_ratio(entry['summary']['after_ratio'])})",
            _seconds(entry["summary"]["boundary_s"]),
            f"{entry['summary']['num_workers']} / {entry['summary']['val_workers']}",
        ]
        for entry in entries
    ]
    header = ["case", "epochs x batches", "step before", "first step after", "steps after", "boundary s"]
    lines = ["", "## Epoch boundaries (fit() with validation and latest.pth; s per step, median)", ""]
    return lines + _table([*header, "workers train / val"], rows)


def compare(comparison: Comparison, summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``after / before`` ratio of samples/s (medians) and of peak memory.

    Runs were interleaved, so run i of ``after`` sat next to run i of ``before``; the
    paired per-run ratios give the spread.
    """
    before, after = summaries[comparison.before], summaries[comparison.after]
    paired = [a / b for a, b in zip(after["run_samples_per_s"], before["run_samples_per_s"]) if b > 0]
    return {
        "title": comparison.title,
        "table": comparison.table,
        "before": comparison.before,
        "after": comparison.after,
        "before_samples_per_s": before["samples_per_s"]["median"],
        "after_samples_per_s": after["samples_per_s"]["median"],
        "speedup": after["samples_per_s"]["median"] / before["samples_per_s"]["median"],
        "paired_speedups": paired,
        "before_peak_memory_gib": before["peak_memory_gib"]["median"],
        "after_peak_memory_gib": after["peak_memory_gib"]["median"],
    }


def summarize_loading(samples_per_s: list[float], setup_s: list[float]) -> dict[str, Any]:
    """A loading case's repeats: samples/s median (min-max) and data-module set-up seconds."""
    return {"samples_per_s": median_range(samples_per_s), "setup_s": median_range(setup_s)}


# --- tables -----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table whose columns are padded to line up in a terminal too."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def _rate(summary: dict[str, Any]) -> str:
    r = summary["samples_per_s"]
    return f"{r['median']:.3g} ({r['min']:.3g}-{r['max']:.3g})"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def format_report(report: dict[str, Any]) -> str:
    """The benchmark result (the JSON written by ``neuropbr.bench``) as Markdown tables."""
    env = report["environment"]
    lines = [
        f"# neuropbr.bench suite={report['suite']} device={report['device']}",
        "",
        f"- {env['device_name']} ({env['cores']} cores, torch threads {env['torch_threads']}), "
        f"torch {env['torch']}, git {env['git_commit'][:12]}{'+dirty' if env['git_commit'].endswith('+dirty') else ''}",
        f"- load average at start {env['load_average_start']}, at end {report.get('load_average_end')}; "
        f"suite ran {report['runtime_s'] / 60:.1f} min",
    ]
    if report.get("reference_peak"):
        peak = report["reference_peak"]
        lines.append(f"- utilisation is against {peak['tflops']:.3g} TFLOP/s ({peak['source']})")
    if report["train"]:
        lines += ["", "## Training (G + D step when GAN is on; median over timed windows, min-max)", ""]
        rows = []
        for entry in report["train"]:
            s = entry.get("summary")
            if s is None:
                rows.append([entry["name"], entry["variant"], "failed", "", "", "", "", "", ""])
                continue
            infer = s.get("inference_ms_per_sample", {}).get("median")
            rows.append(
                [
                    entry["name"],
                    entry["variant"],
                    _rate(s),
                    f"{s['step_s_median']:.3g}",
                    f"{s['peak_memory_gib']['median']:.2f}",
                    f"{100 * s['data_wait_share']:.0f} %",
                    f"{s['model_tflops'] * 1e3:.0f}",
                    _percent(s["utilisation"]),
                    "-" if infer is None else f"{infer:.0f}",
                ]
            )
        memory = "peak RSS GiB" if report["device"] == "cpu" else "max alloc GiB"
        lines += _table(
            ["case", "variant", "samples/s", "step s", memory, "data wait", "GFLOP/s", "util", "infer ms"],
            rows,
        )
        lines += _fast_iteration_table(report)
    groups: dict[str, list[dict[str, Any]]] = {}
    for comparison in report["comparisons"]:
        groups.setdefault(comparison["table"], []).append(comparison)
    for table, comparisons in groups.items():
        if table == "fast_iteration":
            continue
        lines += ["", f"## Before/after: {table} (side by side, interleaved runs)", ""]
        rows = [
            [
                c["title"],
                f"{c['before_samples_per_s']:.3g}",
                f"{c['after_samples_per_s']:.3g}",
                f"{c['speedup']:.2f}x",
                "-".join(f"{x:.2f}" for x in (min(c["paired_speedups"]), max(c["paired_speedups"])))
                if c["paired_speedups"]
                else "-",
                f"{c['before_peak_memory_gib']:.2f} -> {c['after_peak_memory_gib']:.2f}",
            ]
            for c in comparisons
        ]
        lines += _table(["change", "before samples/s", "after", "speed-up", "paired runs", "peak GiB"], rows)
    if report["loading"]:
        lines += ["", "## Data loading (training loader alone, samples/s, median (min-max))", ""]
        rows = [
            [
                entry["source"],
                "augment" if entry["augment"] else "decode only",
                str(entry["num_workers"]),
                _rate(entry["summary"]) if entry.get("summary") else "failed",
            ]
            for entry in report["loading"]
        ]
        lines += _table(["source", "transforms", "workers", "samples/s"], rows)
        speedups = report.get("loading_speedups", [])
        if speedups:
            lines += ["", "Decoded cache vs PNG decoding (same workers, same transforms):", ""]
            lines += _table(
                ["transforms", "workers", "cache / PNG"],
                [[s["transforms"], str(s["num_workers"]), f"{s['speedup']:.1f}x"] for s in speedups],
            )
    epochs = [e for e in report.get("epochs", []) if e.get("summary")]
    if epochs:
        lines += _epochs_table(epochs)
    if report.get("failures"):
        lines += ["", "## Failed runs", ""] + [f"- {f['name']}: {f['error']}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def _fast_iteration_table(report: dict[str, Any]) -> list[str]:
    """As shipped vs like-for-like vs the original stack (its published numbers; CPU only)."""
    if report["device"] != "cpu":
        return []
    by_name = {e["name"]: e.get("summary") for e in report["train"]}
    columns = []
    for gan in ("gan_off", "gan_on"):
        shipped = by_name.get(f"fast_iteration/256/{gan}/shipped")
        like = by_name.get(f"fast_iteration/256/{gan}/like_for_like")
        if shipped is not None or like is not None:
            columns.append((gan, shipped, like, ORIGINAL_FAST_ITERATION[gan]))
    if not columns:
        return []

    def cell(summary: dict[str, Any] | None, fmt: str) -> str:
        return "-" if summary is None else fmt.format(**summary)

    def rate(summary: dict[str, Any] | None) -> str:
        return "-" if summary is None else _rate(summary)

    def ratio(a: dict[str, Any] | None, b: float | None) -> str:
        return "-" if a is None or not b else f"{a['samples_per_s']['median'] / b:.2f}x"

    rows = [
        ["as shipped, samples/s", *(rate(s) for _, s, _, _ in columns)],
        ["like-for-like, samples/s", *(rate(like) for _, _, like, _ in columns)],
        [
            "as shipped / like-for-like (this run)",
            *(ratio(s, like["samples_per_s"]["median"] if like else None) for _, s, like, _ in columns),
        ],
        ["original (published), samples/s", *(f"{o['samples_per_s']}" for *_, o in columns)],
        ["as shipped / original", *(ratio(s, o["samples_per_s"]) for _, s, _, o in columns)],
        ["like-for-like / original", *(ratio(like, o["samples_per_s"]) for _, _, like, o in columns)],
        ["peak RSS GiB: as shipped", *(cell(s, "{peak_memory_gib[median]:.2f}") for _, s, _, _ in columns)],
        [
            "peak RSS GiB: like-for-like",
            *(cell(like, "{peak_memory_gib[median]:.2f}") for _, _, like, _ in columns),
        ],
        ["peak RSS GiB: original", *(f"{o['peak_rss_gib']}" for *_, o in columns)],
    ]
    header = [
        "fast_iteration, 256 px, batch 2",
        *("GAN off" if g == "gan_off" else "GAN on" for g, *_ in columns),
    ]
    return [
        "",
        "## fast_iteration vs the original stack (original: another run on the same kind of machine)",
        "",
        *_table(header, rows),
    ]
