"""What a Lightning checkpoint lacks for a resumed run to end exactly where an uninterrupted one would.

Lightning's checkpoint holds the weights, optimizer, scheduler and loop counters. It does not hold the random
number generators' states (dropout, e.g. LoRA's, draws from them) nor where in the epoch the data order was; a
resumed run would restart the epoch's batches and draw other dropout masks. :class:`ExactResume` records both at
every optimizer-step boundary and puts them in the checkpoint (as callback state):

* the position: ``(epoch, batches done in it)``; on resume it goes to the data module before its dataloader is
  built, and the sampler continues the epoch from there;
* the RNG states of python, numpy and torch (CPU and every CUDA device) of EVERY rank (gathered to rank 0, which
  writes the checkpoint); on resume each rank restores its own right before the first resumed step.

Only a step boundary is a consistent state (weights, optimizer and position agree). When training crashes, this
callback writes a checkpoint only if no optimizer step was under way and the last batch completed a step (one
process only: the other ranks of a distributed job are not in the exception handler to join the save); otherwise
the last periodic checkpoint stays the one to resume from.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from hipo.distributed.processes import gather_to_all
from hipo.errors import JobInterrupted

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """The states of every global random number generator this process uses, as tensors and plain Python values
    (what ``torch.load(weights_only=True)``, Lightning's default, accepts)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    assert isinstance(keys, np.ndarray)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what :func:`rng_states` returned."""
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(Callback):
    """Records the data position and RNG states at step boundaries; restores them on resume (see module docstring).

    Args:
        crash_checkpoint: where to write a checkpoint when training crashes at a consistent point (``None``: never).
    """

    def __init__(self, crash_checkpoint: str | Path | None = None) -> None:
        self.crash_checkpoint = Path(crash_checkpoint) if crash_checkpoint is not None else None
        self.position: tuple[int, int] | None = None  # (epoch, batches done) at the last step boundary
        self.rng: dict[str, Any] | None = None  # this rank's RNG states at the last step boundary
        self._rng_to_restore: dict[str, Any] | None = None
        self._datamodule: Any = None
        self._step_at_batch_start: int | None = None
        self._optimizer_stepping = False
        self._at_step_boundary = True  # no batch yet, or the last one ended with an optimizer step

    # ---- recording --------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._datamodule = getattr(trainer, "datamodule", None)  # set before a checkpoint is restored

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        self._step_at_batch_start = trainer.global_step
        self._optimizer_stepping = False

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        self._optimizer_stepping = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._optimizer_stepping = False
        stepped = trainer.global_step != self._step_at_batch_start
        self._step_at_batch_start = None
        self._at_step_boundary = stepped
        if stepped:
            self.position = (trainer.current_epoch, batch_idx + 1)
            self.rng = rng_states()

    # ---- checkpoint state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Position and every rank's RNG states (a collective: every rank calls it while saving)."""
        return {"position": self.position, "rng": gather_to_all(self.rng)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position, states = state_dict.get("position"), state_dict.get("rng") or []
        self.position = tuple(position) if position is not None else None  # type: ignore[assignment]
        if self.position is not None and self._datamodule is not None:
            self._datamodule.resume_at(*self.position)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self._rng_to_restore = states[rank] if rank < len(states) else None
        if self._rng_to_restore is None:
            log.warning("the checkpoint holds no RNG state for rank %d: dropout after resuming may differ", rank)

    # ---- crashes ----------------------------------------------------------------------------------------------------
    @property
    def consistent(self) -> bool:
        """Whether the job is inside a training batch that has not started its optimizer step, right after a step
        boundary: weights, optimizer and the recorded position then all describe the previous step."""
        in_batch = self._step_at_batch_start is not None
        return in_batch and self._at_step_boundary and not self._optimizer_stepping

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.crash_checkpoint is None or isinstance(exception, (JobInterrupted, KeyboardInterrupt)):
            return
        if trainer.world_size > 1 or trainer.global_step == 0 or not self.consistent:
            log.warning("training crashed at step %d; resume from the last periodic checkpoint", trainer.global_step)
            return
        # Lightning counts the steps it logged at (`_batches_that_stepped`) after a batch ends and adds one when it
        # restarts from a checkpoint written inside a batch; the batch that crashed never stepped, so take it back
        # for the save (checked by tests/training/test_train_app.py: the resumed history has no gap).
        epoch_loop = trainer.fit_loop.epoch_loop
        epoch_loop._batches_that_stepped -= 1
        try:
            trainer.save_checkpoint(self.crash_checkpoint)
        finally:
            epoch_loop._batches_that_stepped += 1
        log.warning("training crashed; checkpoint of step %d written to %s", trainer.global_step, self.crash_checkpoint)
