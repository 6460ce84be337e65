"""``python -m neuropbr.check``: report, exit code, and the same problems training refuses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from folder_datasets import WrittenDataset, corrupt_middle, write_png_with_bad_zlib

from neuropbr.data.check import check_dataset, format_report
from neuropbr.data.folder import FolderDataModule
from neuropbr.data.index import DatasetError


def _run_check(cwd: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "neuropbr.check", *overrides],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def _problem_lines(report: str) -> list[str]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("problems ("))
    return [line.strip() for line in lines[start + 1 :] if line.startswith("  ")]


def test_cli_reports_a_corrupted_png_and_a_missing_map_and_training_refuses_the_same_list(
    original_dataset: WrittenDataset, tmp_path: Path
) -> None:
    corrupted = original_dataset.view("dirty", "sample_5", 0)
    corrupt_middle(corrupted)
    missing = original_dataset.map("mat_c", "roughness")  # material of samples 2 and 6
    missing.unlink()
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    proc = _run_check(
        workdir, f"data.root={original_dataset.root}", "data.renders=both", "data.resolution=32"
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"dirty/sample_5 | {corrupted} | corrupted: CRC mismatch" in proc.stdout
    assert f"clean/sample_2, clean/sample_6 | {missing} | missing map 'roughness'" in proc.stdout
    assert "FAILED: 2 problem(s); data.on_error=skip would skip 3 sample(s)" in proc.stdout
    assert list(workdir.iterdir()) == []  # no outputs/, no .hydra/, no log file

    with pytest.raises(DatasetError) as err:
        FolderDataModule(
            root=str(original_dataset.root), renders="both", resolution=32, num_workers=0
        ).setup()
    refused = [str(problem) for problem in err.value.problems]
    assert refused == _problem_lines(proc.stdout)
    assert all(f"  {line}" in str(err.value).splitlines() for line in refused)


def test_cli_exits_zero_on_a_clean_dataset(original_dataset: WrittenDataset, tmp_path: Path) -> None:
    proc = _run_check(tmp_path, f"data.root={original_dataset.root}", "data.renders=both")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: no problems found" in proc.stdout
    assert "sample folders: input/clean/ 4, input/dirty/ 4" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_report_counts_sizes_and_formats(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=4, num_materials=2, size=16, map_size=32, num_views=4, layout="both")
    report = format_report(check_dataset(ds.root, 3, "both"), resolution=24)
    assert "samples: selected 8, usable 8, with problems 0" in report
    assert "materials: 2 used by usable samples; output/ holds 2 folders" in report
    assert "view files per sample folder: 4 in 8 folder(s) (need 3; extra views are ignored)" in report
    assert "view sizes: 16x16 x24" in report  # 8 samples x 3 views used
    assert "map sizes:  32x32 x8" in report
    assert "formats:    PNG RGB x28, PNG L x4" in report  # 24 views + 2x2 colour maps; 2x2 gray maps
    assert "images smaller than 24 px (upsampled when loading): 24" in report
    assert report.endswith("OK: no problems found")


def test_check_decodes_what_start_up_only_inspects(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    bad = ds.view("clean", "sample_0001", 2)
    write_png_with_bad_zlib(bad)
    scan = check_dataset(ds.root, 3, "clean")
    [problem] = scan.problems
    assert (problem.sample, problem.path) == (
        "clean/sample_0001",
        bad,
    ) and "cannot decode pixels" in problem.problem
    assert "FAILED: 1 problem(s)" in format_report(scan)


def test_former_command_name_still_runs_the_cli(tmp_path: Path) -> None:
    """``python -m neuropbr.data.check`` is an alias of ``python -m neuropbr.check``."""
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.data.check"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "usage: python -m neuropbr.check data.root=DIR" in result.stderr
