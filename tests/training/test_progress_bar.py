"""The training progress bar reads `step N/max_steps` (Lightning's rich bar read `Epoch 0/-2` with max_epochs=-1)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from tqdm import tqdm

from hipo.app.lightning_trainer import build_trainer
from hipo.config.compose import compose_config
from hipo.training.preemption import StopRequests
from hipo.training.progress import RichStepProgressBar, TQDMStepProgressBar, step_description, step_progress_bar


def _trainer(**settings: Any) -> Any:
    """What the bars read of a Trainer: bounds, optimizer steps done, the epoch."""
    return SimpleNamespace(**{"max_epochs": -1, "max_steps": 16, "global_step": 3, "current_epoch": 0, **settings})


def test_step_description_when_steps_bound_training() -> None:
    assert step_description(_trainer()) == "step 3/16"
    assert step_description(_trainer(max_epochs=None)) == "step 3/16"
    assert step_description(_trainer(max_epochs=2, max_steps=-1)) is None  # epochs bound it: Lightning's text


def test_rich_bar_describes_steps_not_a_negative_epoch_total() -> None:
    bar = RichStepProgressBar()
    bar._trainer = _trainer()
    assert bar._get_train_description(0).strip() == "step 3/16"
    assert RichProgressBar._get_train_description(bar, 0).strip() == "Epoch 0/-2"  # what Lightning's own bar says
    bar._trainer = _trainer(max_epochs=3, max_steps=-1)
    assert bar._get_train_description(1).strip() == "Epoch 1/2"


def test_rich_bar_counts_steps_after_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda *args: None)  # drawing needs a live console
    updates: list[tuple[int, str]] = []
    bar = RichStepProgressBar()
    bar.progress = SimpleNamespace(update=lambda task, **kw: updates.append((task, kw["description"].strip())))
    bar.train_progress_bar_id = 7
    trainer = bar._trainer = _trainer()
    for step in (1, 2):
        trainer.global_step = step
        bar.on_train_batch_end(trainer, None, None, None, step - 1)
    assert updates == [(7, "step 1/16"), (7, "step 2/16")]


def test_tqdm_bar_describes_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TQDMProgressBar, "on_train_batch_end", lambda *args: None)
    bar = TQDMStepProgressBar()
    bar.train_progress_bar = tqdm(total=16, file=io.StringIO())
    trainer = _trainer(global_step=5)
    bar.on_train_batch_end(trainer, None, None, None, 4)
    assert bar.train_progress_bar.desc.startswith("step 5/16")


@pytest.mark.slow  # a tiny-model training run
@pytest.mark.parametrize("enabled", [True, False])
def test_training_uses_the_step_bar(enabled: bool, tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "model=tiny",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
            f"trainer.enable_progress_bar={enabled}",
            f"output_dir={tmp_path}",
        ]
    )
    with StopRequests().installed():
        trainer = build_trainer(cfg, False, devices_per_node=1)
    if enabled:
        assert type(trainer.progress_bar_callback) is type(step_progress_bar())
    else:
        assert trainer.progress_bar_callback is None
