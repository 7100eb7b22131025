"""The Lightning Trainer of a training job: strategy, checkpoints that resume exactly, stops at step boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from hipo.training.checkpoints import LAST, AtomicCheckpointIO
from hipo.training.exact_resume import ExactResume
from hipo.training.preemption import StopAtStepBoundary, StopRequests
from hipo.training.progress import step_progress_bar

_OWN_CHECKPOINT_IO = ("deepspeed", "fsdp")  # these strategies write sharded checkpoint folders themselves


def training_callbacks(cfg: DictConfig, checkpoint_dir: Path, stop_requests: StopRequests) -> list[Callback]:
    """Exact resume state, stop-on-signal, learning-rate logging and the periodic ``last.ckpt``.

    ``ModelCheckpoint`` writes ``last.ckpt`` every ``trainer.checkpoint_every_n_steps`` optimizer steps (0: only at
    the end) and overwrites it in place (no ``last-v1.ckpt``: ``resume=auto`` must find the newest state under one
    name); a crash or a stop writes the same file.
    """
    last = checkpoint_dir / LAST
    return [
        ExactResume(crash_checkpoint=last),
        StopAtStepBoundary(stop_requests, last),
        LearningRateMonitor(logging_interval="step"),
        ModelCheckpoint(
            dirpath=checkpoint_dir,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=cfg.trainer.checkpoint_every_n_steps or None,
            enable_version_counter=False,
        ),
    ]


def strategy_name(trainer: DictConfig, devices_per_node: int) -> str:
    """The configured strategy; ``auto`` with several devices means DDP (one process per device)."""
    strategy = str(trainer.strategy)
    return "ddp" if strategy == "auto" and devices_per_node * int(trainer.num_nodes) > 1 else strategy


def build_trainer(
    cfg: DictConfig, output_dir: Path, logger: Logger, stop_requests: StopRequests, devices_per_node: int
) -> L.Trainer:
    """The Trainer of ``cfg.trainer``.

    The training sampler is HiPO's own (distributed, length-grouped, resumable), so Lightning must not replace it
    (``use_distributed_sampler=False``); the processes already exist (HiPO's launcher or the cluster's), so
    Lightning launches none.
    """
    t = cfg.trainer
    strategy = strategy_name(t, devices_per_node)
    plugins: list[Any] = [] if strategy.startswith(_OWN_CHECKPOINT_IO) else [AtomicCheckpointIO()]
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        log_every_n_steps=t.log_every_n_steps,
        val_check_interval=t.val_check_interval,
        limit_val_batches=t.limit_val_batches,
        num_sanity_val_steps=t.num_sanity_val_steps,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        deterministic=t.deterministic,
        use_distributed_sampler=False,
        logger=logger,
        callbacks=[
            *training_callbacks(cfg, output_dir / "checkpoints", stop_requests),
            *([step_progress_bar()] if t.enable_progress_bar else []),  # `step N/max_steps`, not `Epoch 0/-2`
        ],
        plugins=plugins,
        default_root_dir=str(output_dir),
    )
