"""Assemble one sample written by ``neuropbr.synth`` into a contact sheet.

    python experiments/synthetic_data/make_figure.py DATASET SAMPLE OUT.png [--tile 176]

Top row: the clean views and the albedo and roughness maps; bottom row: the dirty views and the
normal and metallic maps, each labelled, read back from the dataset's PNG files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw


def _tile(path: Path, size: int, label: str) -> Image.Image:
    with Image.open(path) as img:
        tile = img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, 7 * len(label) + 6, 14), fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("sample")
    parser.add_argument("out", type=Path)
    parser.add_argument("--tile", type=int, default=176)
    args = parser.parse_args()
    root = args.dataset
    material = json.loads((root / "input" / "render_metadata.json").read_text())[args.sample]
    views = sorted((root / "input" / "clean" / args.sample).glob("*.png"), key=lambda p: int(p.stem))
    maps = root / "output" / material
    rows = [
        [_tile(p, args.tile, f"clean {p.stem}") for p in views]
        + [
            _tile(maps / "albedo.png", args.tile, "albedo"),
            _tile(maps / "roughness.png", args.tile, "roughness"),
        ],
        [_tile(root / "input" / "dirty" / args.sample / p.name, args.tile, f"dirty {p.stem}") for p in views]
        + [
            _tile(maps / "normal.png", args.tile, "normal"),
            _tile(maps / "metallic.png", args.tile, "metallic"),
        ],
    ]
    gap = 4
    width = len(rows[0]) * (args.tile + gap) - gap
    sheet = Image.new("RGB", (width, 2 * args.tile + gap), (255, 255, 255))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * (args.tile + gap), r * (args.tile + gap)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)


if __name__ == "__main__":
    main()
