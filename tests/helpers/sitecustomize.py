"""Test-only fault injection for `hipo` subprocesses: a signal at a given training step, a kill while saving.

Tests put this folder on ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up in every process, including
the worker ranks and the processes submitit starts. It does nothing unless one of these variables is set:

* ``HIPO_TEST_SIGNAL_AT_STEP=N`` with ``HIPO_TEST_SIGNAL=KILL|TERM|USR1|USR2|INT``: the process sends itself the
  signal when training step N (0-based global step) begins; ``HIPO_TEST_SIGNAL_RANK`` (default 0) picks the rank;
  ``HIPO_TEST_SIGNAL_ONCE=<file>``: only if the file does not exist (it is created first), so a requeued or resumed
  process runs undisturbed.
* ``HIPO_TEST_FORBID_MODEL_LOAD=1``: loading model weights raises (bad input must fail before any model loads).
* ``HIPO_TEST_KILL_WHILE_SAVING_STEP=N``: SIGKILL in the middle of writing the checkpoint of global step N (half of
  the bytes written), as a crash during a save would.
"""

from __future__ import annotations

import io
import os
import signal

_STEP = os.environ.get("HIPO_TEST_SIGNAL_AT_STEP")
_SAVE_STEP = os.environ.get("HIPO_TEST_KILL_WHILE_SAVING_STEP")


def _should_fire() -> bool:
    marker = os.environ.get("HIPO_TEST_SIGNAL_ONCE")
    if marker is None:
        return True
    try:
        with open(marker, "x"):
            return True
    except FileExistsError:
        return False


def _install_signal_at_step(step: int) -> None:
    from hipo.training.module import PreferenceModule

    signum = getattr(signal, "SIG" + os.environ.get("HIPO_TEST_SIGNAL", "KILL"))
    rank = int(os.environ.get("HIPO_TEST_SIGNAL_RANK", "0"))
    original = PreferenceModule.training_step

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN202
        if self.global_step == step and self.global_rank == rank and _should_fire():
            os.kill(os.getpid(), signum)
        return original(self, batch, batch_idx)

    PreferenceModule.training_step = training_step


def _install_kill_while_saving(step: int) -> None:
    import torch

    original = torch.save

    def save(obj, f, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if isinstance(obj, dict) and obj.get("global_step") == step and hasattr(f, "write"):
            buffer = io.BytesIO()
            original(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(obj, f, *args, **kwargs)

    torch.save = save


def _forbid_model_load() -> None:
    import hipo.models.loading as loading

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded before the input was validated")

    class Refusing:
        from_pretrained = staticmethod(refuse)

    loading.build_tiny_model = refuse
    loading.AutoModelForCausalLM = Refusing


if os.environ.get("HIPO_TEST_FORBID_MODEL_LOAD") == "1":
    _forbid_model_load()
if _STEP is not None:
    _install_signal_at_step(int(_STEP))
if _SAVE_STEP is not None:
    _install_kill_while_saving(int(_SAVE_STEP))
