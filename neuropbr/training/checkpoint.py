"""Checkpoints: atomic writes, the guide's file names, clear errors, exact resume.

Files (under ``paths.checkpoint_dir``): ``latest.pth`` (every epoch end and on interruption),
``best_model.pth`` (whenever validation improves ``optimized_metric``) and
``checkpoint_epoch_XXXX.pth`` (every ``save_every_n_epochs`` unless ``save_best_only``).
Each is written to a temporary file and renamed, so a crash or SIGKILL never leaves a torn file.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuropbr.utils.files import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "generator", "epoch", "step")
#: Prefixes added by torch.compile and DDP wrappers; stripped when loading weights.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the model built from the config."""


# --- RNG state ----------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state: Any = np.random.get_state()  # the legacy tuple: (name, keys, pos, has_gauss, cached)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        # This process's device only: under DDP each rank owns one GPU and its own stream.
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a checkpoint round-trip may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# --- files --------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically to ``path`` (temporary file + fsync + rename)."""
    state = {"format_version": FORMAT_VERSION, **state}
    with atomic_write(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint this project wrote.

    Raises:
        CheckpointError: the file is missing, truncated/corrupt, or lacks required entries.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (trainer.resume / checkpoint=)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is not a readable NeuroPBR checkpoint (truncated, corrupt or from another "
            f"program): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict of states, got {type(state).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing entries {missing}; found {sorted(state)}")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {state['format_version']} is newer than this NeuroPBR "
            f"understands ({FORMAT_VERSION}); upgrade neuropbr"
        )
    return state


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) key prefixes."""
    cleaned = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        cleaned[key.replace("._orig_mod.", ".")] = value
    return cleaned


def load_module_state(
    module: nn.Module, state_dict: dict[str, torch.Tensor], name: str, source: str | Path
) -> None:
    """Load weights strictly, or raise one error listing every missing/unexpected/mis-shaped key."""
    state_dict = strip_wrapper_prefixes(state_dict)
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {source}: the {name} weights do not match the {name} built from the config"]
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = items[:20]
                more = f" ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
                lines.append(f"  {title} ({len(items)}): " + ", ".join(shown) + more)
        lines.append("  (was it trained with other encoder/fusion/decoder/discriminator settings?)")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


# --- policy -------------------------------------------------------------------------------------


def _duplicate(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``, atomically: a hard link when the filesystem
    allows (no bytes copied; ``latest.pth`` is later replaced by rename, so the link keeps this
    version), else a byte copy. Either goes through a temporary name and a rename."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


class Checkpointer:
    """Decides which files to write when; only the main process writes.

    Args:
        directory: ``paths.checkpoint_dir``.
        save_every_n_epochs: period of ``checkpoint_epoch_XXXX.pth`` (0 disables).
        save_best_only: write only ``best_model.pth`` and ``latest.pth``.
        enabled: False on non-zero ranks.
    """

    def __init__(
        self, directory: str | Path, save_every_n_epochs: int, save_best_only: bool, enabled: bool = True
    ) -> None:
        if save_every_n_epochs < 0:
            raise ValueError(f"trainer.save_every_n_epochs={save_every_n_epochs}: expected >= 0")
        self.directory = Path(directory)
        self.save_every_n_epochs = save_every_n_epochs
        self.save_best_only = save_best_only
        self.enabled = enabled

    @property
    def latest_path(self) -> Path:
        return self.directory / "latest.pth"

    @property
    def best_path(self) -> Path:
        return self.directory / "best_model.pth"

    def epoch_path(self, epoch: int) -> Path:
        """The guide's name for the checkpoint after ``epoch`` (1-based in the name)."""
        return self.directory / f"checkpoint_epoch_{epoch:04d}.pth"

    def save(self, state: dict[str, Any], *, improved: bool, epochs_done: int | None) -> list[Path]:
        """Write ``latest.pth``, ``best_model.pth`` when ``improved``, and the periodic
        ``checkpoint_epoch_XXXX.pth`` when ``epochs_done`` (None mid-epoch) is due."""
        if not self.enabled:
            return []
        written = [self.latest_path]
        save_checkpoint(self.latest_path, state)
        # The same state again under other names: link (or copy) the file just written rather
        # than serialising gigabytes of weights and optimizer state two more times.
        if improved:
            _duplicate(self.latest_path, self.best_path)
            written.append(self.best_path)
        periodic = not self.save_best_only and self.save_every_n_epochs > 0
        if periodic and epochs_done is not None and epochs_done % self.save_every_n_epochs == 0:
            path = self.epoch_path(epochs_done)
            _duplicate(self.latest_path, path)
            written.append(path)
        log.info("saved %s", ", ".join(p.name for p in written))
        return written


#: Config sections that make a run what it is: ``trainer.resume=auto`` only continues a run whose
#: checkpoint agrees on all of them (schedules, epochs, paths and tracking may change on resume).
RUN_IDENTITY_KEYS = ("seed", "data", "encoder", "fusion", "decoder", "discriminator", "loss")


#: ``trainer.resume_fallback`` values (``neuropbr.config.ResumeFallback``).
RESUME_FALLBACKS = ("error", "older")


def _stored_config(path: Path) -> dict[str, Any]:
    """The training config stored in a checkpoint, read without loading its weights.

    Raises:
        CheckpointError: the file cannot be read as a checkpoint (truncated, corrupt).
    """
    try:
        # mmap: read the config without loading gigabytes of weights.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for damaged files
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"{type(err).__name__}: {first}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"expected a dict of states, got {type(state).__name__}")
    return state.get("config") or {}


def _identity_differs(stored: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return [key for key in RUN_IDENTITY_KEYS if stored.get(key) != config.get(key)]


def _fallback_choice(fallback: Any, config: dict[str, Any] | None) -> str:
    """``trainer.resume_fallback`` as a plain string: the argument, else the config's, else error."""
    if fallback is None:
        fallback = ((config or {}).get("trainer") or {}).get("resume_fallback") or "error"
    value = str(getattr(fallback, "value", fallback))
    if value not in RESUME_FALLBACKS:
        raise ValueError(f"trainer.resume_fallback={value!r}: expected one of {list(RESUME_FALLBACKS)}")
    return value


def _newest_first(runs_root: Path) -> list[Path]:
    """Every ``checkpoints/latest.pth`` under ``runs_root``, most recently written first."""
    found = []
    for path in runs_root.glob("**/checkpoints/latest.pth"):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:  # removed while we looked
            continue
    return [path for _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(
    resume: str | None,
    checkpoint_dir: str | Path,
    runs_root: str | Path,
    config: dict[str, Any] | None = None,
    fallback: str | None = None,
) -> Path | None:
    """Resolve ``trainer.resume``: a path, ``auto``, or null.

    ``auto`` takes ``latest.pth`` of this run directory if it exists; else, when ``config`` is
    given (single runs; sweep trials pass None and never adopt another run), the most recently
    written ``latest.pth`` under ``runs_root`` (``outputs/``) whose stored config agrees with
    ``config`` on :data:`RUN_IDENTITY_KEYS`; else the run starts fresh.

    A candidate that cannot be read is never skipped silently. When an older usable checkpoint
    comes after it, resuming that one would drop everything trained since, so ``fallback``
    (``trainer.resume_fallback``; None: read from ``config``, default ``error``) decides:
    ``error`` raises naming both files, ``older`` resumes the older one with a warning. With no
    usable checkpoint left, this run's own unreadable ``latest.pth`` raises; another run's is
    reported as a warning and a new run starts.

    Raises:
        CheckpointError: an explicit path that does not exist; an unreadable newest checkpoint
            with ``fallback=error`` (or this run's own, with nothing to fall back to).
    """
    if resume is None or resume == "":
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise CheckpointError(f"trainer.resume={resume}: no such checkpoint file")
        return path
    choice = _fallback_choice(fallback, config)
    own = Path(checkpoint_dir) / "latest.pth"
    candidates = [own] if own.is_file() else []
    if config is not None:
        candidates += [p for p in _newest_first(Path(runs_root)) if p.resolve() != own.resolve()]
    unreadable: list[tuple[Path, str]] = []
    for candidate in candidates:
        try:
            stored = _stored_config(candidate)
        except CheckpointError as err:
            unreadable.append((candidate, str(err)))
            continue
        if candidate != own and config is not None:
            differs = _identity_differs(stored, config)
            if differs:
                log.info("trainer.resume=auto: skipping %s (its %s differ)", candidate, ", ".join(differs))
                continue
        if unreadable:
            return _fall_back(unreadable[0], candidate, choice)
        if candidate != own:
            log.info("trainer.resume=auto: resuming the most recent matching run, %s", candidate)
        return candidate
    if unreadable:
        newest, reason = unreadable[0]
        if newest == own:
            raise CheckpointError(
                f"trainer.resume=auto: this run's checkpoint {own} is unreadable ({reason}) and no older "
                f"checkpoint of the same config exists under {runs_root}; restore the file, or start a "
                "new run with trainer.resume=null"
            )
        log.warning(
            "trainer.resume=auto: %s is unreadable (%s) and no older checkpoint of this config exists; "
            "starting a new run",
            newest,
            reason,
        )
        return None
    log.info(
        "trainer.resume=auto: no matching latest.pth (this run's or under %s); starting a new run", runs_root
    )
    return None


def _fall_back(unreadable: tuple[Path, str], older: Path, choice: str) -> Path:
    """An older usable checkpoint behind an unreadable newer one: resume it only when asked to."""
    newest, reason = unreadable
    if choice == "older":
        log.warning(
            "trainer.resume=auto: the newest checkpoint %s is unreadable (%s); trainer.resume_fallback=older: "
            "resuming the older %s (what was trained after it is lost)",
            newest,
            reason,
            older,
        )
        return older
    raise CheckpointError(
        f"trainer.resume=auto: the newest checkpoint {newest} is unreadable ({reason}); the older {older} "
        "is usable, but resuming it would drop what was trained after it. Restore or remove the newest "
        "one, or resume the older one with trainer.resume_fallback=older (or trainer.resume="
        f"{older}), or start a new run with trainer.resume=null (trainer.resume_fallback=error, the default)"
    )
