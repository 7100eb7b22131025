"""Phase 1 of `hipo train`: everything that can be wrong with the user's input, checked before any model loads.

Nothing is written here but the prepared-data cache entry of data that passed every check (a complete entry,
written atomically): no MLflow run, no output folder, no reference cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hipo.app.builders import build_datamodule, instantiate_component
from hipo.app.validate import effective_resume, validate_run_config
from hipo.config.components import check_components
from hipo.errors import ConfigError, config_errors
from hipo.training.checkpoints import find_resume_checkpoint
from hipo.training.precision import resolve_precision

log = logging.getLogger(__name__)


@dataclass
class TrainingJob:
    """What phase 1 established.

    Attributes:
        loss: the loss module (``_target_``-built).
        datamodule: the prepared (segmented, tokenized) data.
        benchmarks: loaded benchmark items when ``evaluate.enabled``, else None.
        output_dir: the job's folder (created later, by the phases that write into it).
        resume: ``auto``, a checkpoint path, or None (see :func:`hipo.app.validate.effective_resume`).
        checkpoint: the checkpoint training continues from (None: from step 0).
        devices_per_node: processes the job runs per node.
    """

    loss: Any
    datamodule: Any
    benchmarks: Any
    output_dir: Path
    resume: str | None
    checkpoint: Path | None
    devices_per_node: int

    @property
    def resuming(self) -> bool:
        """Whether training continues from a checkpoint (the policy is no longer its starting point)."""
        return self.checkpoint is not None


def prepare_job(cfg: DictConfig) -> TrainingJob:
    """Phase 1 (see the module docstring).

    Raises:
        ConfigError: a config value that cannot work, naming the key.
        DataError: malformed or unusable data, naming the file, line and field.
        BenchmarkError: (``evaluate.enabled``) a benchmark file that is empty, in another schema or has bad golds.
    """
    resume = effective_resume(cfg)
    check_components(cfg)  # `hipo` checks before it calls train(); this covers train(cfg) from Python and workers
    devices_per_node = validate_run_config(cfg, resume)
    _resolve_precision(cfg)
    output_dir = Path(str(cfg.output_dir))
    with config_errors("loss"):
        loss = instantiate_component(cfg.loss)
    if cfg.reference_cache and loss.reads_tails and loss.needs_reference:
        raise ConfigError(
            "loss.ld_alpha: LD-DPO splits each reference sum at the pair's shared length, which the reference cache "
            "does not keep; set reference_cache=false (the live reference computes it)"
        )
    benchmarks = None
    if cfg.evaluate.enabled:  # every benchmark file is read and checked here, before any model or run
        from hipo.app.eval_command import load_benchmarks

        benchmarks = load_benchmarks(cfg.benchmark, cfg.evaluate.limit, root=cfg.evaluate.get("benchmark_root"))
    tokenizer = load_job_tokenizer(cfg.model)
    with config_errors("data"):  # the options of the data module itself (batch sizes, truncation policy)
        datamodule = build_datamodule(
            cfg, tokenizer, paired=bool(loss.paired), responses_only=bool(loss.responses_only)
        )
    datamodule.setup("fit")  # bad rows raise DataError here
    if not datamodule.stats.val_pairs:
        log.warning(
            "no held-out pairs: %s leaves none for validation (data.val_fraction=%s, split by prompt); training runs "
            "without held-out metrics",
            datamodule.source.name,
            cfg.data.get("val_fraction"),
        )
    checkpoint = _resume_checkpoint(resume, output_dir)
    return TrainingJob(loss, datamodule, benchmarks, output_dir, resume, checkpoint, devices_per_node)


def _resolve_precision(cfg: DictConfig) -> None:
    """Replaces ``trainer.precision=auto`` by the precision this machine runs best (logged, then recorded as a
    param and in the reference cache key like any configured value)."""
    configured = str(cfg.trainer.precision)
    precision, reason = resolve_precision(configured, str(cfg.trainer.accelerator))
    if precision != configured:
        log.info("trainer.precision=auto -> %s (%s)", precision, reason)
        cfg.trainer.precision = precision


def load_job_tokenizer(model_cfg: DictConfig) -> Any:
    """The model's tokenizer alone (the weights load in phase 3)."""
    from hipo.models.loading import load_tokenizer

    try:
        return load_tokenizer(
            str(model_cfg.name_or_path), revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
        )
    except OSError as error:
        raise ConfigError(
            f"model.name_or_path={model_cfg.name_or_path}: cannot load its tokenizer ({error})"
        ) from error


def _resume_checkpoint(resume: str | None, output_dir: Path) -> Path | None:
    """The checkpoint to continue from: an explicit path, or for ``auto`` the newest readable one (None: none yet)."""
    if not resume:
        return None
    if resume != "auto":
        return Path(resume)
    found = find_resume_checkpoint(output_dir / "checkpoints")
    if found is None:
        log.warning("resume=auto: no checkpoint under %s; training starts from step 0", output_dir / "checkpoints")
    else:
        log.info("resume=auto: continuing from %s", found)
    return found
