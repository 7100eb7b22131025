"""Test helper: a tiny Llama that samples from a planted bigram table -- the next token depends on the current one
only, never on the prompt -- saved as a model folder with the SmolLM2 tokenizer, so sampling gives known answers at
known rates.

Attention and MLP outputs are zero, so the final hidden state at a position is the (normalized) embedding of the
token there. Tokens named in the table embed to their own basis vector ``e_k``, every other token (the whole prompt)
to ``e_0``; the untied LM head's column ``k`` holds the log-probabilities of the token after state ``k`` (every token
not planted at -30). :data:`ANSWERS` is the table the tests use: after the prompt ``x`` then ``=``, then ``1`` or ``2``
with probability 1/2 each, then the end of turn -- every sample is ``"x=1"`` or ``"x=2"``, and graded against gold
``1`` exactly the ``"x=1"`` samples are correct.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hipo.models.embedded import ensure_converted

END = "<|im_end|>"
START = None  # the state of every token not in the table (the prompt)
ANSWERS: dict[str | None, dict[str, float]] = {
    START: {"x": 1.0},
    "x": {"=": 1.0},
    "=": {"1": 0.5, "2": 0.5},
    "1": {END: 1.0},
    "2": {END: 1.0},
}


def planted_model(folder: Path, transitions: dict[str | None, dict[str, float]] = ANSWERS) -> Path:
    """Writes the planted bigram model (see the module docstring) to ``folder``; returns it."""
    tokenizer = AutoTokenizer.from_pretrained(ensure_converted())
    eos = tokenizer.convert_tokens_to_ids(END)
    states = [START, *(token for token in transitions if token is not START)]
    hidden = 4 * max(4, len(states))  # two heads of an even width
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=eos,
        eos_token_id=eos,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    scale = math.sqrt(hidden)  # RMSNorm of a one-hot embedding: sqrt(H) e_k
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        embeddings.zero_()
        embeddings[:, 0] = 1.0
        head = model.lm_head.weight
        head.zero_()
        for k, state in enumerate(states):
            if state is not START:
                index = tokenizer.convert_tokens_to_ids(state)
                embeddings[index, 0] = 0.0
                embeddings[index, k] = 1.0
            head[:, k] = -30.0 / scale
            for token, probability in transitions[state].items():
                head[tokenizer.convert_tokens_to_ids(token), k] = math.log(probability) / scale
        model.model.norm.weight.fill_(1.0)
    model.generation_config.eos_token_id = eos
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
