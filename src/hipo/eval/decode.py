"""Continuous-batching decode loop over one KV cache: finished sequences leave the batch, waiting prompts join it.

The loop (``decode``) keeps up to ``slots`` sequences running. Each step feeds every running row its newest token
(one forward of [R, 1] tokens over a shared, left-padded ``DynamicCache``), picks the next tokens (greedy argmax,
or temperature + top-p sampling from a seeded ``torch.Generator``), and retires the rows that produced a stop token
or reached ``max_new_tokens``: their cache rows are removed, so a finished sequence costs nothing further. When at
least ``n`` slots are free, the next waiting prompts (taken in the caller's order, longest first) are prefilled in
their own forward (prompt rows left-padded to the longest of them, ``logits_to_keep=1``), each prompt's cache row is
repeated ``n`` times, and the rows are appended to the running batch (``kv_cache.append_rows``). Leading cache
columns that are padding in every row are dropped after each retirement.

Positions are passed explicitly per row (the number of real tokens before the token), so a row computes exactly
what an unpadded ``generate`` of its prompt computes; padding columns are masked out. Greedy outputs therefore
equal Hugging Face greedy ``generate`` token for token, up to floating-point ties.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from hipo.eval.kv_cache import append_rows, cache_columns, drop_leading_columns, new_cache, select_rows


@dataclass(frozen=True)
class DecodeSettings:
    """What the loop needs to know (``GenerationConfig`` resolved against the model and tokenizer).

    Attributes:
        max_new_tokens: cap on generated tokens per sequence (a stop token counts as one).
        slots: the most sequences running at once (each prompt takes ``n`` slots).
        stop_ids: token ids that end a sequence (kept as its last token).
        pad_id: the id fed at left-padding positions of a prefill (masked out; any valid id works).
        do_sample: sample instead of greedy argmax.
        temperature: sampling temperature (> 0).
        top_p: nucleus mass in (0, 1]; 1 samples from the whole distribution.
        n: sequences per prompt.
        seed: seed of the sampling generator.
        prefill_tokens: the most (padded) prompt tokens one prefill forward takes; more newcomers are split.
    """

    max_new_tokens: int
    slots: int
    stop_ids: frozenset[int]
    pad_id: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    prefill_tokens: int = 8192


@dataclass
class _Running:
    """The running rows (R of them; the cache and the mask share T columns).

    Attributes:
        cache: keys/values [R, H, T, D] per layer (left-padded).
        mask: [R, T] bool, True at real tokens.
        positions: [R] long, the position id of each row's newest token (= the real tokens before it).
        last: [R] long, each row's newest token (not yet in the cache).
        owners: (prompt index, sample index) per row.
        tokens: generated token ids per row (``last`` included).
    """

    cache: DynamicCache
    mask: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor
    owners: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)


FinishCallback = Callable[[int, int, list[int]], None]
"""Called with (prompt index, sample index, token ids) when a sequence finishes."""


def choose_tokens(logits: torch.Tensor, settings: DecodeSettings, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row from ``logits`` [R, V] (fp32): argmax, or a temperature / top-p sample. Returns [R] long.

    Top-p keeps the smallest set of most likely tokens whose probability mass reaches ``top_p`` (at least one).
    """
    if not settings.do_sample:
        return logits.argmax(dim=-1)
    scores = logits / settings.temperature
    if settings.top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        outside = probs.cumsum(dim=-1) - probs > settings.top_p  # mass before the token already reaches top_p
        sorted_scores = sorted_scores.masked_fill(outside, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
    return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(-1)


def _forward(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache):
    """One forward of ``ids`` [R, Q] appending to ``cache``; returns the last position's fp32 logits [R, V]."""
    output = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    )
    return output.logits[:, -1, :].float()


def _prefill(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    indices: Sequence[int],
    settings: DecodeSettings,
    generator: torch.Generator | None,
    device: torch.device,
) -> _Running:
    """Prefills the prompts ``indices`` (one forward, left-padded) and picks each of their ``n`` first tokens."""
    lengths = [len(prompt_ids[i]) for i in indices]
    width = max(lengths)
    ids = torch.full((len(indices), width), settings.pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.bool)
    for row, (index, length) in enumerate(zip(indices, lengths, strict=True)):
        ids[row, width - length :] = torch.tensor(prompt_ids[index], dtype=torch.long)
        mask[row, width - length :] = True
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
    cache = new_cache()
    logits = _forward(model, ids, mask, positions, cache)
    if cache_columns(cache) != width:
        raise NotImplementedError(f"{type(model).__name__} did not fill the DynamicCache it was given")
    repeat = torch.arange(len(indices), device=device).repeat_interleave(settings.n)
    if settings.n > 1:
        select_rows(cache, repeat)
    first = choose_tokens(logits[repeat], settings, generator)
    return _Running(
        cache=cache,
        mask=mask[repeat],
        positions=torch.tensor(lengths, dtype=torch.long, device=device)[repeat],
        last=first,
        owners=[(index, sample) for index in indices for sample in range(settings.n)],
        tokens=[[token] for token in first.tolist()],
    )


def _append(running: _Running | None, newcomers: _Running) -> _Running:
    """The running rows followed by the newcomers' (caches and masks left-padded to a common width)."""
    if running is None or not running.owners:
        return newcomers
    if not newcomers.owners:
        return running
    width = max(running.mask.shape[1], newcomers.mask.shape[1])

    def pad(mask: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(mask, (width - mask.shape[1], 0), value=False)

    append_rows(running.cache, newcomers.cache)
    return _Running(
        cache=running.cache,
        mask=torch.cat([pad(running.mask), pad(newcomers.mask)]),
        positions=torch.cat([running.positions, newcomers.positions]),
        last=torch.cat([running.last, newcomers.last]),
        owners=running.owners + newcomers.owners,
        tokens=running.tokens + newcomers.tokens,
    )


def _retire(running: _Running, settings: DecodeSettings, on_finish: FinishCallback) -> _Running:
    """Hands finished rows to ``on_finish`` and removes them (cache rows, mask rows, all-padding columns)."""
    keep: list[int] = []
    for row, tokens in enumerate(running.tokens):
        if tokens[-1] in settings.stop_ids or len(tokens) >= settings.max_new_tokens:
            on_finish(*running.owners[row], tokens)
        else:
            keep.append(row)
    if len(keep) == len(running.tokens):
        return running
    rows = torch.tensor(keep, dtype=torch.long, device=running.mask.device)
    select_rows(running.cache, rows)
    mask = running.mask[rows]
    lead = int(mask.any(dim=0).long().argmax()) if keep else 0  # first column that is real in some row
    drop_leading_columns(running.cache, lead)
    return _Running(
        cache=running.cache,
        mask=mask[:, lead:],
        positions=running.positions[rows],
        last=running.last[rows],
        owners=[running.owners[row] for row in keep],
        tokens=[running.tokens[row] for row in keep],
    )


def _step(model: Any, running: _Running, settings: DecodeSettings, generator: torch.Generator | None) -> None:
    """Feeds every row its newest token and appends the next one (in place)."""
    running.mask = torch.nn.functional.pad(running.mask, (0, 1), value=True)
    logits = _forward(model, running.last[:, None], running.mask, running.positions[:, None], running.cache)
    running.last = choose_tokens(logits, settings, generator)
    running.positions = running.positions + 1
    for tokens, token in zip(running.tokens, running.last.tolist(), strict=True):
        tokens.append(token)


def _admit(running: _Running | None, waiting: deque[int], settings: DecodeSettings, lengths: Sequence[int]) -> list:
    """The waiting prompts to prefill now (in order): as many as fill the free slots, at least one if idle."""
    busy = len(running.owners) if running is not None else 0
    count = (settings.slots - busy) // settings.n
    if busy == 0:
        count = max(count, 1)
    chosen: list[int] = []
    while waiting and len(chosen) < count:
        chosen.append(waiting.popleft())
    groups: list[list[int]] = []
    for index in chosen:  # split so that one prefill holds at most prefill_tokens padded tokens
        if groups and (len(groups[-1]) + 1) * max(lengths[i] for i in [*groups[-1], index]) <= settings.prefill_tokens:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def decode(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    order: Sequence[int],
    settings: DecodeSettings,
    on_finish: FinishCallback | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[list[list[int]]]:
    """Generates ``settings.n`` sequences per prompt with continuous batching.

    Args:
        model: a causal LM (``PreTrainedModel`` or ``PeftModel``) in eval mode; called under the caller's no-grad.
        prompt_ids: token ids per prompt (non-empty, special tokens already in).
        order: the prompt indices in the order they enter the batch (e.g. longest first).
        settings: decoding settings.
        on_finish: called when a sequence finishes (progress reporting).
        on_step: called after every forward with the number of tokens it generated.

    Returns:
        ``result[i][s]``: the generated ids of sample ``s`` of prompt ``i`` (up to and including the stop token).
    """
    if any(len(ids) == 0 for ids in prompt_ids):
        raise ValueError("cannot generate from an empty prompt")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(settings.seed) if settings.do_sample else None
    result: list[list[list[int]]] = [[[] for _ in range(settings.n)] for _ in prompt_ids]

    def finish(prompt: int, sample: int, tokens: list[int]) -> None:
        result[prompt][sample] = tokens
        if on_finish is not None:
            on_finish(prompt, sample, tokens)

    lengths = [len(ids) for ids in prompt_ids]
    waiting, running = deque(order), None
    while waiting or (running is not None and running.owners):
        for group in _admit(running, waiting, settings, lengths):
            newcomers = _prefill(model, prompt_ids, group, settings, generator, device)
            if on_step is not None:
                on_step(len(newcomers.owners))
            running = _append(running, _retire(newcomers, settings, finish))
        if running is None or not running.owners:
            continue
        _step(model, running, settings, generator)
        if on_step is not None:
            on_step(len(running.owners))
        running = _retire(running, settings, finish)
    return result
