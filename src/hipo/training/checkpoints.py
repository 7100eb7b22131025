"""Checkpoint files that are whole or absent, and finding the one to resume from.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over its target
(``os.replace`` is atomic on POSIX), so a crash while writing leaves the previous ``last.ckpt`` intact.
:func:`find_resume_checkpoint` (``resume=auto``) still opens every candidate before trusting it: a file that
cannot be read (written by another tool, a full disk, a half-copied folder) is reported and skipped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

LAST = "last.ckpt"
REQUIRED_KEYS = ("state_dict", "global_step", "loops")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves go through a temporary file and an atomic rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        write_atomically(Path(path), lambda handle: torch.save(checkpoint, handle))


def last_checkpoint_callback(dirpath: str | Path, every_n_train_steps: int = 0) -> ModelCheckpoint:
    """The periodic ``last.ckpt`` of ``dirpath`` (config: ``trainer.callbacks.last_checkpoint``).

    Written every ``every_n_train_steps`` optimizer steps (0: only at the end, Lightning's ``None``) and overwritten
    in place: no top-k files, no ``last-v1.ckpt`` (``resume=auto`` must find the newest state under one name); a
    crash or a stop writes the same file.
    """
    return ModelCheckpoint(
        dirpath=dirpath,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=every_n_train_steps or None,
        enable_version_counter=False,
    )


def write_atomically(path: Path, write: Any) -> None:
    """Calls ``write(handle)`` on a temporary file next to ``path``, fsyncs it and renames it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def is_loadable(path: Path) -> bool:
    """Whether ``path`` opens as a Lightning checkpoint (memory-mapped: tensors are not read)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as error:  # a truncated zip, a pickle error, an unreadable file
        log.warning("checkpoint %s cannot be read (%s: %s); skipping it", path, type(error).__name__, error)
        return False
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        log.warning("checkpoint %s lacks %s; skipping it", path, ", ".join(missing))
        return False
    return True


def find_resume_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest readable checkpoint of ``checkpoint_dir``: ``last.ckpt`` first, then the others newest first."""
    if not checkpoint_dir.is_dir():
        return None
    others = sorted(
        (p for p in checkpoint_dir.glob("*.ckpt") if p.name != LAST), key=lambda p: p.stat().st_mtime, reverse=True
    )
    candidates = [checkpoint_dir / LAST, *others]
    return next((p for p in candidates if p.is_file() and is_loadable(p)), None)


def remove_stale_temporaries(checkpoint_dir: Path) -> None:
    """Deletes temporary files of saves that a crash interrupted (they are never read)."""
    for path in checkpoint_dir.glob(".*.tmp"):
        log.info("removing %s, left by an interrupted save", path)
        path.unlink(missing_ok=True)
