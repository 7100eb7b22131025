"""Config -> objects. The only place where config nodes become models, losses, data modules and references."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hipo.config.components import LABEL_KEYS  # config-only labels, not constructor arguments
from hipo.losses.types import SegmentLogps
from hipo.models.loading import load_model
from hipo.models.lora import apply_lora, load_adapter, load_reference_adapter
from hipo.models.reference import ReferenceMode, build_reference

log = logging.getLogger(__name__)


@dataclass
class PolicyBundle:
    """The policy being trained, its tokenizer and the reference log-prob function."""

    policy: nn.Module
    tokenizer: Any
    reference: Any  # None when built without one


def instantiate_component(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of a component node, without its config-only label keys."""
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    for key in LABEL_KEYS:
        container.pop(key, None)
    return instantiate(container, **kwargs)


def build_policy(model_cfg: DictConfig, with_reference: bool = True) -> PolicyBundle:
    """Loads the model and tokenizer, applies LoRA or a saved adapter, and builds the reference.

    The reference is the policy's starting point: the base model (adapters disabled) under a fresh LoRA adapter; the
    starting adapter itself under ``adapter_path`` (loaded a second time, frozen, as adapter ``"reference"``, so the
    policy equals its reference at step 0); a frozen copy of the loaded weights for full fine-tuning (which, from a
    fine-tuned folder, is that folder's model). ``reference_adapter_path`` makes that frozen adapter another one.
    ``with_reference=False`` skips the reference (evaluation, SFT): without LoRA it would be a full frozen copy.
    """
    model: nn.Module  # a PreTrainedModel, or a PeftModel once an adapter is loaded or applied
    model, tokenizer = load_model(
        model_cfg.name_or_path,
        dtype=model_cfg.dtype,
        attn_implementation=model_cfg.attn_implementation,
        gradient_checkpointing=model_cfg.gradient_checkpointing,
        revision=model_cfg.revision,
        trust_remote_code=model_cfg.trust_remote_code,
    )
    mode: ReferenceMode = "auto"
    if model_cfg.adapter_path:
        model = load_adapter(model, model_cfg.adapter_path, trainable=True)
    elif model_cfg.lora.enabled:
        lora = model_cfg.lora
        target = OmegaConf.to_container(lora.target_modules) if OmegaConf.is_config(lora.target_modules) else None
        # The schema types target_modules as Any: a module name, "all-linear" or a list of names (a ListConfig).
        target_modules = cast("str | list[str]", target or lora.target_modules)
        model = apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=target_modules)
    reference_adapter = model_cfg.get("reference_adapter_path") or model_cfg.adapter_path
    if with_reference and reference_adapter:
        load_reference_adapter(model, reference_adapter)  # type: ignore[arg-type]  # a PeftModel (validated)
        mode = "reference_adapter"
    reference = build_reference(model, mode) if with_reference else None
    return PolicyBundle(policy=model, tokenizer=tokenizer, reference=reference)


def reference_fn(reference: Any, chunk_size: int, paired_tails: bool = False):  # noqa: ANN201 - a closure
    """``batch -> SegmentLogps`` of a live reference (with LD-DPO's tails when the loss reads them)."""

    def compute(batch: Any) -> SegmentLogps:
        return reference.segment_logps(batch, chunk_size=chunk_size, paired_tails=paired_tails)

    return compute


def cached_reference_fn(cfg: DictConfig, bundle: Any, datamodule: Any, live: Any) -> Any:
    """``batch -> SegmentLogps`` read from the on-disk reference cache of every train/val sequence (computed if absent).

    The fingerprint covers the base weights, the adapter the reference scores with (only that one: the frozen
    starting adapter of continued training, none when adapters are disabled), the model config, the attention
    implementation, the tokenizer, the prepared data (source, segmenter, max length, template), the dtype, the
    autocast precision and the software versions, so every run of a sweep that shares them shares one reference
    pass, and a change to any of them recomputes.
    """
    import torch

    from hipo.training.ref_cache import build_cached_reference
    from hipo.training.ref_cache_key import reference_fingerprint_parts

    use_gpu = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    device = "cuda" if use_gpu else "cpu"
    bundle.policy.to(device)
    parts = reference_fingerprint_parts(
        bundle.reference.model,
        bundle.tokenizer,
        datamodule.prepared.fingerprint,
        dtype=str(cfg.model.dtype),
        precision=str(cfg.trainer.precision),
        reference_adapter=bundle.reference.adapter_name,
        attn_implementation=str(cfg.model.attn_implementation),
        model_id=f"{cfg.model.name_or_path}@{cfg.model.revision or 'default'}",
    )
    return build_cached_reference(live, datamodule, parts, batch_size=cfg.data.eval_batch_size, device=device)


def method_label(cfg: DictConfig, choices: dict[str, str] | None) -> str:
    """A short label of the method: ``cfg.method`` when set, else the loss name and a non-default weight choice."""
    if cfg.get("method"):
        return str(cfg.method)
    label = str(cfg.loss.get("name", "loss"))
    weights = (choices or {}).get("loss/weights")
    if weights and weights != "paper":
        label = f"{label}-{weights}"
    return label


def build_segmenter(segmenter_cfg: DictConfig) -> Any:
    """The configured segmenter (``fields`` | ``tags`` | ``rules`` | ``llm``)."""
    return instantiate_component(segmenter_cfg)


def build_datamodule(cfg: DictConfig, tokenizer: Any, paired: bool, responses_only: bool = False) -> Any:
    """The data module of ``cfg.data`` with the segmenter of ``cfg.segmenter``; ``paired=False`` serves KTO's unpaired
    view, ``responses_only=True`` the chosen responses alone (SFT).

    ``cfg.data`` is a ``_target_`` node (:class:`~hipo.config.schema.DataConfig`, by default
    :class:`~hipo.data.datamodule.PreferenceDataModule`): Hydra instantiates it without its config-only keys
    (``DataConfig.CONFIG_ONLY_KEYS``), building its ``source`` / ``val_source`` nodes first, and every other key is
    the constructor argument of the same name, so an argument added to the schema needs no change here. The job's
    values (segmenter, tokenizer, ``segments``, ``paired``, ``seed``) go to the partial ``instantiate`` returns:
    Hydra would merge them into the config, turning a dataclass segmenter into a ``DictConfig``.

    Raises:
        ConfigError: a source or segmenter setting its constructor refuses (a missing file, an unknown option),
            naming the config group.
    """
    from hipo.errors import config_errors

    with config_errors("data"):
        make_datamodule = instantiate(data_settings(cfg.data), _partial_=True)
    with config_errors("segmenter"):
        segmenter = build_segmenter(cfg.segmenter)
    return make_datamodule(
        segmenter=segmenter,
        tokenizer=tokenizer,
        segments=list(cfg.segments),
        paired=paired,
        responses_only=responses_only,
        seed=cfg.seed,
    )


def data_settings(data: DictConfig) -> dict[str, Any]:
    """``cfg.data`` resolved, as the data module's ``_target_`` node: without ``DataConfig.CONFIG_ONLY_KEYS``, and
    without the label keys (``LABEL_KEYS``) of its nested ``_target_`` nodes (the sources)."""
    from hipo.config.schema import DataConfig

    settings = OmegaConf.to_container(data, resolve=True)
    assert isinstance(settings, dict)
    for key in DataConfig.CONFIG_ONLY_KEYS:
        settings.pop(key, None)
    for value in settings.values():
        if isinstance(value, dict) and "_target_" in value:
            for key in LABEL_KEYS:
                value.pop(key, None)
    return {str(key): value for key, value in settings.items()}
