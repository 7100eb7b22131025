"""`hipo train`: one training job from a composed config, tracked in MLflow from setup to the final table."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import mlflow
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from hipo.app.builders import build_datamodule, build_policy, instantiate_component, method_label, reference_fn
from hipo.app.quiet import quiet_third_party
from hipo.app.summary import format_held_out_table
from hipo.tracking.lightning_logger import AttachedMLFlowLogger
from hipo.tracking.run import git_commit, tracked_run
from hipo.training.module import PreferenceModule

log = logging.getLogger(__name__)


def hydra_context() -> tuple[dict[str, str], list[str], bool]:
    """(group choices, job overrides, is-multirun) of the running Hydra job; empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}, [], False
    hydra_cfg = HydraConfig.get()
    choices = {str(k): str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None}
    overrides = list(hydra_cfg.overrides.task)
    return choices, overrides, str(hydra_cfg.mode) == "RunMode.MULTIRUN"


def run_name_for(method: str, cfg: DictConfig, overrides: list[str], multirun: bool) -> str:
    """The MLflow run name: the configured one, or what differs in a sweep, or ``<method>-seed<seed>``."""
    if cfg.logger.run_name:
        return str(cfg.logger.run_name)
    if multirun and overrides:
        from hipo.tracking.sweep import child_run_name

        return child_run_name(overrides, base=method)
    return f"{method}-seed{cfg.seed}"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Trains one policy: setup (data errors surface here, before any run exists), then a tracked fit.

    Returns:
        ``{"run_id", "val_before", "val_after", "output_dir"}`` (+ ``"objective"``: the value of ``cfg.objective``).
    """
    started = time.perf_counter()
    quiet_third_party()
    L.seed_everything(cfg.seed, workers=True)
    choices, overrides, multirun = hydra_context()
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    loss = instantiate_component(cfg.loss)
    benchmarks = None
    if cfg.evaluate.enabled:  # unknown benchmark names / missing files fail here, before any training
        from hipo.app.evaluate import load_benchmarks

        benchmarks = load_benchmarks(cfg.benchmark, cfg.evaluate.limit)
    bundle = build_policy(cfg.model)
    datamodule = build_datamodule(cfg, bundle.tokenizer, paired=bool(loss.paired))
    datamodule.setup("fit")  # bad input raises here, before any MLflow run exists
    reference = reference_fn(bundle.reference, cfg.model.logprob_chunk_size)
    if cfg.reference_cache:
        reference = _cached_reference(cfg, bundle, datamodule, reference)
    module = PreferenceModule(
        policy=bundle.policy,
        loss=loss,
        reference=reference,
        segment_names=list(cfg.segments),
        optim=cfg.optim,
        logprob_chunk_size=cfg.model.logprob_chunk_size,
        checkpoint_trainable_only=bool(cfg.model.lora.enabled or cfg.model.adapter_path),
        # a fresh LoRA adapter (B = 0) leaves the policy equal to its reference (the base with adapters disabled)
        policy_starts_as_reference=bool(cfg.model.lora.enabled and not cfg.model.adapter_path and not cfg.resume),
    )

    method = method_label(cfg, choices)
    tags = {
        "hipo.loss": str(cfg.loss.get("name", "")),
        "hipo.method": method,
        "hipo.model": str(cfg.model.name_or_path),
        "hipo.data": str(cfg.data.name),
        "hipo.seed": str(cfg.seed),
        "hipo.git_commit": git_commit(),
        "hipo.overrides": " ".join(overrides),
        **({"hipo.experiment": str(cfg.experiment)} if cfg.get("experiment") else {}),
        **{str(k): str(v) for k, v in cfg.logger.tags.items()},
    }
    from hipo.tracking.sweep import parent_run_id

    parent = parent_run_id() if multirun else None  # a single run never attaches to a (stale) sweep parent
    if parent:
        from hipo.tracking.sweep import sweep_id_of

        tags["hipo.sweep_id"] = sweep_id_of(parent, cfg.logger.tracking_uri) or parent
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    with tracked_run(
        tracking_uri=cfg.logger.tracking_uri,
        experiment_name=cfg.logger.experiment_name,
        run_name=run_name_for(method, cfg, overrides, multirun),
        tags=tags,
        params=resolved,
        artifact_location=cfg.logger.artifact_location,
        parent_run_id=parent,
    ) as run_id:
        mlflow.log_dict(resolved, "config/resolved.yaml", run_id=run_id)
        mlflow.log_dict(datamodule.stats.as_dict(), "data/stats.json", run_id=run_id)
        for key, value in datamodule.stats.as_dict().items():
            if isinstance(value, (int, float)):
                mlflow.log_metric(f"data/{key}", float(value), run_id=run_id)
        trainer = _build_trainer(cfg, run_id, output_dir)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        val_before = module.held_out_results[-1]
        trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(cfg, output_dir))
        trainer.validate(module, datamodule=datamodule, verbose=False)
        val_after = module.held_out_results[-1]
        summary = {f"val_before/{k}": v for k, v in val_before.items()}
        summary.update({f"val_after/{k}": v for k, v in val_after.items()})
        summary["time/train_job_s"] = time.perf_counter() - started
        mlflow.log_metrics(summary, run_id=run_id)
        _save_trained(module, bundle.tokenizer, output_dir, cfg)
        if benchmarks is not None:
            from hipo.app.evaluate import evaluate_after_training

            evaluate_after_training(cfg, module.policy, bundle.tokenizer, run_id, benchmarks, trainer.global_step)
        table = format_held_out_table(val_before, val_after, [*cfg.segments, "whole"])
        print(table)
        (output_dir / "held_out.md").write_text(table + "\n")
        mlflow.log_text(table, "held_out.md", run_id=run_id)
        print(f"MLflow run id: {run_id}  (experiment {cfg.logger.experiment_name!r}, store {cfg.logger.tracking_uri})")
    result = {"run_id": run_id, "val_before": val_before, "val_after": val_after, "output_dir": str(output_dir)}
    if cfg.objective:  # what an Optuna sweep maximizes
        if cfg.objective not in summary:
            raise KeyError(f"objective={cfg.objective!r} is not a final metric; known: {sorted(summary)}")
        result["objective"] = summary[cfg.objective]
    return result


def _cached_reference(cfg: DictConfig, bundle: Any, datamodule: Any, live: Any) -> Any:
    """The reference log-probs of every train/val sequence, read from (or computed into) the on-disk cache.

    The fingerprint covers the base weights, the adapter when the reference uses one, the tokenizer, the prepared
    data (source, segmenter, max length, template) and the dtype, so every run of a sweep that shares them shares
    one reference pass, and a change to any of them recomputes.
    """
    import torch

    from hipo.training.ref_cache import build_cached_reference, reference_fingerprint_parts

    use_gpu = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = "cuda" if use_gpu else "cpu"
    bundle.policy.to(device)
    parts = reference_fingerprint_parts(
        bundle.policy,
        bundle.tokenizer,
        datamodule.prepared.fingerprint,
        dtype=str(cfg.model.dtype),
        reference_uses_adapter=bool(cfg.model.adapter_path),
        model_id=f"{cfg.model.name_or_path}@{cfg.model.revision or 'default'}",
    )
    return build_cached_reference(live, datamodule, parts, batch_size=cfg.data.eval_batch_size, device=device)


def _build_trainer(cfg: DictConfig, run_id: str, output_dir: Path) -> L.Trainer:
    t = cfg.trainer
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=t.checkpoint_every_n_steps or None,
        save_on_exception=True,
    )
    logger = AttachedMLFlowLogger(
        experiment_name=cfg.logger.experiment_name, tracking_uri=cfg.logger.tracking_uri, run_id=run_id
    )
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
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
        logger=logger,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step")],
        default_root_dir=str(output_dir),
    )


def _resume_path(cfg: DictConfig, output_dir: Path) -> str | None:
    """The checkpoint to resume from: ``resume=PATH``, or ``resume=auto`` for this output dir's last checkpoint."""
    if not cfg.get("resume"):
        return None
    if cfg.resume == "auto":
        candidates = [output_dir / "checkpoints" / "last.ckpt"]
        candidates += sorted((output_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
        found = [p for p in candidates if p.exists()]
        if not found:
            raise FileNotFoundError(f"resume=auto: no checkpoint under {output_dir / 'checkpoints'}")
        return str(found[0])
    path = Path(cfg.resume)
    if not path.exists():
        raise FileNotFoundError(f"resume={cfg.resume}: no such checkpoint")
    return str(path)


def _save_trained(module: PreferenceModule, tokenizer: Any, output_dir: Path, cfg: DictConfig) -> None:
    """Saves the trained adapter (LoRA) or model plus tokenizer under ``output_dir/final`` for `hipo eval`."""
    target = output_dir / "final"
    module.policy.save_pretrained(target)
    tokenizer.save_pretrained(target)
    weights = {name: float(p) for name, p in _current_weights(module).items()}
    (target / "hipo.json").write_text(
        json.dumps({"base_model": cfg.model.name_or_path, "segments": list(cfg.segments), "weights": weights})
    )


def _current_weights(module: PreferenceModule) -> dict[str, float]:
    weights_module = getattr(module.loss_fn, "weights", None)
    if weights_module is None:
        return {}
    values = weights_module().detach().cpu().tolist()
    return dict(zip([*module.segment_names, "whole"], values, strict=False))
