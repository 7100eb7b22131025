"""Checkpoint files and the exact-resume state, without training: atomic saves, which checkpoint a resume takes, the
RNG states a checkpoint carries, and when :class:`ExactResume` records a step boundary. (With real training runs:
tests/training/test_train_app.py and tests/training/test_resume.py.)
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hipo.training.checkpoints import (
    AtomicCheckpointIO,
    find_resume_checkpoint,
    remove_stale_temporaries,
    write_atomically,
)
from hipo.training.exact_resume import ExactResume, rng_states, set_rng_states


def _checkpoint(step: int) -> dict:
    return {"state_dict": {"w": torch.full((2,), float(step))}, "global_step": step, "loops": {}}


def test_a_save_is_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_checkpoint(3), path)
    assert torch.load(path, weights_only=False)["global_step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    with pytest.raises(TypeError, match="storage_options"):
        AtomicCheckpointIO().save_checkpoint(_checkpoint(3), path, storage_options={"x": 1})


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    write_atomically(path, lambda handle: handle.write(b"previous"))

    def half_then_fail(handle: io.BufferedWriter) -> None:
        handle.write(b"half of the next")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resume_takes_last_then_the_newest_readable_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert find_resume_checkpoint(folder) is None  # no folder yet
    folder.mkdir()
    assert find_resume_checkpoint(folder) is None
    older, newer, last = folder / "step=2.ckpt", folder / "step=4.ckpt", folder / "last.ckpt"
    torch.save(_checkpoint(2), older)
    torch.save(_checkpoint(4), newer)
    os.utime(older, (1, 1))
    assert find_resume_checkpoint(folder) == newer
    last.write_bytes(newer.read_bytes()[:200])  # truncated: skipped
    assert find_resume_checkpoint(folder) == newer
    torch.save({"state_dict": {}}, newer)  # not a Lightning checkpoint (no global_step, loops): skipped
    assert find_resume_checkpoint(folder) == older
    torch.save(_checkpoint(5), last)
    assert find_resume_checkpoint(folder) == last


def test_temporaries_of_interrupted_saves_are_removed(tmp_path: Path) -> None:
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    (tmp_path / ".last.ckpt.x1y2.tmp").write_bytes(b"half")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def _draw() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_rng_states_survive_a_weights_only_checkpoint_and_restore_every_generator() -> None:
    buffer = io.BytesIO()
    torch.save(rng_states(), buffer)  # what Lightning's default torch.load(weights_only=True) must read back
    first = _draw()
    buffer.seek(0)
    set_rng_states(torch.load(buffer, weights_only=True))
    again = _draw()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_exact_resume_records_only_step_boundaries_and_restores_position_and_rng() -> None:
    callback = ExactResume()
    trainer = SimpleNamespace(global_step=0, current_epoch=1)
    callback.on_train_batch_start(trainer, None, None, 0)
    assert callback.consistent  # inside a batch, right after a step boundary, before its optimizer step
    callback.on_before_optimizer_step(trainer, None, None)
    assert not callback.consistent
    trainer.global_step = 1
    callback.on_train_batch_end(trainer, None, None, None, 0)
    expected = torch.rand(3)  # the first draw after the recorded boundary
    assert callback.position == (1, 1) and callback.rng is not None
    # a batch that only accumulates gradients is not a boundary: nothing recorded, and a crash inside the next
    # batch would not be at a consistent point
    callback.on_train_batch_start(trainer, None, None, 1)
    callback.on_train_batch_end(trainer, None, None, None, 1)
    callback.on_train_batch_start(trainer, None, None, 2)
    assert callback.position == (1, 1) and not callback.consistent

    state = callback.state_dict()
    resumed_at: list[tuple[int, int]] = []
    resumed = ExactResume()
    resumed.setup(SimpleNamespace(datamodule=SimpleNamespace(resume_at=lambda *p: resumed_at.append(p))), None, "fit")
    resumed.load_state_dict(state)
    assert resumed_at == [(1, 1)]
    resumed.on_train_batch_start(trainer, None, None, 1)  # the RNG states come back right before the first step
    assert torch.equal(torch.rand(3), expected)
