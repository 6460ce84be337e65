"""``python -m neuropbr.data.check data.root=DIR``: validate a folder dataset and list every problem.

Decodes every image fully (unlike training start-up, which reads headers and checks file
integrity without decoding), prints a report (sample counts per render folder, materials, views,
resolutions, formats, every problem as ``sample | path | problem``) and exits 1 when any problem
was found, 0 otherwise. Takes the ``data.*`` keys of ``data=folder``::

    python -m neuropbr.data.check data.root=/data/pbr data.num_views=3 data.renders=both

``library=DIR`` checks a material library instead (:mod:`neuropbr.data.library`): the
materials found, the file chosen for every map, every default and conversion, and every problem
as ``material | path | problem``::

    python -m neuropbr.data.check library=/data/ambientcg [layout=my_layout.yaml]

Writes nothing (no outputs/ folder, no log file).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from neuropbr.config import config_dir, register_configs
from neuropbr.data.index import ScanResult, natural_key, scan_folder_dataset
from neuropbr.utils.choices import choice

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


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="check")
def main(cfg: DictConfig) -> None:
    """Entry point: scan ``cfg.data.root`` deeply, print the report, exit 1 on any problem."""
    if cfg.get("library"):
        from neuropbr.data.library import format_library_report, scan_library

        library = scan_library(os.path.expanduser(str(cfg.library)), layout=cfg.get("layout"), deep=True)
        print(format_library_report(library))  # noqa: T201 - the report is the CLI's output
        sys.exit(1 if library.problems else 0)
    if OmegaConf.is_missing(cfg.data, "root"):
        print(  # noqa: T201 - CLI usage text
            "usage: python -m neuropbr.data.check data.root=DIR [data.num_views=3 data.renders=both]\n"
            "       python -m neuropbr.data.check library=DIR [layout=layout.yaml]",
            file=sys.stderr,
        )
        sys.exit(2)
    data = cfg.data
    scan = check_dataset(os.path.expanduser(str(data.root)), int(data.num_views), choice(data.renders))
    print(format_report(scan, int(data.resolution)))  # noqa: T201 - the report is the CLI's output
    sys.exit(1 if scan.problems else 0)


if __name__ == "__main__":
    register_configs()
    main()
