"""Markdown table of held-out scores against their baselines, from `neuropbr.evaluate` JSON reports.

    python experiments/generalisation/report.py clean=runs/clean.json dirty=runs/dirty.json ...

Each argument is ``label=path``; the table has one row per report: albedo, roughness and metallic
PSNR of the model beside the constant baseline (albedo: also the view-mean and photo-mean ones),
the normal's mean angle beside the flat normal's, and the mean skill in dB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    (
        "albedo PSNR",
        "albedo_psnr",
        (
            "baseline_constant_albedo_psnr",
            "baseline_view_mean_albedo_psnr",
            "baseline_photo_mean_albedo_psnr",
        ),
    ),
    ("roughness PSNR", "roughness_psnr", ("baseline_constant_roughness_psnr",)),
    ("metallic PSNR", "metallic_psnr", ("baseline_constant_metallic_psnr",)),
    ("normal angle (deg)", "normal_angle_mean", ("baseline_flat_normal_angle_mean",)),
)


def metrics_of(report: dict) -> dict[str, float]:
    """A report's metrics without the split prefix (``val/albedo_psnr`` -> ``albedo_psnr``)."""
    split = report["split"]
    return {key.removeprefix(f"{split}/"): value for key, value in report["metrics"].items()}


def row(label: str, report: dict) -> str:
    metrics = metrics_of(report)
    cells = [label, str(report["num_samples"])]
    for _, key, baselines in COLUMNS:
        cells.append(" / ".join(f"{metrics[k]:.2f}" for k in (key, *baselines)))
    cells.append(f"{metrics['skill_db']:+.2f}")
    return "| " + " | ".join(cells) + " |"


def main(arguments: list[str]) -> None:
    header = [
        "inputs",
        "samples",
        *(f"{name} (model / {' / '.join(b.split('_')[1] for b in bases)})" for name, _, bases in COLUMNS),
        "skill_db",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for argument in arguments:
        label, _, path = argument.partition("=")
        lines.append(row(label, json.loads(Path(path).read_text())))
    print("\n".join(lines))  # noqa: T201 -- the report is the output


if __name__ == "__main__":
    main(sys.argv[1:])
