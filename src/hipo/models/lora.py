"""LoRA adapters through peft: wrap a model, save an adapter, load one for further training or evaluation.

Continued training from a saved adapter holds TWO adapters on one ``PeftModel`` (one copy of the base weights):
the trainable one, named :data:`TRAINABLE_ADAPTER` (peft's ``"default"``), and a frozen second load of the same
folder, named :data:`REFERENCE_ADAPTER`, which the reference activates while it scores
(:func:`load_reference_adapter`, :func:`active_adapter`). Only the trainable adapter is ever saved
(:func:`save_adapter`): peft's ``save_pretrained`` would otherwise write every adapter, the reference one into a
``reference/`` subfolder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
TRAINABLE_ADAPTER = "default"  # the name peft gives the adapter of get_peft_model / PeftModel.from_pretrained
REFERENCE_ADAPTER = "reference"  # the frozen starting adapter of continued training


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
    model.save_pretrained(str(path), selected_adapters=trained_adapter_names(model))
    return path


def trained_adapter_names(model: PeftModel) -> list[str]:
    """The adapters of ``model`` that belong in a saved result: all but the frozen :data:`REFERENCE_ADAPTER`."""
    return [name for name in model.peft_config if name != REFERENCE_ADAPTER]


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
    _check_adapter_folder(path, "load_adapter")
    if isinstance(model, PeftModel):
        raise ValueError("load_adapter: pass the base model, not a PeftModel")
    peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    if not trainable:
        peft_model.eval()
    return peft_model


def _check_adapter_folder(path: Path, caller: str) -> None:
    if not (path / ADAPTER_CONFIG).exists():
        what = "does not exist" if not path.exists() else f"has no {ADAPTER_CONFIG}"
        raise FileNotFoundError(f"{caller}: {path} {what}; expected a folder written by save_adapter")


def load_reference_adapter(model: PeftModel, path: str | Path, name: str = REFERENCE_ADAPTER) -> str:
    """Load the adapter at ``path`` a second time onto ``model``, frozen and inactive, as the reference of continued
    training (TRL's ``ref_adapter_name``): no second copy of the base weights, only of the adapter's.

    The active adapter, every parameter's ``requires_grad`` and every submodule's train/eval mode are left as they
    were (peft's ``load_adapter`` would switch the whole model to eval mode).

    Args:
        model: the ``PeftModel`` holding the trainable adapter (loaded from the same ``path``).
        path: the saved adapter folder.
        name: the new adapter's name.

    Returns:
        ``name``.

    Raises:
        FileNotFoundError: ``path`` is missing or has no ``adapter_config.json``.
        ValueError: ``model`` already has an adapter called ``name``.
    """
    if not isinstance(model, PeftModel):
        raise TypeError(f"load_reference_adapter: expected a PeftModel, got {type(model).__name__}")
    path = Path(path).expanduser()
    _check_adapter_folder(path, "load_reference_adapter")
    if name in model.peft_config:
        raise ValueError(f"load_reference_adapter: the model already has an adapter named {name!r}")
    modes = [(module, module.training) for module in model.modules()]
    with _requires_grad_kept(model):
        model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    for module, training in modes:
        module.training = training
    for _, parameter in adapter_parameters(model, name):
        parameter.requires_grad_(False)
    log.info("reference adapter %r loaded from %s (frozen)", name, path)
    return name


def is_adapter_name_of(tensor_name: str, adapter: str) -> bool:
    """Whether the parameter/buffer ``tensor_name`` belongs to the peft adapter ``adapter``.

    peft names an adapter's tensors ``<module>.lora_A.<adapter>.weight``, ``<module>.lora_embedding_B.<adapter>``,
    ``<module>.lora_magnitude_vector.<adapter>.weight``: the component after a ``lora_*`` one is the adapter's name.
    """
    parts = tensor_name.split(".")
    pairs = zip(parts[:-1], parts[1:], strict=True)
    return any(part.startswith("lora_") and following == adapter for part, following in pairs)


def adapter_parameters(model: nn.Module, adapter: str) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of every parameter of the adapter named ``adapter`` (empty when there is none)."""
    return [(name, p) for name, p in model.named_parameters() if is_adapter_name_of(name, adapter)]


@contextmanager
def _requires_grad_kept(model: nn.Module) -> Iterator[None]:
    """Restore every parameter's ``requires_grad`` on exit (peft's adapter switching and loading change them)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


@contextmanager
def active_adapter(model: PeftModel, name: str) -> Iterator[PeftModel]:
    """Score with the adapter ``name`` inside the block, then restore the previously active adapter.

    peft's ``set_adapter`` also sets ``requires_grad`` (the active adapter trainable, the others frozen); every
    parameter's flag is restored exactly on exit, so a frozen reference adapter never becomes trainable and the
    trainable adapter stays trainable. Use it under ``torch.no_grad()``: inside the block the trainable adapter is
    inactive (and frozen).

    Raises:
        ValueError: ``model`` has no adapter ``name``.
    """
    if name not in model.peft_config:
        raise ValueError(f"active_adapter: no adapter named {name!r}; the model has {sorted(model.peft_config)}")
    previous = model.active_adapter
    with _requires_grad_kept(model):
        model.set_adapter(name, inference_mode=True)
        try:
            yield model
        finally:
            model.set_adapter(previous)
