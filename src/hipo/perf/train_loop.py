"""``framework: hipo_train``: the bare variant's model, pairs and settings, stepped by ``hipo train``'s own loop.

From the app, unchanged: the composed ``hipo train`` config (``conf/config.yaml`` with ``trainer=cpu``, or ``gpu``
on a GPU, plus the variant's ``train_overrides``); the Trainer of
:func:`hipo.app.lightning_trainer.build_trainer` with every callback of ``trainer.callbacks`` (exact resume, the
stop at a step boundary, the learning-rate monitor, the periodic ``last.ckpt``, the progress bar) and its atomic
checkpoint plugin; the job's MLflow run and Lightning logger (those of :mod:`hipo.app.train`, here on a temporary
SQLite store); the stop-signal handling around ``fit``.

From the bare variant (:class:`hipo.perf.variant.VariantRunner`): the model, reference, loss and
``PreferenceModule``, and the synthetic pairs -- served in the same order, and collated per step inside the loop by
the same collator, as ``hipo train``'s data loader collates (the bare step takes batches collated in advance).

Set by the perf run, so that both sides do the same work (:data:`hipo.perf.config.LOOP_OWNED_KEYS`): the precision
(``32-true``, or ``bf16-mixed`` for ``autocast: bfloat16``; ``trainer.precision=auto`` would pick bf16-mixed on a CPU
with native bf16), ``max_steps``, gradient clipping at ``perf.gradient_clip``, one device, the output folder and
the store. Nothing is validated (no held-out pairs), as in a job whose split leaves none.

Timing (:class:`~hipo.perf.clock.StepClock`): a step runs from ``on_train_batch_start`` (the batch collated and on
the device; the clock is the first callback) to ``on_train_batch_end`` (after the optimizer and scheduler steps),
like the bare step; its loop span runs on to the next step's start: logging to MLflow, the other callbacks,
checkpoints, the progress bar, fetching and collating the next batch.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from hipo.app.lightning_trainer import build_trainer
from hipo.app.quiet import quiet_third_party
from hipo.app.run_identity import RunIdentity, run_identity
from hipo.app.train import _job_run, _lightning_logger
from hipo.distributed.processes import current_process
from hipo.perf.clock import StepClock, StepResult
from hipo.perf.config import PerfConfig, VariantConfig
from hipo.perf.random_pairs import batch_collator, batch_groups, useful_tokens
from hipo.perf.variant import VariantRunner, resolve_device
from hipo.training.preemption import StopRequests

_PRECISION = {None: "32-true", "bfloat16": "bf16-mixed", "float16": "16-mixed"}  # the variant's autocast


def train_overrides(cfg: PerfConfig, variant: VariantConfig, workdir: Path, total_steps: int) -> list[str]:
    """The ``hipo train`` overrides of ``variant``: its ``train_overrides``, then the settings the perf run owns."""
    trainer = "gpu" if resolve_device(cfg.device).type == "cuda" else "cpu"
    return [
        f"trainer={trainer}",
        *variant.train_overrides,
        f"output_dir='{workdir / 'train'}'",
        f"seed={cfg.seed}",
        f"segments=[{','.join(cfg.segments)}]",
        f"logger.tracking_uri='sqlite:///{workdir / 'mlflow.db'}'",
        f"logger.artifact_location='{workdir / 'mlruns'}'",
        "logger.experiment_name=hipo-perf",
        "trainer.devices=1",
        f"trainer.max_steps={total_steps}",
        f"trainer.precision={_PRECISION[variant.autocast]}",
        f"trainer.gradient_clip_val={cfg.gradient_clip or 'null'}",
    ]


def compose_train_config(overrides: list[str]) -> tuple[DictConfig, RunIdentity]:
    """``hipo train``'s composed config and the job's run identity; this process's Hydra state (a running
    ``hipo perf``'s, under inline isolation) is set aside meanwhile and restored."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from hipo.config.compose import compose_config

    saved_hydra, saved_config = GlobalHydra.instance().hydra, HydraConfig.instance().cfg
    GlobalHydra.instance().clear()
    try:
        cfg = compose_config(overrides)
        return cfg, run_identity(cfg)  # the identity reads the Hydra context: the train config's
    finally:
        HydraConfig.instance().cfg = saved_config
        if saved_hydra is not None:
            GlobalHydra.instance().clear()
            GlobalHydra.instance().initialize(saved_hydra)


class TrainLoopRunner:
    """A ``framework: hipo_train`` variant (see the module docstring).

    Attributes:
        bare: the bare variant's runner that built the model, pairs and module (its own optimizer is unused here;
            :func:`hipo.perf.suite.run_same_process_loop` steps it by hand between the loop's steps).
        extra: after :meth:`run`, facts of the loop for the record (its callbacks, MLflow metric keys, times).
    """

    def __init__(self, cfg: PerfConfig, name: str, variant: VariantConfig) -> None:
        self.bare = VariantRunner(cfg, name, variant)
        started = time.perf_counter()
        self.cfg, self.name, self.variant, self.device = cfg, name, self.bare.variant, self.bare.device
        self.trainable, self.reference_setup_s = self.bare.trainable, self.bare.reference_setup_s
        self._workdir = tempfile.TemporaryDirectory(prefix="hipo-perf-loop-")
        total = cfg.warmup_steps + cfg.steps
        overrides = train_overrides(cfg, self.variant, Path(self._workdir.name), total)
        self.train_cfg, self.identity = compose_train_config(overrides)
        self.setup_s = self.bare.setup_s + time.perf_counter() - started
        self.extra: dict[str, Any] = {}

    def dataloader(self, total_steps: int) -> DataLoader[Any]:
        """Step i's batch is the bare runner's batch ``i % num_batches``, collated in the loop (no workers)."""
        bare = self.bare
        groups = batch_groups(len(bare.pairs), self.cfg.pairs_per_step)
        collate = batch_collator(len(self.cfg.segments), bare.loss.paired, self.variant.packed, self.cfg.pack_length)
        return DataLoader(
            bare.pairs,  # type: ignore[arg-type]  # a list is a map-style dataset
            batch_sampler=[groups[i % len(groups)] for i in range(total_steps)],
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def run(
        self, total_steps: int, before_step: Callable[[], None], after_step: Callable[[StepResult], None]
    ) -> list[StepResult]:
        """``fit`` for ``total_steps`` steps as ``hipo train`` runs it; ``before_step`` runs before each step's clock
        starts."""
        train_cfg = self.train_cfg
        if total_steps != int(train_cfg.trainer.max_steps):
            raise ValueError(f"{self.name}: built for {train_cfg.trainer.max_steps} steps, asked for {total_steps}")
        quiet_third_party()
        clock = _LoopClock(StepClock(self.device, before_step, after_step), self.bare.batches)
        requests = StopRequests()
        started = time.perf_counter()
        with requests.installed(), _job_run(train_cfg, self.identity, current_process(), None) as run_id:
            trainer = build_trainer(train_cfg, _lightning_logger(train_cfg, run_id, None), devices_per_node=1)
            callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]  # set by Lightning at init
            callbacks.insert(0, clock)  # first: its step starts before, and ends before, every other hook
            fit_started = time.perf_counter()
            with requests.deferred():
                trainer.fit(self.bare.module, train_dataloaders=self.dataloader(total_steps))
            fit_ended = time.perf_counter()
        assert run_id is not None  # this process is the job's rank 0
        self.extra = {
            "train_setup_s": fit_started - started,
            "fit_s": fit_ended - fit_started,
            "fit_end_s": fit_ended - clock.finished_at,  # after the last step: the final checkpoint, loop teardown
            "trainer_precision": str(train_cfg.trainer.precision),
            "callbacks": [type(callback).__name__ for callback in callbacks],
            "mlflow_metric_keys": sorted(MlflowClient(str(train_cfg.logger.tracking_uri)).get_run(run_id).data.metrics),
            "train_overrides": list(self.variant.train_overrides),
        }
        return clock.clock.finish()

    def close(self) -> None:
        self._workdir.cleanup()


class _LoopClock(Callback):
    """:class:`StepClock` on the Trainer's hooks (the first callback of the list; see the module docstring)."""

    def __init__(self, clock: StepClock, batches: list[Any]) -> None:
        self.clock = clock
        self.tokens = [useful_tokens(batch) for batch in batches]  # counted before timing, as the bare step's
        self.finished_at = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.clock.begin()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = float(outputs["loss"].detach())  # the bare step reads its loss inside its clock too
        index = batch_idx % len(self.tokens)  # one epoch of every step: batch_idx counts the steps
        self.clock.end(self.tokens[index], loss, index)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.finished_at:  # the loop span of the last step ends before the epoch-end checkpoint
            self.clock.finish()
            self.finished_at = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_end(trainer, pl_module)
