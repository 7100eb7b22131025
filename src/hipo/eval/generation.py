"""Batched generation with Hugging Face ``generate``: length-sorted batches, left padding, greedy by default.

Prompts are sorted by token length (longest first, so an out-of-memory error shows up in the first batch) and the
outputs are put back in the original order. Works with plain ``PreTrainedModel``s and ``peft.PeftModel``s (LoRA
adapters applied). The model's train/eval mode and the tokenizer's padding side are restored afterwards, so the
function can run inside a training callback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from hipo.eval.prompts import DEFAULT_PROMPT_TEMPLATE, check_template


@dataclass
class GenerationConfig:
    """How completions are produced (shared by every method so evaluations are comparable).

    Attributes:
        max_new_tokens: cap on generated tokens per completion.
        batch_size: prompts per ``generate`` call (each expands to ``n`` sequences).
        do_sample: False = greedy decoding (the default); True = sampling with ``temperature`` and ``top_p``.
        temperature: sampling temperature (> 0; used only when sampling).
        top_p: nucleus sampling mass in (0, 1] (used only when sampling).
        n: completions per prompt (> 1 needs ``do_sample``); enables pass@k and maj@k.
        seed: torch seed set before sampling (reproducible samples).
        prompt_template: the user message, with a ``{question}`` placeholder.
        system_prompt: an optional system message.
        progress: show a tqdm progress bar with tokens/s.
    """

    max_new_tokens: int = 512
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    system_prompt: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"generation.max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.batch_size <= 0:
            raise ValueError(f"generation.batch_size must be positive, got {self.batch_size}")
        if self.n <= 0:
            raise ValueError(f"generation.n must be positive, got {self.n}")
        if self.n > 1 and not self.do_sample:
            raise ValueError(f"generation.n={self.n} needs do_sample=true: greedy decoding gives n identical samples")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"generation.temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"generation.top_p must be in (0, 1], got {self.top_p}")
        check_template(self.prompt_template)


@dataclass
class GenerationOutput:
    """Completions in prompt order (``completions[i]`` holds the ``n`` texts of prompt ``i``) and throughput."""

    completions: list[list[str]]
    new_tokens: int
    seconds: float
    token_counts: list[list[int]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens (up to and including each completion's end-of-sequence token) per wall-clock second."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


@runtime_checkable
class TextGenerator(Protocol):
    """An engine that turns rendered prompts into completions (the HF default or ``VLLMGenerator``)."""

    def generate_texts(self, prompts: Sequence[str], config: GenerationConfig) -> GenerationOutput:
        """Completions for already-rendered prompt strings."""
        ...


def _completion_lengths(new_ids: torch.Tensor, stop_ids: set[int]) -> list[int]:
    """Per row of ``new_ids`` [R, T]: tokens up to and including the first stop token (T if none)."""
    lengths = []
    for row in new_ids.tolist():
        length = len(row)
        for position, token in enumerate(row):
            if token in stop_ids:
                length = position + 1
                break
        lengths.append(length)
    return lengths


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids of the model's generation config and the tokenizer."""
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


class HFGenerator:
    """Generation with a Hugging Face (or PEFT) causal LM and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def generate_texts(self, prompts: Sequence[str], config: GenerationConfig) -> GenerationOutput:
        """Completions for rendered prompt strings (see ``generate_completions``)."""
        return generate_completions(self.model, self.tokenizer, prompts, config)


def generate_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], config: GenerationConfig
) -> GenerationOutput:
    """Generates ``config.n`` completions for each rendered prompt, batched by similar length.

    Args:
        model: a causal LM (``PreTrainedModel`` or ``PeftModel``).
        tokenizer: its tokenizer; the prompts already contain the chat template's special tokens.
        prompts: rendered prompt strings (see ``hipo.eval.prompts.render_prompt``).
        config: decoding settings.

    Returns:
        A ``GenerationOutput`` with the decoded completions (special tokens removed) in prompt order.
    """
    from transformers import GenerationConfig as HFGenerationConfig

    if not prompts:
        return GenerationOutput(completions=[], new_tokens=0, seconds=0.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad token nor an eos token: cannot pad a batch")
    stop_ids = _stop_ids(model, tokenizer)
    hf_config = HFGenerationConfig(
        max_new_tokens=config.max_new_tokens,
        do_sample=config.do_sample,
        temperature=config.temperature if config.do_sample else None,
        top_p=config.top_p if config.do_sample else None,
        top_k=None,
        num_return_sequences=config.n,
        pad_token_id=pad_id,
        eos_token_id=sorted(stop_ids) or None,
    )
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda index: -lengths[index])
    device = next(model.parameters()).device
    completions: list[list[str]] = [[] for _ in prompts]
    token_counts: list[list[int]] = [[] for _ in prompts]
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    total_tokens, started = 0, time.perf_counter()
    bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not config.progress)
    try:
        if config.do_sample:
            torch.manual_seed(config.seed)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            encoded = tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            )
            encoded = {key: value.to(device) for key, value in encoded.items()}
            with torch.inference_mode():
                output = model.generate(**encoded, generation_config=hf_config)
            new_ids = output[:, encoded["input_ids"].shape[1] :].cpu()
            counts = _completion_lengths(new_ids, stop_ids)
            texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
            for row, (text, count) in enumerate(zip(texts, counts, strict=True)):
                prompt_index = batch[row // config.n]
                completions[prompt_index].append(text)
                token_counts[prompt_index].append(count)
            total_tokens += sum(counts)
            bar.update(len(batch))
            bar.set_postfix(tok_s=f"{total_tokens / max(time.perf_counter() - started, 1e-9):.1f}")
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    seconds = time.perf_counter() - started
    return GenerationOutput(
        completions=completions, new_tokens=total_tokens, seconds=seconds, token_counts=token_counts
    )
