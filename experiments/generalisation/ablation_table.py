"""One Markdown table comparing several models on the same held-out samples (data_ablation.sh).

    python experiments/generalisation/ablation_table.py full=out/eval/full flash-only=out/eval/flash-only ...

Each argument is ``label=folder``, a folder holding the ``clean.json``, ``dirty.json`` and
``perspective.json`` reports that ``evaluate_heldout.sh`` writes. One row per model: on clean
inputs the albedo, roughness and metallic PSNR and the normal error as a fraction of the flat
normal's; the mean skill on each input condition; the albedo PSNR on perspective inputs. The first
model's baselines are printed under the table: every model scored on the same samples shares them
as long as it trained on the same maps (the constant baseline is the mean of the training maps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from report import metrics_of  # this folder is on sys.path when run as a script

CONDITIONS = ("clean", "dirty", "perspective")


def load(folder: Path) -> dict[str, dict[str, float]]:
    """{condition: metrics without the split prefix} from the reports in ``folder``."""
    return {c: metrics_of(json.loads((folder / f"{c}.json").read_text())) for c in CONDITIONS}


def row(label: str, metrics: dict[str, dict[str, float]]) -> str:
    clean = metrics["clean"]
    cells = [
        label,
        " / ".join(f"{clean[f'{name}_psnr']:.2f}" for name in ("albedo", "roughness", "metallic")),
        f"{clean['normal_angle_ratio']:.3f}",
        " / ".join(f"{metrics[c]['skill_db']:+.2f}" for c in CONDITIONS),
        f"{metrics['perspective']['albedo_psnr']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def baselines(metrics: dict[str, dict[str, float]]) -> str:
    clean = metrics["clean"]
    return (
        "Baselines (clean): albedo constant {baseline_constant_albedo_psnr:.2f} / view mean "
        "{baseline_view_mean_albedo_psnr:.2f} / photo mean {baseline_photo_mean_albedo_psnr:.2f} dB, "
        "roughness constant {baseline_constant_roughness_psnr:.2f} dB, metallic constant "
        "{baseline_constant_metallic_psnr:.2f} dB, flat normal {baseline_flat_normal_angle_mean:.2f} deg; "
        "perspective albedo constant {persp:.2f} / photo mean {persp_photo:.2f} dB."
    ).format(
        **clean,
        persp=metrics["perspective"]["baseline_constant_albedo_psnr"],
        persp_photo=metrics["perspective"]["baseline_photo_mean_albedo_psnr"],
    )


def main(arguments: list[str]) -> None:
    lines = [
        "| model | clean: albedo / roughness / metallic PSNR (dB) | clean: normal error / flat's "
        "| skill_db clean / dirty / perspective | perspective: albedo PSNR (dB) |",
        "|---|---|---|---|---|",
    ]
    models = [(label, load(Path(folder))) for label, _, folder in (a.partition("=") for a in arguments)]
    lines += [row(label, metrics) for label, metrics in models]
    if models:  # the first model is the reference (the full generator in data_ablation.sh)
        lines += ["", f"{models[0][0]}: {baselines(models[0][1])}"]
    print("\n".join(lines))  # noqa: T201 -- the table is the output


if __name__ == "__main__":
    main(sys.argv[1:])
