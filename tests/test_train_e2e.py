"""End-to-end runs as users run them: real processes, signals, torchrun, a non-editable install."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from ports import free_port

from neuropbr.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["experiment=smoke", "tracking=none"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _train_cmd(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "neuropbr.train", *SMOKE, f"hydra.run.dir={run_dir}", *overrides]


def test_cli_runs_from_any_working_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "neuropbr.train", *SMOKE, "trainer.max_epochs=1"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (latest,) = tmp_path.glob("outputs/*/*/checkpoints/latest.pth")
    assert load_checkpoint(latest)["epoch"] == 1
    assert (latest.parents[1] / ".hydra" / "config.yaml").is_file()


def test_sigkill_mid_epoch_leaves_a_loadable_latest(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pth"
    proc = subprocess.Popen(
        _train_cmd(
            run_dir, "data.num_samples=24", "trainer.max_epochs=1000", "trainer.save_every_n_epochs=0"
        ),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not latest.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no latest.pth written in time"
            time.sleep(0.05)
        # Kill as soon as the next save starts: a temp file beside latest.pth is being written.
        while not any(p.name.startswith(".latest.pth.") for p in latest.parent.iterdir()):
            assert time.monotonic() < deadline + 120
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    state = load_checkpoint(latest)
    assert state["epoch"] >= 1


def test_sigterm_saves_and_resume_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pth"
    proc = subprocess.Popen(
        _train_cmd(run_dir, "data.num_samples=40", "trainer.max_epochs=3"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not latest.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert f"resume with trainer.resume={latest}" in output
    interrupted = load_checkpoint(latest)
    resumed = subprocess.run(
        _train_cmd(run_dir, "data.num_samples=40", "trainer.max_epochs=3", f"trainer.resume={latest}"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = load_checkpoint(latest)
    assert final["epoch"] == 3 and final["step"] > interrupted["step"]


@pytest.mark.parametrize(
    ("extra", "steps"),
    # 9 training samples over 2 ranks with batch 2: ceil(ceil(9 / 2) / 2) = 3 batches per epoch,
    # 3 steps; accumulating 2 (DDP's no_sync on the first batch of each group): 2 steps.
    [([], 6), (["trainer.accumulate_grad_batches=2"], 4)],
    ids=["plain", "accumulate2"],
)
def test_torchrun_two_processes_train_identical_weights(tmp_path: Path, extra: list[str], steps: int) -> None:
    # The real train() under torchrun; after fit, each rank dumps its generator weights so the
    # test can compare them (rank 0 alone writes checkpoints).
    script = tmp_path / "ddp_job.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, torch
        import neuropbr.train as entry
        from neuropbr.training.trainer import Trainer

        fit = Trainer.fit
        def fit_and_dump(self):
            result = fit(self)
            torch.save(self.generator.state_dict(), r"{tmp_path}" + f"/weights_rank{{os.environ['RANK']}}.pt")
            return result
        Trainer.fit = fit_and_dump
        sys.argv = ["train", *sys.argv[1:]]
        entry.main()
    """)
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            str(script),
            *SMOKE,
            "trainer.distributed=true",
            "trainer.max_epochs=2",
            "data.num_samples=10",
            f"hydra.run.dir={tmp_path / 'run'}",
            *extra,
        ],
        cwd=tmp_path,
        env=_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    rank0 = torch.load(tmp_path / "weights_rank0.pt")
    rank1 = torch.load(tmp_path / "weights_rank1.pt")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pth")
    assert state["epoch"] == 2 and state["step"] == steps
    assert all(torch.equal(rank0[k], v) for k, v in state["generator"].items())


def test_non_editable_install_finds_its_configs(tmp_path: Path) -> None:
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        env=_env(),
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("neuropbr-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        env=_env(),
        timeout=300,
    )
    probe = "import neuropbr, neuropbr.config as c; print(neuropbr.__file__); print(c.config_dir())"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1] == str(site / "neuropbr" / "_conf")
    run = subprocess.run(
        [sys.executable, "-m", "neuropbr.train", *SMOKE, "trainer.max_epochs=1"],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
