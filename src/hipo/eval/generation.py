"""Generation for evaluation: ``GenerationConfig``, the ``TextGenerator`` protocol and the Hugging Face generator.

``HFGenerator`` / ``generate_completions`` run the continuous-batching decode loop of ``hipo.eval.decode`` (a
finished sequence leaves the batch at once and a waiting prompt takes its slot) instead of Hugging Face
``generate`` (which keeps computing finished rows until the longest one of the batch ends). Prompts enter longest
first (an out-of-memory error shows up at once; similar lengths share padding), the number of concurrent sequences
comes from a memory budget unless ``batch_size`` fixes it, and the outputs are put back in prompt order. Works with
plain ``PreTrainedModel``s and ``peft.PeftModel``s (LoRA adapters applied). The model's train/eval mode and the
tokenizer's padding side are restored afterwards, so the function can run inside a training callback. The progress
bar counts finished sequences and shows the tokens/s generated so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from hipo.eval.decode import DecodeSettings, decode
from hipo.eval.kv_cache import default_memory_budget, slots_for_budget
from hipo.eval.prompts import DEFAULT_PROMPT_TEMPLATE, check_template


@dataclass
class GenerationConfig:
    """How completions are produced (shared by every method so evaluations are comparable).

    Attributes:
        max_new_tokens: cap on generated tokens per completion.
        batch_size: prompts decoded at once (each runs ``n`` sequences); an explicit override of the memory-derived
            size. ``None`` (the default): as many sequences as fit ``memory_gib``, at most ``max_batch_size``.
        memory_gib: memory the running sequences may take (KV cache of prompt + ``max_new_tokens`` each, and one
            step's logits). ``None``: half the free GPU memory, or a quarter of the free RAM (at most 4 GiB).
        max_batch_size: the most sequences running at once when ``batch_size`` is ``None``.
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
    batch_size: int | None = None
    memory_gib: float | None = None
    max_batch_size: int = 32
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
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(f"generation.batch_size must be positive or null, got {self.batch_size}")
        if self.memory_gib is not None and self.memory_gib <= 0:
            raise ValueError(f"generation.memory_gib must be positive or null, got {self.memory_gib}")
        if self.max_batch_size <= 0:
            raise ValueError(f"generation.max_batch_size must be positive, got {self.max_batch_size}")
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


def concurrent_sequences(model: Any, prompt_lengths: Sequence[int], config: GenerationConfig) -> int:
    """Sequences decoded at once: ``batch_size × n`` if set, else what ``memory_gib`` holds (≥ ``n``).

    Each sequence is budgeted for the longest prompt plus ``max_new_tokens`` cache columns (see
    ``kv_cache.slots_for_budget``).
    """
    if config.batch_size is not None:
        return config.batch_size * config.n
    device = next(model.parameters()).device
    budget = int(config.memory_gib * 2**30) if config.memory_gib is not None else default_memory_budget(device)
    longest = max(prompt_lengths, default=0) + config.max_new_tokens
    return max(config.n, slots_for_budget(model, longest, budget, config.max_batch_size))


class _Progress:
    """A tqdm bar over sequences (advanced as each one finishes) with the tokens/s generated so far."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc="generate", unit="seq", disable=not enabled)
        self.started = time.perf_counter()
        self.tokens = 0
        self.steps = 0

    def step(self, tokens: int) -> None:
        """Counts the tokens of one forward; refreshes the rate every 16 forwards."""
        self.tokens += tokens
        self.steps += 1
        if self.steps % 16 == 0:
            self._postfix()

    def finished(self, prompt: int, sample: int, tokens: list[int]) -> None:
        """One more sequence done."""
        self.bar.update(1)
        self._postfix()

    def _postfix(self) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self.bar.set_postfix(tok_s=f"{self.tokens / elapsed:.1f}", refresh=False)


def generate_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], config: GenerationConfig
) -> GenerationOutput:
    """Generates ``config.n`` completions for each rendered prompt with the continuous-batching decode loop.

    Args:
        model: a causal LM (``PreTrainedModel`` or ``PeftModel``).
        tokenizer: its tokenizer; the prompts already contain the chat template's special tokens.
        prompts: rendered prompt strings (see ``hipo.eval.prompts.render_prompt``).
        config: decoding settings.

    Returns:
        A ``GenerationOutput`` with the decoded completions (special tokens removed) in prompt order, and per
        completion its token count (up to and including its stop token).
    """
    if not prompts:
        return GenerationOutput(completions=[], new_tokens=0, seconds=0.0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    lengths = [len(ids) for ids in prompt_ids]
    settings = DecodeSettings(
        max_new_tokens=config.max_new_tokens,
        slots=concurrent_sequences(model, lengths, config),
        stop_ids=frozenset(_stop_ids(model, tokenizer)),
        pad_id=pad_id if pad_id is not None else 0,
        do_sample=config.do_sample,
        temperature=config.temperature,
        top_p=config.top_p,
        n=config.n,
        seed=config.seed,
    )
    order = sorted(range(len(prompts)), key=lambda index: -lengths[index])
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    progress = _Progress(len(prompts) * config.n, config.progress)
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            ids = decode(model, prompt_ids, order, settings, on_finish=progress.finished, on_step=progress.step)
    finally:
        progress.bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    seconds = time.perf_counter() - started
    completions = [tokenizer.batch_decode(samples, skip_special_tokens=True) for samples in ids]
    token_counts = [[len(sample) for sample in samples] for samples in ids]
    return GenerationOutput(
        completions=completions, new_tokens=sum(map(sum, token_counts)), seconds=seconds, token_counts=token_counts
    )
