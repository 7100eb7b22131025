"""LoRA adapters through peft: wrap a model, save an adapter, load one for further training or evaluation."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def apply_lora(
    model: nn.Module,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
) -> PeftModel:
    """Wrap ``model`` with fresh LoRA adapters; only the adapters are trainable.

    Args:
        model: a causal LM (``PreTrainedModel``).
        r: adapter rank.
        alpha: LoRA scaling numerator (the update is ``alpha / r * B @ A``).
        dropout: dropout on the adapter input.
        target_modules: ``"all-linear"`` (every linear layer except the LM head) or a list of module-name suffixes
            such as ``["q_proj", "v_proj"]``.

    Returns:
        The ``PeftModel``; B is initialised to zero, so it starts equal to ``model``.
    """
    if r < 1:
        raise ValueError(f"apply_lora: r must be >= 1, got {r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"apply_lora: dropout must be in [0, 1), got {dropout}")
    if isinstance(target_modules, str) and target_modules != "all-linear":
        raise ValueError(f"apply_lora: target_modules must be 'all-linear' or a list of names, got {target_modules!r}")
    if isinstance(model, PeftModel):
        raise ValueError("apply_lora: the model already has adapters (a PeftModel)")
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    log.info(
        "LoRA r=%d alpha=%d: %d trainable of %d parameters (%.3f%%)",
        r,
        alpha,
        trainable,
        total,
        100 * trainable / total,
    )
    return peft_model


def save_adapter(model: PeftModel, path: str | Path) -> Path:
    """Write the adapter weights and config (``adapter_model.safetensors``, ``adapter_config.json``) to ``path``."""
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_adapter: expected a PeftModel, got {type(model).__name__}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    return path


def load_adapter(model: nn.Module, path: str | Path, trainable: bool = False) -> PeftModel:
    """Attach the adapter saved at ``path`` to the base ``model``.

    Args:
        model: the base causal LM the adapter was trained on (not already a ``PeftModel``).
        path: a folder written by :func:`save_adapter` (or any peft ``save_pretrained``).
        trainable: keep the adapter trainable (continued training) instead of frozen (evaluation).

    Raises:
        FileNotFoundError: ``path`` is missing or has no ``adapter_config.json``.
    """
    path = Path(path).expanduser()
    if not (path / ADAPTER_CONFIG).exists():
        what = "does not exist" if not path.exists() else f"has no {ADAPTER_CONFIG}"
        raise FileNotFoundError(f"load_adapter: {path} {what}; expected a folder written by save_adapter")
    if isinstance(model, PeftModel):
        raise ValueError("load_adapter: pass the base model, not a PeftModel")
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    if not trainable:
        peft_model.eval()
    return peft_model
