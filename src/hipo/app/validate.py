"""Checks of a `hipo train` config that need no data and no model: they fail in a second, naming the key.

The schemas (src/hipo/config) already refuse unknown keys and wrong types at composition; this module refuses
values of the right type that cannot work (a batch size of 0, FSDP on a CPU, a model folder that does not exist,
an output folder that already holds another run's checkpoints), before any file is read or written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from omegaconf import DictConfig

from hipo.distributed.processes import current_process, devices_per_node, is_multi_process_strategy
from hipo.errors import ConfigError
from hipo.training.precision import AUTO as AUTO_PRECISION

_OPTIM_SCHEDULERS = ("cosine", "linear", "constant")


def _precisions() -> tuple[str, ...]:
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    return tuple(get_args(_PRECISION_INPUT_STR)) + tuple(get_args(_PRECISION_INPUT_STR_ALIAS))


def _positive(node: DictConfig, key: str, group: str) -> None:
    """``<group>.<key>`` must be a number > 0."""
    value = node.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{group}.{key}={value!r}: must be a positive number")


def validate_trainer(trainer: DictConfig) -> int:
    """Checks accelerator, devices, strategy, nodes and precision; returns the number of processes per node."""
    precision = str(trainer.precision)
    if precision != AUTO_PRECISION and precision not in _precisions():
        raise ConfigError(f"trainer.precision={precision!r}: expected auto or one of {list(_precisions())}")
    strategy = str(trainer.strategy).lower()
    use_cpu = str(trainer.accelerator).lower() == "cpu"
    if strategy.startswith("deepspeed"):
        if use_cpu:
            raise ConfigError("trainer.strategy=deepspeed runs on GPUs only; on CPUs use trainer=ddp")
        try:
            import deepspeed  # noqa: F401
        except ImportError as error:
            raise ConfigError("trainer.strategy=deepspeed needs `pip install deepspeed` (GPU machines)") from error
    if strategy.startswith("fsdp") and use_cpu:
        raise ConfigError("trainer.strategy=fsdp needs GPUs (Lightning refuses FSDP on CPUs); on CPUs use trainer=ddp")
    per_node = devices_per_node(trainer.accelerator, trainer.devices)
    if per_node > 1 and not (is_multi_process_strategy(strategy) or strategy == "auto"):
        raise ConfigError(
            f"trainer.devices={trainer.devices!r} with trainer.strategy={strategy}: several devices need a "
            "multi-process strategy (trainer=ddp, fsdp or deepspeed)"
        )
    nodes = int(trainer.get("num_nodes", 1))
    if nodes < 1:
        raise ConfigError(f"trainer.num_nodes={nodes}: must be >= 1")
    if nodes > 1 and not current_process().distributed:
        raise ConfigError(
            f"trainer.num_nodes={nodes}: a multi-node job is started by a cluster launcher, one process per device "
            "(hydra/launcher=slurm, or torchrun --nnodes); run without -m/launcher it would be one process"
        )
    if trainer.max_steps == 0 or (trainer.max_steps < 0 and trainer.max_epochs <= 0):
        raise ConfigError("trainer.max_steps must be > 0 (or -1 with trainer.max_epochs > 0)")
    for key in ("accumulate_grad_batches", "log_every_n_steps"):
        _positive(trainer, key, "trainer")
    if trainer.checkpoint_every_n_steps < 0:
        raise ConfigError(f"trainer.checkpoint_every_n_steps={trainer.checkpoint_every_n_steps}: must be >= 0")
    return per_node


def validate_data(data: DictConfig) -> None:
    """Batch sizes, lengths and split fractions (the rows themselves are checked when the data is prepared)."""
    for key in ("batch_size", "eval_batch_size", "max_length", "pack_length"):
        _positive(data, key, "data")
    if not 0.0 <= float(data.val_fraction) < 1.0:
        raise ConfigError(f"data.val_fraction={data.val_fraction}: must be in [0, 1)")
    if data.max_val_pairs is not None and data.max_val_pairs < 1:
        raise ConfigError(f"data.max_val_pairs={data.max_val_pairs}: must be >= 1 (or null for all)")
    if data.num_workers < 0:
        raise ConfigError(f"data.num_workers={data.num_workers}: must be >= 0")


def validate_model(model: DictConfig) -> None:
    """dtype, and that the model (and adapter) can be found: a local folder exists, a hub id is well formed."""
    from hipo.models.loading import TINY, resolve_dtype, resolve_model_source

    try:
        resolve_dtype(model.dtype)
        if model.name_or_path != TINY:
            resolve_model_source(str(model.name_or_path))
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"model: {error}") from error
    for key in ("adapter_path", "reference_adapter_path"):
        if model.get(key) and not (Path(str(model[key])).expanduser() / "adapter_config.json").is_file():
            raise ConfigError(f"model.{key}={model[key]}: no adapter_config.json there")
    if model.get("reference_adapter_path") and not (model.adapter_path or model.lora.enabled):
        raise ConfigError(
            f"model.reference_adapter_path={model.reference_adapter_path}: a reference adapter needs a LoRA policy "
            "(model.adapter_path=… or model.lora.enabled=true)"
        )
    _positive(model, "logprob_chunk_size", "model")


def validate_optim(optim: DictConfig) -> None:
    _positive(optim, "lr", "optim")
    _positive(optim, "weights_lr", "optim")
    if optim.scheduler not in _OPTIM_SCHEDULERS:
        raise ConfigError(f"optim.scheduler={optim.scheduler!r}: expected one of {list(_OPTIM_SCHEDULERS)}")
    if optim.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps={optim.warmup_steps}: must be >= 0")


def validate_resume(cfg: DictConfig, resume: str | None) -> None:
    """An explicit checkpoint path exists; a fresh run does not silently overwrite another run's checkpoints."""
    output_dir = Path(str(cfg.output_dir))
    if resume and resume != "auto" and not Path(resume).is_file():
        raise ConfigError(f"resume={resume}: no such checkpoint file")
    if not resume and any((output_dir / "checkpoints").glob("*.ckpt")):
        raise ConfigError(
            f"output_dir={output_dir} already holds checkpoints of an earlier run: pass resume=auto to continue it, "
            "or choose another output_dir"
        )


def validate_evaluation(evaluate: DictConfig) -> None:
    """End-of-training evaluation runs on the trained policy in memory: the transformers engine only."""
    if evaluate.enabled and evaluate.engine != "hf":
        raise ConfigError(
            f"evaluate.engine={evaluate.engine}: the end-of-training evaluation generates with the policy in memory "
            "(engine hf); for vLLM, evaluate the saved model afterwards: hipo eval checkpoint=<output_dir>/final "
            "evaluate.engine=vllm"
        )


def validate_run_config(cfg: DictConfig, resume: str | None) -> int:
    """Every check above, in the order a user reads the config; returns the processes per node of the job."""
    segments = list(cfg.segments)
    if not segments or len(set(segments)) != len(segments):
        raise ConfigError(f"segments={segments}: must be non-empty and distinct")
    per_node = validate_trainer(cfg.trainer)
    validate_model(cfg.model)
    validate_data(cfg.data)
    validate_optim(cfg.optim)
    validate_evaluation(cfg.evaluate)
    validate_resume(cfg, resume)
    return per_node


def effective_resume(cfg: DictConfig | dict[str, Any]) -> str | None:
    """``cfg.resume``; jobs started by submitit (``hydra/launcher=slurm``) default to ``auto``, so a requeued job
    continues from its last checkpoint by itself."""
    import os

    resume = cfg.get("resume")
    if resume:
        return str(resume)
    return "auto" if os.environ.get("SUBMITIT_EXECUTOR") else None
