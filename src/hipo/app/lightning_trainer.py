"""The Lightning Trainer of a training job, built from ``cfg.trainer``: strategy, checkpoints that resume exactly,
stops at step boundaries.

``cfg.trainer`` is a ``_target_`` node (``lightning.pytorch.Trainer``): every key but
:attr:`~hipo.config.schema.TrainerConfig.CONFIG_ONLY_KEYS` is a Trainer argument of the same name, so a Trainer
argument added to the schema, a YAML file or the command line (``+trainer.benchmark=true``) reaches the Trainer with
no code here. ``trainer.callbacks`` holds named ``_target_`` nodes (see :class:`~hipo.config.schema.TrainerConfig`),
built in order. What only the job knows is set here, after the config: the strategy (``auto`` with several devices is
DDP), the logger, the checkpoint plugin, the callbacks, the output folder, and two settings HiPO depends on (its own
sampler: ``use_distributed_sampler=False``; no model summary). ``trainer.precision`` was resolved in phase 1
(:func:`hipo.app.train_setup.prepare_job`), in the config itself.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from hipo.config.schema import TrainerConfig
from hipo.training.checkpoints import AtomicCheckpointIO

_OWN_CHECKPOINT_IO = ("deepspeed", "fsdp")  # these strategies write sharded checkpoint folders themselves


def strategy_name(trainer: DictConfig, devices_per_node: int) -> str:
    """The configured strategy; ``auto`` with several devices means DDP (one process per device)."""
    strategy = str(trainer.strategy)
    return "ddp" if strategy == "auto" and devices_per_node * int(trainer.num_nodes) > 1 else strategy


def build_callbacks(nodes: DictConfig) -> list[Callback]:
    """The callbacks of ``trainer.callbacks``, in order: each node instantiated; null entries are skipped, and so is
    a node that builds to None (the progress bar of a Trainer that shows none).

    The stop callback (:class:`~hipo.training.preemption.StopAtStepBoundary`) takes the job's stop requests from
    :meth:`StopRequests.current() <hipo.training.preemption.StopRequests.current>`, so call this inside the job's
    ``with requests.installed():``. The signal handlers belong to the process (one set per job), so the callback
    asks for the installed ones rather than this function passing objects keyed by callback name: a renamed, added
    or second stop callback gets them too, and nothing here knows the names in ``trainer.callbacks``.
    """
    callbacks = []
    for node in nodes.values():
        if node is None:
            continue
        callback = instantiate(node, _convert_="all")
        if callback is not None:
            callbacks.append(callback)
    return callbacks


def build_trainer(cfg: DictConfig, logger: Logger | bool, devices_per_node: int) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` (see the module docstring), writing under ``cfg.output_dir``.

    The training sampler is HiPO's own (distributed, length-grouped, resumable), so Lightning must not replace it
    (``use_distributed_sampler=False``); the processes already exist (HiPO's launcher or the cluster's), so
    Lightning launches none. The job's values are passed to the partial ``instantiate`` returns, not to
    ``instantiate`` itself: Hydra merges its keyword arguments into the config, which would turn a dataclass
    callback or logger into a ``DictConfig``.
    """
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(settings, dict)
    for key in (*TrainerConfig.CONFIG_ONLY_KEYS, "callbacks"):  # the callbacks are nodes: built by build_callbacks
        settings.pop(key, None)
    strategy = strategy_name(cfg.trainer, devices_per_node)
    plugins: list[Any] = [] if strategy.startswith(_OWN_CHECKPOINT_IO) else [AtomicCheckpointIO()]
    make_trainer = instantiate(settings, _partial_=True, _convert_="all")
    return make_trainer(
        strategy=strategy,
        logger=logger,
        plugins=plugins,
        callbacks=build_callbacks(cfg.trainer.callbacks),
        default_root_dir=str(cfg.output_dir),
        use_distributed_sampler=False,
        enable_model_summary=False,
    )
