"""The training progress bar, described by optimizer steps when ``trainer.max_steps`` bounds the run.

HiPO trains for ``trainer.max_steps`` with ``max_epochs=-1``; Lightning's rich bar describes itself as
``Epoch {epoch}/{max_epochs - 1}``, which read ``Epoch 0/-2``. These bars read ``step N/max_steps`` instead (N: the
optimizer steps done, updated after every batch), and keep Lightning's description when epochs bound the run. The
bar itself still counts the batches of the current epoch, as Lightning's does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE


def step_description(trainer: L.Trainer) -> str | None:
    """``step N/max_steps`` when only ``max_steps`` bounds training (``max_epochs`` -1 or None), else None."""
    if trainer.max_epochs in (None, -1) and trainer.max_steps > 0:
        return f"step {trainer.global_step}/{trainer.max_steps}"
    return None


class RichStepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, described by :func:`step_description` when steps bound training."""

    def _get_train_description(self, current_epoch: int) -> str:
        # lightning 2.6's hook for the train bar's text (at the epoch's start, and for a bar made on resume)
        description = step_description(self.trainer)
        if description is None:
            return super()._get_train_description(current_epoch)
        return f"{description:{len(self.validation_description)}}"  # padded as Lightning pads "Epoch N"

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        task = self.train_progress_bar_id
        if step_description(trainer) is not None and self.progress is not None and task is not None:
            self.progress.update(task, description=self._get_train_description(trainer.current_epoch))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # draws the bar


class TQDMStepProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar (where ``rich`` is not installed), described by :func:`step_description`."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._describe(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._describe(trainer)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # draws the bar

    def _describe(self, trainer: L.Trainer) -> None:
        description = step_description(trainer)
        if description is not None:
            self.train_progress_bar.set_description(description, refresh=False)


def step_progress_bar(enabled: bool = True) -> ProgressBar | None:
    """The bar Lightning would pick by default (rich where it is installed, else tqdm), described by steps.

    None when not ``enabled`` (config: ``enabled: ${trainer.enable_progress_bar}``): a Trainer that shows no bar
    refuses a progress-bar callback.
    """
    if not enabled:
        return None
    return RichStepProgressBar() if _RICH_AVAILABLE else TQDMStepProgressBar()
