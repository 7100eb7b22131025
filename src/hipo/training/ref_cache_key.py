"""The key of a reference cache entry: a hash of everything the reference log-probs depend on.

Weights (base, and the reference adapter's tensors and config when the reference uses one), the model config, the
attention implementation, the tokenizer, the prepared data, dtype and autocast precision, the versions of torch,
transformers and peft, and ``LOGPROBS_VERSION`` of the log-prob code: change any of them and the key changes, so a
stale entry can never be read (see :mod:`hipo.training.ref_cache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hipo.models.embedded import cache_dir

REF_CACHE_FORMAT = 1


# Config fields that do not change the computed values: where the config was read from, and the transformers version
# that wrote it (``to_dict`` stamps the INSTALLED version there, which is a part of its own).
CONFIG_LABELS = ("_name_or_path", "transformers_version")
# Adapter-config fields that do not change the computed values: the base's label (its weights are hashed) and
# whether the adapter is trainable.
ADAPTER_CONFIG_LABELS = ("base_model_name_or_path", "inference_mode", "revision")


def is_adapter_tensor(name: str) -> bool:
    """Whether a parameter/buffer name belongs to a peft adapter (LoRA A/B, magnitudes, embeddings)."""
    return "lora_" in name or ".adapter" in name


def _digest_tensors(tensors: Iterable[tuple[str, torch.Tensor]], digest: Any = None) -> Any:
    digest = digest if digest is not None else hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest


def _json_digest(contents: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(contents, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def weights_digest(model: nn.Module, adapters: bool = False) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of a model's base (or, ``adapters=True``, ALL adapter)
    tensors."""
    tensors = [(n, t) for n, t in model.state_dict().items() if is_adapter_tensor(n) == adapters]
    return _digest_tensors(tensors).hexdigest()


def adapter_digest(model: nn.Module, adapter: str) -> str:
    """SHA-256 over the tensors of the ONE peft adapter named ``adapter`` and its config (rank, alpha, targets...:
    the same tensors under another ``lora_alpha`` compute other values).

    Raises:
        ValueError: ``model`` has no tensor of that adapter.
    """
    from hipo.models.lora import is_adapter_name_of

    tensors = [(n, t) for n, t in model.state_dict().items() if is_adapter_name_of(n, adapter)]
    if not tensors:
        raise ValueError(f"adapter_digest: the model has no tensors of an adapter named {adapter!r}")
    config = getattr(model, "peft_config", {}).get(adapter)
    contents = json.loads(json.dumps(config.to_dict(), default=str)) if config is not None else {}
    for key in ADAPTER_CONFIG_LABELS:
        contents.pop(key, None)
    digest = hashlib.sha256(_json_digest(contents).encode())
    return _digest_tensors(tensors, digest).hexdigest()


def config_digest(model: nn.Module) -> str | None:
    """SHA-256 of the model config's full JSON contents (``config.json``: rope, norms, activation, ...) without
    :data:`CONFIG_LABELS`; None for a model without a transformers config."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        return None
    contents = json.loads(config.to_json_string(use_diff=False))
    for key in CONFIG_LABELS:
        contents.pop(key, None)
    return _json_digest(contents)


def attention_implementation(model: nn.Module, configured: str | None = None) -> str | None:
    """The attention implementation the model really runs (``config._attn_implementation``), else ``configured``."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) or configured


def software_versions() -> dict[str, Any]:
    """Versions of what computes the log-probs: torch, transformers, peft and the project's log-prob code."""
    import peft
    import transformers

    from hipo.models import logprobs

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "logprobs": logprobs.LOGPROBS_VERSION,
    }


def reference_fingerprint_parts(
    reference_model: nn.Module,
    tokenizer: Any,
    data_fingerprint: str,
    dtype: str,
    *,
    precision: str,
    reference_adapter: str | None = None,
    attn_implementation: str | None = None,
    model_id: str = "",
) -> dict[str, Any]:
    """The usual fingerprint parts of a reference cache: everything the reference log-probs depend on.

    Args:
        reference_model: the model the reference scores with (for an adapter reference, the ``PeftModel`` holding it).
        tokenizer: the HF tokenizer (vocab, merges, chat template and special tokens are hashed).
        data_fingerprint: the prepared-data cache key (covers data, segmenter, max length, template).
        dtype: the parameter dtype as configured (the weights digest also holds each tensor's real dtype).
        precision: the autocast precision the reference runs under (Lightning's ``trainer.precision``, e.g.
            ``"bf16-mixed"``): bf16 autocast over fp32 weights gives other values than ``"32-true"``.
        reference_adapter: the peft adapter the reference scores WITH (``Reference.adapter_name``: the frozen
            ``"reference"`` adapter of continued training); its tensors and config alone are hashed. None when the
            reference has no adapter or disables them (a plain LoRA run): the trainable adapter's per-seed init is
            left out and every seed shares the cache.
        attn_implementation: the configured attention implementation; the model's own
            ``config._attn_implementation`` wins when it has one.
        model_id: hub id / path / revision, for people reading the header.
    """
    from hipo.data.cache import tokenizer_fingerprint

    return {
        "model_id": model_id,
        "weights": weights_digest(reference_model, adapters=False),
        "adapter": adapter_digest(reference_model, reference_adapter) if reference_adapter else None,
        "config": config_digest(reference_model),
        "attn_implementation": attention_implementation(reference_model, attn_implementation),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": data_fingerprint,
        "dtype": dtype,
        "precision": str(precision),
        "versions": software_versions(),
    }


def cache_key(fingerprint_parts: dict[str, Any], num_segments: int) -> str:
    """The cache file's name: a hash of the parts, the format version and S."""
    text = json.dumps(
        {"format": REF_CACHE_FORMAT, "num_segments": num_segments, **fingerprint_parts}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def refcache_root() -> Path:
    """``cache_dir()/refcache``."""
    return cache_dir() / "refcache"
