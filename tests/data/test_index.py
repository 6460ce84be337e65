"""Scanning and validating the folder layout: every problem kind, collected in one pass."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from folder_datasets import WrittenDataset, corrupt_middle, truncate
from PIL import Image

from neuropbr.data.index import DatasetError, natural_key, scan_folder_dataset


def test_original_layout_scans_with_renders_both(original_dataset: WrittenDataset) -> None:
    scan = scan_folder_dataset(original_dataset.root, 3, "both")
    assert scan.problems == []
    assert [e.id for e in scan.entries] == [
        f"{'clean' if i % 2 == 0 else 'dirty'}/sample_{i}" for i in range(8)
    ]
    assert scan.counts() == {
        "clean": 4, "dirty": 4, "in_both": 0, "selected": 8, "usable": 8, "skipped": 0,
        "unselected": 0, "materials": 4, "problems": 0,
    }  # fmt: skip
    entry = scan.entries[1]
    assert entry.material == original_dataset.metadata["sample_1"]
    assert entry.views == tuple(original_dataset.view("dirty", "sample_1", i) for i in range(3))
    assert entry.maps["roughness"] == original_dataset.map(entry.material, "roughness")


@pytest.mark.parametrize(("renders", "expected"), [("clean", [0, 2, 4, 6]), ("dirty", [1, 3, 5, 7])])
def test_a_sample_only_in_the_other_render_folder_is_not_a_problem(
    original_dataset: WrittenDataset, renders: str, expected: list[int]
) -> None:
    scan = scan_folder_dataset(original_dataset.root, 3, renders)
    assert scan.problems == []
    assert [e.name for e in scan.entries] == [f"sample_{i}" for i in expected]
    assert scan.counts()["unselected"] == 4


def test_a_sample_in_both_folders_gives_two_entries(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=3, layout="both")
    scan = scan_folder_dataset(ds.root, 3, "both")
    assert [e.id for e in scan.entries] == [
        "clean/sample_0000", "dirty/sample_0000", "clean/sample_0001", "dirty/sample_0001",
        "clean/sample_0002", "dirty/sample_0002",
    ]  # fmt: skip
    assert scan.counts()["in_both"] == 3


def test_names_sort_naturally_and_extra_views_and_jpeg_are_accepted(
    make_dataset: Callable[..., WrittenDataset],
) -> None:
    ds = make_dataset(num_samples=12, names="plain", num_views=4)
    jpeg_view = ds.view("clean", "sample_3", 0)
    Image.open(jpeg_view).convert("RGB").save(jpeg_view.with_suffix(".jpg"))
    jpeg_view.unlink()
    scan = scan_folder_dataset(ds.root, 3, "clean")
    assert scan.problems == []
    assert [e.name for e in scan.entries] == [f"sample_{i}" for i in range(12)]  # 2 before 10
    assert scan.entries[3].views[0].suffix == ".jpg"
    assert all(len(e.views) == 3 for e in scan.entries)  # the 4th view on disk is ignored
    assert sorted(["s10", "s9", "s1"], key=natural_key) == ["s1", "s9", "s10"]


def _break_everything(ds: WrittenDataset) -> dict[str, tuple[Path, str]]:
    """One of every problem kind; returns ``{problem: (path, sample column)}`` expected."""
    root = ds.root
    meta = dict(ds.metadata)
    expected: dict[str, tuple[Path, str]] = {}
    # missing view
    ds.view("clean", "sample_0000", 2).unlink()
    expected["missing view 2"] = (ds.view("clean", "sample_0000", 2), "clean/sample_0000")
    # truncated and corrupted views
    truncate(ds.view("clean", "sample_0001", 0))
    expected["truncated"] = (ds.view("clean", "sample_0001", 0), "clean/sample_0001")
    corrupt_middle(ds.view("clean", "sample_0002", 1))
    expected["CRC mismatch"] = (ds.view("clean", "sample_0002", 1), "clean/sample_0002")
    # views of different sizes, and a non-square view
    Image.new("RGB", (8, 8)).save(ds.view("clean", "sample_0003", 1))
    expected["inconsistent sizes"] = (root / "input/clean/sample_0003", "clean/sample_0003")
    Image.new("RGB", (16, 12)).save(ds.view("clean", "sample_0004", 0))
    expected["not square"] = (ds.view("clean", "sample_0004", 0), "clean/sample_0004")
    # missing map (material mat_b: samples 1, 4, 7, 10)
    ds.map("mat_b", "metallic").unlink()
    expected["missing map 'metallic'"] = (ds.map("mat_b", "metallic"), "clean/sample_0001")
    # material folder missing
    meta["sample_0005"] = "mat_gone"
    expected["material folder missing"] = (root / "output/mat_gone", "clean/sample_0005")
    # sample folder absent from metadata
    shutil.copytree(root / "input/clean/sample_0006", root / "input/clean/stray")
    expected["not listed in render_metadata.json"] = (root / "input/clean/stray", "clean/stray")
    # metadata entry without any folder
    meta["ghost"] = "mat_a"
    expected["no input/clean/ghost/ nor input/dirty/ghost/"] = (root / "input/clean/ghost", "ghost")
    # grayscale normal map (material mat_c: samples 2, 5->moved, 8, 11)
    Image.new("L", (16, 16)).save(ds.map("mat_c", "normal"))
    expected["normal map has one channel"] = (ds.map("mat_c", "normal"), "clean/sample_0002")
    (root / "input/render_metadata.json").write_text(json.dumps(meta))
    return expected


def test_every_problem_is_reported_with_sample_and_path(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=12)
    expected = _break_everything(ds)
    scan = scan_folder_dataset(ds.root, 3, "clean")
    assert len(scan.problems) == len(expected)
    for needle, (path, sample) in expected.items():
        [problem] = [p for p in scan.problems if needle in p.problem]
        assert problem.path == path
        assert problem.sample.startswith(sample), (needle, problem)
        assert str(problem) == f"{problem.sample} | {path} | {problem.problem}"
    # Only sample_0009 (mat_a) has no problem: 0-5 broken directly, 1/4/7/10 lose mat_b, 2/8/11
    # lose mat_c's normal, 6 ... is fine.
    assert [e.name for e in scan.entries] == ["sample_0006", "sample_0009"]
    assert not scan.fatal

    err = DatasetError.from_problems(ds.root, scan.problems)
    message = str(err)
    assert message.startswith(f"dataset {ds.root}: {len(expected)} problem(s) (sample | path | problem):")
    assert all(str(p) in message for p in scan.problems)
    assert isinstance(err, ValueError) and err.problems == tuple(scan.problems)


def test_material_problems_name_every_affected_sample(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=12, num_materials=2)
    ds.map("mat_a", "albedo").unlink()
    [problem] = scan_folder_dataset(ds.root, 3, "clean").problems
    affected = [f"clean/sample_{i:04d}" for i in range(0, 12, 2)]
    assert problem.affected == tuple(affected)
    assert problem.sample == "clean/sample_0000, clean/sample_0002, clean/sample_0004 (+3 more)"


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (lambda root: (root / "input/render_metadata.json").unlink(), "metadata file missing"),
        (lambda root: (root / "input/render_metadata.json").write_text("{oops"), "not valid JSON"),
        (lambda root: (root / "input/render_metadata.json").write_text("[1, 2]"), "must be a JSON object"),
        (lambda root: shutil.rmtree(root / "output"), "ground-truth maps"),
        (lambda root: shutil.rmtree(root / "input/clean"), "no input/clean/ folder (data.renders=clean)"),
    ],
)
def test_dataset_wide_problems_are_fatal(
    make_dataset: Callable[..., WrittenDataset], breakage: Callable[[Path], None], needle: str
) -> None:
    ds = make_dataset(num_samples=2)
    breakage(ds.root)
    scan = scan_folder_dataset(ds.root, 3, "clean")
    assert scan.fatal and scan.entries == []
    assert any(needle in p.problem for p in scan.problems), scan.problems


def test_scan_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data\.renders='all'"):
        scan_folder_dataset(tmp_path, 3, "all")
    with pytest.raises(ValueError, match=r"data\.num_views=0"):
        scan_folder_dataset(tmp_path, 0, "clean")
    scan = scan_folder_dataset(tmp_path / "absent", 3, "clean")
    assert scan.fatal and "does not exist" in scan.problems[0].problem


def test_size_histograms_count_views_and_maps(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=2, num_materials=1, size=16, map_size=32)
    Image.fromarray(np.zeros((24, 24), np.uint16)).save(ds.map("mat_a", "roughness"))
    scan = scan_folder_dataset(ds.root, 3, "clean")
    assert scan.size_histogram("views") == {"16x16": 6}
    assert [p.problem.split(":")[0] for p in scan.problems] == ["inconsistent sizes"]
    assert scan.size_histogram("maps") == {"32x32": 3, "24x24": 1}
    assert scan.format_histogram()["PNG I;16"] == 1
