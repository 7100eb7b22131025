"""A tiny random-init Llama built in memory: the test model (no download)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SMOLLM2_VOCAB_SIZE = 49152


def build_tiny_model(
    vocab_size: int = SMOLLM2_VOCAB_SIZE,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    seed: int = 0,
    pad_token_id: int = 2,
    eos_token_id: int = 2,
    init_std: float = 0.02,
) -> LlamaForCausalLM:
    """A random Llama with SmolLM2's vocabulary (so the SmolLM2 tokenizer and chat template apply).

    Args:
        vocab_size: vocabulary size V (49152 matches SmolLM2's tokenizer).
        hidden_size: width H.
        num_layers: number of decoder layers.
        seed: torch seed for the random init (the same seed gives the same weights).
        init_std: the weights' init std (Llama's 0.02 gives a near-uniform model; larger spreads token log-probs).
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=1,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    torch.random.set_rng_state(generator_state)
    return model.eval()
