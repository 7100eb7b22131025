"""`hipo train`: one training job, on one process or several, tracked in MLflow from setup to the final table.

The phases, in order (each one fails before the next spends anything):

1. **prepare** (:func:`hipo.app.train_setup.prepare_job`): config checks, loss, benchmarks, tokenizer and the
   prepared data -- bad input ends here with a named error, before any model is loaded, any MLflow run exists or
   any output folder is written;
2. **processes**: a multi-device job on one node starts its other ranks now (:class:`WorkerGroup`); every rank
   joins the job's process group;
3. **model**: policy and reference (the reference cache is computed by rank 0, read by the others);
4. **tracked training** (rank 0 owns the MLflow run; a resumed job continues the run of the job it resumes):
   held-out metrics before, ``fit`` (stops on a signal at a step boundary with a checkpoint), held-out metrics
   after, ``final/``, evaluation, the table.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import mlflow
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.logger import DummyLogger
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from hipo.app.builders import build_policy, cached_reference_fn, reference_fn
from hipo.app.final_output import save_trained
from hipo.app.lightning_trainer import build_trainer
from hipo.app.quiet import quiet_third_party
from hipo.app.run_identity import RunIdentity, run_identity
from hipo.app.summary import format_held_out_table, format_nll_table
from hipo.app.train_setup import TrainingJob, prepare_job
from hipo.config.secrets import redact_secrets
from hipo.distributed.launcher import WorkerGroup
from hipo.distributed.processes import (
    ProcessInfo,
    current_process,
    job_process_group,
    process_group_backend,
    rank_zero_first,
)
from hipo.errors import JobInterrupted
from hipo.tracking.lightning_logger import AttachedMLFlowLogger, recorded_steps
from hipo.tracking.run import record_failed_run, tracked_run
from hipo.tracking.run_record import RunRecord, run_to_continue, write_run_record
from hipo.training.checkpoints import remove_stale_temporaries
from hipo.training.held_out import HELD_OUT_PAIRS
from hipo.training.module import PreferenceModule
from hipo.training.preemption import StopRequests

log = logging.getLogger(__name__)

VAL_BEFORE = "val_before/"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Trains one policy (see the module docstring for the phases).

    Returns:
        ``{"run_id", "val_before", "val_after", "output_dir"}`` (+ ``"objective"``: the value of ``cfg.objective``);
        ``run_id`` is None on ranks other than 0.

    Raises:
        UserError: bad config or data (before anything is written).
        JobInterrupted: a signal stopped the job (after a checkpoint when it was training; the run is KILLED).
    """
    started = time.perf_counter()
    quiet_third_party()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    identity = run_identity(cfg)
    process = current_process()
    backend = process_group_backend(cfg.trainer.accelerator)
    requests = StopRequests()
    with requests.installed():
        try:
            if process.launched_by in ("slurm", "torchrun"):  # every rank exists already: rank 0 prepares caches
                with job_process_group(process, backend):
                    with rank_zero_first(process):
                        job = _prepare_or_record(cfg, identity, process)
                    return _run(cfg, job, identity, process, requests, started, workers=None)
            job = _prepare_or_record(cfg, identity, process)
            with _local_workers(cfg, job, process) as workers:
                process = current_process()  # rank 0 of the job once its workers exist
                with job_process_group(process, backend):
                    return _run(cfg, job, identity, process, requests, started, workers)
        except JobInterrupted as stop:  # the run is KILLED and the checkpoint written: now the launcher's turn
            requests.chain(stop.signum)  # under submitit: requeue this job (it resumes by itself) and exit
            raise


def _prepare_or_record(cfg: DictConfig, identity: RunIdentity, process: ProcessInfo) -> TrainingJob:
    """:func:`prepare_job`; a sweep job that fails here still gets its FAILED run holding the error."""
    try:
        return prepare_job(cfg)
    except Exception as error:
        if identity.parent_run_id and process.is_main:
            record_failed_run(
                cfg.logger.tracking_uri,
                cfg.logger.experiment_name,
                identity.name,
                identity.tags,
                error,
                params=_resolved_or_none(cfg),
                artifact_location=cfg.logger.artifact_location,
                parent_run_id=identity.parent_run_id,
            )
        raise


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config with every interpolation resolved, as plain Python (what MLflow records; secrets redacted)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    return {str(k): v for k, v in redact_secrets(resolved).items()}


def _resolved_or_none(cfg: DictConfig) -> dict[str, Any] | None:
    """The resolved config as a dict, or None when it does not resolve (that may be why the job failed)."""
    try:
        return resolved_config(cfg)
    except Exception:
        return None


@contextlib.contextmanager
def _local_workers(cfg: DictConfig, job: TrainingJob, process: ProcessInfo) -> Iterator[WorkerGroup | None]:
    """The other ranks of a one-node multi-device job, started by this process (rank 0); None otherwise.

    Signals are not forwarded to them: during training the ranks agree on a stop at the step boundary (a stop seen by
    rank 0 stops all), and outside training rank 0 stops at once and its workers die with it.
    """
    if process.distributed or job.devices_per_node < 2:
        yield None
        return
    with WorkerGroup(cfg, world_size=job.devices_per_node) as workers:
        yield workers


def _run(
    cfg: DictConfig,
    job: TrainingJob,
    identity: RunIdentity,
    process: ProcessInfo,
    requests: StopRequests,
    started: float,
    workers: WorkerGroup | None,
) -> dict[str, Any]:
    """Phases 3 and 4 on every rank; rank 0 alone writes (MLflow, ``final/``, the table)."""
    module, tokenizer = _preference_module(cfg, job, process)
    output_dir = job.output_dir
    if job.resume and process.is_main:
        remove_stale_temporaries(output_dir / "checkpoints")
    continue_run = run_to_continue(output_dir, cfg.logger.tracking_uri) if job.resume and process.is_main else None
    with _job_run(cfg, identity, process, continue_run) as run_id:
        if workers is not None and run_id is not None:
            workers.on_failure = lambda message: _mark_failed(cfg.logger.tracking_uri, run_id, message)
        if run_id is not None and continue_run is None:
            write_run_record(output_dir, RunRecord(run_id, cfg.logger.tracking_uri, cfg.logger.experiment_name))
            _log_job_inputs(cfg, job, run_id)
        logger = _lightning_logger(cfg, run_id, continue_run)
        trainer = build_trainer(cfg, logger, job.devices_per_node)  # its stop callback reads `requests`
        held_out = bool(job.datamodule.stats.val_pairs)  # a split may leave none (val_fraction=0, one prompt)
        val_before = _held_out_before(cfg, trainer, module, job, run_id, continue_run) if held_out else {}
        with requests.deferred():
            trainer.fit(module, datamodule=job.datamodule, ckpt_path=str(job.checkpoint) if job.checkpoint else None)
        if held_out and (not module.held_out_steps or module.held_out_steps[-1] != trainer.global_step):
            trainer.validate(module, datamodule=job.datamodule, verbose=False)  # else fit's last one is current
        val_after = module.held_out_results[-1] if held_out else {}
        result: dict[str, Any] = {"run_id": run_id, "val_before": val_before, "val_after": val_after}
        result["output_dir"] = str(output_dir)
        if process.is_main:
            _finish(cfg, job, module, tokenizer, trainer, run_id, val_before, val_after, started)
    if cfg.objective:  # what an Optuna sweep maximizes
        result["objective"] = _objective(str(cfg.objective), val_before, val_after)
    return result


def _preference_module(cfg: DictConfig, job: TrainingJob, process: ProcessInfo) -> tuple[PreferenceModule, Any]:
    """Phase 3: the policy, its reference (the cache computed by rank 0 first) and the LightningModule; and the
    tokenizer."""
    needs_reference = bool(job.loss.needs_reference)
    bundle = build_policy(cfg.model, with_reference=needs_reference)
    chunk, tails = cfg.model.logprob_chunk_size, bool(job.loss.reads_tails)
    reference = reference_fn(bundle.reference, chunk, paired_tails=tails) if needs_reference else None
    if cfg.reference_cache and reference is not None:
        with rank_zero_first(process):
            reference = cached_reference_fn(cfg, bundle, job.datamodule, reference)
    elif cfg.reference_cache:
        log.info("reference_cache=true: %s needs no reference, so there is nothing to cache", type(job.loss).__name__)
    starts_as_reference = (cfg.model.lora.enabled or cfg.model.adapter_path) and not job.resuming
    module = PreferenceModule(
        policy=bundle.policy,
        loss=job.loss,
        reference=reference,
        segment_names=list(cfg.segments),
        optim=cfg.optim,
        logprob_chunk_size=cfg.model.logprob_chunk_size,
        checkpoint_trainable_only=bool(cfg.model.lora.enabled or cfg.model.adapter_path),
        # a fresh LoRA adapter (B = 0) and a loaded starting adapter equal their reference until the first step
        policy_starts_as_reference=bool(
            starts_as_reference and needs_reference and not cfg.model.reference_adapter_path
        ),
    )
    return module, bundle.tokenizer


def _objective(objective: str, val_before: dict[str, float], val_after: dict[str, float]) -> float:
    """The final metric named by ``cfg.objective`` (``val_before/...`` or ``val_after/...``)."""
    summary = {**{f"{VAL_BEFORE}{k}": v for k, v in val_before.items()}}
    summary.update({f"val_after/{k}": v for k, v in val_after.items()})
    if objective not in summary:
        raise KeyError(f"objective={objective!r} is not a final metric; known: {sorted(summary)}")
    return summary[objective]


def _lightning_logger(cfg: DictConfig, run_id: str | None, continue_run: str | None) -> Logger:
    """Rank 0: the MLflow logger of the job's run (skipping steps a resumed run already has); other ranks: a logger
    that records nothing and never opens the store."""
    if run_id is None:
        return DummyLogger()
    return AttachedMLFlowLogger(
        recorded_steps=recorded_steps(cfg.logger.tracking_uri, run_id) if continue_run else None,
        experiment_name=cfg.logger.experiment_name,
        tracking_uri=cfg.logger.tracking_uri,
        run_id=run_id,
    )


@contextlib.contextmanager
def _job_run(
    cfg: DictConfig, identity: RunIdentity, process: ProcessInfo, continue_run: str | None
) -> Iterator[str | None]:
    """Rank 0: the job's MLflow run (new, or the resumed job's); other ranks: no run (they log nothing)."""
    if not process.is_main:
        yield None
        return
    with tracked_run(
        tracking_uri=cfg.logger.tracking_uri,
        experiment_name=cfg.logger.experiment_name,
        run_name=identity.name,
        tags=identity.tags,
        params=resolved_config(cfg),
        artifact_location=cfg.logger.artifact_location,
        parent_run_id=identity.parent_run_id,
        continue_run_id=continue_run,
    ) as run_id:
        yield run_id


def _log_job_inputs(cfg: DictConfig, job: TrainingJob, run_id: str) -> None:
    """The resolved config and the data statistics of a new run."""
    mlflow.log_dict(resolved_config(cfg), "config/resolved.yaml", run_id=run_id)
    stats = job.datamodule.stats.as_dict()
    mlflow.log_dict(stats, "data/stats.json", run_id=run_id)
    numbers = {f"data/{k}": float(v) for k, v in stats.items() if isinstance(v, (int, float))}
    if numbers:
        mlflow.log_metrics(numbers, run_id=run_id)


def _held_out_before(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: PreferenceModule,
    job: TrainingJob,
    run_id: str | None,
    continue_run: str | None,
) -> dict[str, float]:
    """Held-out metrics of the starting policy: measured and logged now, or those of the run being resumed.

    A job resumed from a checkpoint cannot measure them (its policy has trained); it reads the interrupted job's.
    """
    if continue_run is not None:
        recorded = MlflowClient(cfg.logger.tracking_uri).get_run(continue_run).data.metrics
        before = {k[len(VAL_BEFORE) :]: v for k, v in recorded.items() if k.startswith(VAL_BEFORE)}
        if before or job.checkpoint is not None:
            return before
    if job.checkpoint is not None:
        if run_id is not None:  # other ranks have no run to read them from, and need none
            log.warning("resumed from a checkpoint without its run: held-out metrics before training are unknown")
        return {}
    trainer.validate(module, datamodule=job.datamodule, verbose=False)
    before = module.held_out_results[-1]
    if run_id is not None:
        mlflow.log_metrics({f"{VAL_BEFORE}{k}": v for k, v in before.items()}, run_id=run_id)
    return before


def _finish(
    cfg: DictConfig,
    job: TrainingJob,
    module: PreferenceModule,
    tokenizer: Any,
    trainer: L.Trainer,
    run_id: str | None,
    val_before: dict[str, float],
    val_after: dict[str, float],
    started: float,
) -> None:
    """Rank 0: final metrics, ``final/``, evaluation, the printed table."""
    assert run_id is not None
    summary = {f"val_after/{k}": v for k, v in val_after.items()}
    summary["time/train_job_s"] = time.perf_counter() - started
    mlflow.log_metrics(summary, run_id=run_id)
    save_trained(module, tokenizer, job.output_dir, cfg)
    if job.benchmarks is not None:
        from hipo.app.eval_command import evaluate_after_training

        evaluate_after_training(cfg, module.policy, tokenizer, run_id, job.benchmarks, trainer.global_step)
    names = [*cfg.segments, "whole"]
    paired = bool(job.loss.paired)  # preference metrics (a reference-free loss's rewards are beta * log pi)
    table = (format_held_out_table if paired else format_nll_table)(val_before, val_after, names)
    if not val_after:
        table = "no held-out pairs: the data's split left none, so nothing was measured before or after training"
    print(table)
    (job.output_dir / "held_out.md").write_text(table + "\n")
    mlflow.log_text(table, "held_out.md", run_id=run_id)
    if paired and val_after:  # each held-out pair's margins (a loss without pairs has none)
        pairs = module.held_out.write_pairs(job.output_dir / HELD_OUT_PAIRS)
        mlflow.log_artifact(str(pairs), Path(HELD_OUT_PAIRS).parent.as_posix(), run_id=run_id)
    print(f"MLflow run id: {run_id}  (experiment {cfg.logger.experiment_name!r}, store {cfg.logger.tracking_uri})")


def _mark_failed(tracking_uri: str, run_id: str, message: str) -> None:
    """Called when a worker rank died: the run is FAILED with the reason (the job is about to end)."""
    client = MlflowClient(tracking_uri)
    client.set_tag(run_id, "hipo.error", message)
    client.set_terminated(run_id, "FAILED")
