"""The deep dataset check behind ``python -m neuropbr.check`` (:mod:`neuropbr.check`, the CLI).

Decodes every image fully (unlike training start-up, which reads headers and checks file
integrity without decoding), prints a report (sample counts per render folder, materials, views,
resolutions, formats, every problem as ``sample | path | problem``) and exits 1 when any problem
was found, 0 otherwise.

``python -m neuropbr.data.check`` is kept as an alias of ``python -m neuropbr.check``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from neuropbr.data.index import ScanResult, natural_key, scan_folder_dataset

log = logging.getLogger(__name__)


def check_dataset(root: str | Path, num_views: int, renders: str, workers: int | None = None) -> ScanResult:
    """Scan ``root`` with a full decode of every image.

    Args:
        root: dataset root.
        num_views: V, views each sample must have.
        renders: ``clean``, ``dirty`` or ``both``.
        workers: decoding threads (default: 2 per CPU, at most 16).

    Returns:
        The :class:`~neuropbr.data.index.ScanResult`.
    """
    return scan_folder_dataset(root, num_views, renders, deep=True, workers=workers)


def _histogram(counter: Counter[str]) -> str:
    if not counter:
        return "none"
    return ", ".join(
        f"{key} x{count}" for key, count in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    )


def format_report(scan: ScanResult, resolution: int | None = None) -> str:
    """The human-readable report the CLI prints.

    Args:
        scan: a (deep) scan.
        resolution: ``data.resolution``, to say how many images get upsampled (optional).

    Returns:
        Multi-line text ending with the verdict.
    """
    counts = scan.counts()
    output_dir = scan.root / "output"
    materials_on_disk = sum(1 for p in output_dir.iterdir() if p.is_dir()) if output_dir.is_dir() else 0
    view_files = Counter(scan.view_files.values())
    lines = [
        f"NeuroPBR dataset check: {scan.root}",
        f"  settings: data.renders={scan.renders} data.num_views={scan.num_views}"
        + (f" data.resolution={resolution}" if resolution else ""),
        f"  sample folders: input/clean/ {counts['clean']}, input/dirty/ {counts['dirty']} "
        f"(names in both {counts['in_both']}); metadata entries {len(scan.metadata)}",
        f"  samples: selected {counts['selected']}, usable {counts['usable']}, with problems "
        f"{counts['skipped']}, only in the render folder not selected {counts['unselected']}",
        f"  materials: {counts['materials']} used by usable samples; output/ holds {materials_on_disk} folders",
        "  view files per sample folder: "
        + (", ".join(f"{k} in {v} folder(s)" for k, v in sorted(view_files.items())) or "none")
        + f" (need {scan.num_views}; extra views are ignored)",
        f"  view sizes: {_histogram(scan.size_histogram('views'))}",
        f"  map sizes:  {_histogram(scan.size_histogram('maps'))}",
        f"  formats:    {_histogram(scan.format_histogram())}",
    ]
    if resolution:
        small = sum(1 for info in scan.images.values() if max(info.size) < resolution)
        lines.append(f"  images smaller than {resolution} px (upsampled when loading): {small}")
    if scan.problems:
        lines.append(f"problems ({len(scan.problems)}): sample | path | problem")
        lines += [f"  {problem}" for problem in scan.problems]
        skipped = sorted(scan.skipped(), key=natural_key)
        lines.append(
            f"FAILED: {len(scan.problems)} problem(s); data.on_error=skip would skip {len(skipped)} sample(s)"
            + (
                ""
                if not any(p.fatal for p in scan.problems)
                else " (but a problem makes the dataset unusable)"
            )
        )
    else:
        lines.append("OK: no problems found")
    return "\n".join(lines)


if __name__ == "__main__":  # the command's former name: run the CLI, which lives above data/
    import importlib

    importlib.import_module("neuropbr.check").cli()
