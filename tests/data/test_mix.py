"""``data=mix``: sources drawn by weight (procedural, a library, a rendered folder), reproducibly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from library_helpers import write_ambientcg
from omegaconf import DictConfig

from neuropbr.build import build_datamodule
from neuropbr.synth_library import synthesize_library


def _library(root: Path) -> Path:
    write_ambientcg(root, 1, "Metal", "Metal001")
    write_ambientcg(root, 3, "Wood", "Wood001")
    write_ambientcg(root, 4, "Wood", "Wood002")
    return root


def _mix(compose_cfg: Callable[..., DictConfig], library: Path, *overrides: str) -> DictConfig:
    return compose_cfg(
        "data=mix", f"data.sources.library.materials={library}", "data.resolution=16", "data.num_views=2",
        "data.sources.procedural.num_samples=12", "data.sources.library.samples_per_material=3",
        "data.num_workers=0", "data.val_ratio=0.3", *overrides,
    )  # fmt: skip


def test_mix_draws_sources_by_weight(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    module = build_datamodule(_mix(compose_cfg, library, "data.weights.procedural=1", "data.weights.library=3",
                                   "data.epoch_size=400"))  # fmt: skip
    module.setup()
    names = [module.train_set[(i, 11)]["sample"] for i in range(len(module.train_set))]
    counts = Counter(name.split("/")[0] for name in names)
    assert len(names) == 400 and 0.65 < counts["library"] / 400 < 0.85, counts
    # Another epoch seed draws anew; the same seed draws the same.
    assert names != [module.train_set[(i, 12)]["sample"] for i in range(400)]
    assert names[:20] == [module.train_set[(i, 11)]["sample"] for i in range(20)]
    val = [module.val_set[i]["material"] for i in range(len(module.val_set))]
    assert {v.split("/")[0] for v in val} == {"procedural", "library"} and len(val) == len(
        set(zip(val, range(len(val))))
    )
    only = build_datamodule(_mix(compose_cfg, library, "data.weights.library=0"))
    only.setup()
    assert {only.train_set[(i, 1)]["sample"].split("/")[0] for i in range(len(only.train_set))} == {
        "procedural"
    }


def test_mix_with_a_rendered_folder_source(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    out = tmp_path / "rendered"
    synthesize_library(out=out, materials=library, samples_per_material=1, resolution=16, num_views=2,
                       num_workers=1, progress=False)  # fmt: skip
    cfg = _mix(compose_cfg, library, "+data@data.sources.rendered=folder", f"data.sources.rendered.root={out}",
               "+data.weights.rendered=2")  # fmt: skip
    module = build_datamodule(cfg)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["views"].shape[1:] == (2, 3, 16, 16)
    sources = {module.train_set[(i, 5)]["sample"].split("/")[0] for i in range(len(module.train_set))}
    assert sources == {"procedural", "library", "rendered"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+data.weights.typo=1", r"data\.weights names \['typo'\]"),
        ("data.weights.library=-1", r"data\.weights\.library=-1\.0: expected >= 0"),
        ("data.epoch_size=0", r"data\.epoch_size=0"),
    ],
)
def test_mix_bad_settings_name_the_key(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, override: str, message: str
) -> None:
    library = _library(tmp_path / "lib")
    with pytest.raises(InstantiationException, match=message):  # hydra wraps the ValueError
        build_datamodule(_mix(compose_cfg, library, override))
