"""Model shapes for perf runs: known architectures built in memory with random weights (no download)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

from hipo.perf.config import ShapeConfig


def shape_config(shape: ShapeConfig) -> LlamaConfig | Qwen2Config:
    """The transformers config of ``shape`` (``architecture`` llama | qwen2)."""
    common: dict[str, Any] = {
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "rms_norm_eps": shape.rms_norm_eps,
        "max_position_embeddings": shape.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": shape.rope_theta},
        "pad_token_id": 2,
        "eos_token_id": 2,
        "bos_token_id": 1,
    }
    if shape.architecture == "llama":
        return LlamaConfig(**common)
    if shape.architecture == "qwen2":
        return Qwen2Config(**common)
    raise ValueError(f"perf.shape.architecture must be llama or qwen2, got {shape.architecture!r}")


def build_shape_model(
    shape: ShapeConfig, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa", seed: int = 0
) -> PreTrainedModel:
    """A causal LM of ``shape``: random init (seeded) or, with ``weights=embedded``, the real SmolLM2-135M.

    Random weights are created directly in ``dtype`` (a 7B model in bf16 never exists in fp32).
    """
    if shape.weights == "embedded":
        from hipo.models.loading import load_model

        embedded, _ = load_model("embedded:smollm2-135m", dtype=dtype, attn_implementation=attn_implementation)
        return embedded
    if shape.weights != "random":
        raise ValueError(f"perf.shape.weights must be random or embedded, got {shape.weights!r}")
    config = shape_config(shape)
    config._attn_implementation = attn_implementation
    previous_dtype, state = torch.get_default_dtype(), torch.random.get_rng_state()
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    try:
        model: PreTrainedModel = (
            Qwen2ForCausalLM(config) if isinstance(config, Qwen2Config) else LlamaForCausalLM(config)
        )
    finally:
        torch.set_default_dtype(previous_dtype)
        torch.random.set_rng_state(state)
    return model


def parameter_count(shape: ShapeConfig) -> int:
    """Parameters of ``shape`` computed from its hyper-parameters (no model built)."""
    h, i, v, layers = shape.hidden_size, shape.intermediate_size, shape.vocab_size, shape.num_layers
    head_dim = h // shape.num_heads
    kv = shape.num_kv_heads * head_dim
    attention = h * h + 2 * h * kv + h * h + (h + 2 * kv if shape.architecture == "qwen2" else 0)
    per_layer = attention + 3 * h * i + 2 * h
    return v * h * (1 if shape.tie_word_embeddings else 2) + layers * per_layer + h
