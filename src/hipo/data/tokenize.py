"""Chat-template rendering and one-pass tokenization with character offsets -> per-token segment ids.

For each response the text ``render(prompt) + response + end_of_turn`` is tokenized ONCE (fast tokenizer, many
sequences per call, ``add_special_tokens=False`` since the template already holds them) and every token gets:

* ``-1`` when it starts before the response (prompt, system text, template scaffolding) -- so a token that
  straddles the prompt/response boundary counts as prompt; the first token of a sequence is always ``-1``;
* ``k`` (0..S-1) when its *anchor character* lies in span ``k``; the anchor is the token's first non-whitespace
  character (its first character when it is all whitespace). Byte-level BPE glues a leading space to the next
  word (" The"), so anchoring on the first character would hand a segment's first word to the separator before
  it; with the anchor, a token that straddles a span boundary belongs to the segment holding its first
  non-space response character, every token lying wholly inside a span gets that span's id, and every token
  labelled ``k`` overlaps span ``k``;
* ``S`` when the anchor lies in no span (separators, headers) and for the end-of-turn text (``<|im_end|>``),
  which the policy must learn to emit.

Since anchors increase with the token index, each segment's tokens are contiguous and in text order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from hipo.data.data_stats import TOO_LONG, DataStats
from hipo.data.segmented import DEFAULT_SEGMENTS, SegmentedPair, SegmentedResponse

TRUNCATION_POLICIES = ("drop_pair", "truncate_segment")
# str.isspace() per code point; U+3000 is the largest whitespace code point, larger ones are not whitespace.
_IS_SPACE = np.array([chr(c).isspace() for c in range(0x3001)] + [False], dtype=bool)
_SENTINEL = "\x00HIPO-RESPONSE\x00"


@dataclass
class TokenizedSequence:
    """One (prompt, response) sequence.

    Attributes:
        input_ids: [L] int32 token ids.
        segment_ids: [L] int8 segment id per token (-1 prompt, 0..S-1 segment, S outside text / end of turn).
        prompt_length: number of leading prompt tokens (all ``-1``); ``input_ids[prompt_length:]`` is the response.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    prompt_length: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class TokenizedPair:
    """A tokenized preference pair; ``example_id`` is its index in its (train or validation) dataset.

    ``rejected`` is None for a single response (see :class:`~hipo.data.segmented.SegmentedPair`).
    """

    chosen: TokenizedSequence
    rejected: TokenizedSequence | None
    example_id: int

    def paired_sides(self) -> tuple[TokenizedSequence, TokenizedSequence]:
        """(chosen, rejected); raises ValueError for a single response (no rejected side)."""
        if self.rejected is None:
            raise ValueError(f"example {self.example_id} has no rejected response: this needs preference pairs")
        return self.chosen, self.rejected


def end_of_turn_text(tokenizer: Any) -> str:
    """The text the chat template puts after an assistant message, up to and including the EOS token.

    Derived by rendering a conversation whose assistant turn is a sentinel. ChatML gives ``<|im_end|>`` (the
    template's trailing newline is cut after the EOS token the model emits); without an EOS in the suffix the
    suffix is used with trailing whitespace removed.
    """
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _SENTINEL}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    if _SENTINEL not in rendered:
        raise ValueError("the chat template altered the assistant message; pass end_of_turn explicitly")
    suffix = rendered[rendered.index(_SENTINEL) + len(_SENTINEL) :]
    eos = tokenizer.eos_token
    if eos and eos in suffix:
        return suffix[: suffix.index(eos) + len(eos)]
    stripped = suffix.rstrip()
    if not stripped:
        raise ValueError("could not derive the end-of-turn text from the chat template; pass end_of_turn")
    return stripped


class PreferenceTokenizer:
    """Tokenizes segmented pairs into :class:`TokenizedPair` s (see the module docstring for the id rules).

    Args:
        tokenizer: a Hugging Face fast tokenizer with a chat template.
        segments: ordered segment names (ids 0..S-1).
        max_length: tokens per sequence; ``None`` for no limit.
        truncation: ``drop_pair`` (drop a pair with a sequence over ``max_length``) or ``truncate_segment``
            (delete the tail tokens of ``truncate_from``, keeping the later segments and the end of turn; when
            that segment would lose all its tokens, or cannot absorb the excess, the pair is dropped).
        truncate_from: the segment shortened by ``truncate_segment``.
        system_prompt: a system message (``None``: the template's default).
        end_of_turn: text appended after the response (``None``: derived from the template).
        batch_size: texts per tokenizer call.
    """

    def __init__(
        self,
        tokenizer: Any,
        segments: Sequence[str] = DEFAULT_SEGMENTS,
        max_length: int | None = None,
        truncation: str = "truncate_segment",
        truncate_from: str = "Mt",
        system_prompt: str | None = None,
        end_of_turn: str | None = None,
        batch_size: int = 512,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer (with offset mappings) is required")
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"truncation must be one of {TRUNCATION_POLICIES}, got {truncation!r}")
        self.segments = tuple(segments)
        if truncate_from not in self.segments:
            raise ValueError(f"truncate_from {truncate_from!r} is not one of the segments {self.segments}")
        if len(self.segments) > 126:
            raise ValueError("at most 126 segments (segment ids are int8)")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.truncation = truncation
        self.truncate_from = truncate_from
        self.system_prompt = system_prompt
        self.end_of_turn = end_of_turn if end_of_turn is not None else end_of_turn_text(tokenizer)
        self.batch_size = batch_size
        self._segment_index = {name: i for i, name in enumerate(self.segments)}

    @property
    def num_segments(self) -> int:
        return len(self.segments)

    def config(self) -> dict[str, Any]:
        """What the output depends on besides the tokenizer itself (hashed into the cache fingerprint)."""
        return {
            "segments": list(self.segments),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "truncate_from": self.truncate_from,
            "system_prompt": self.system_prompt,
            "end_of_turn": self.end_of_turn,
        }

    def render_prompt(self, prompt: str) -> str:
        """The chat-template text before the response (system?, user message, generation prompt)."""
        messages = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
        messages.append({"role": "user", "content": prompt})
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def tokenize_responses(
        self, prompts: Sequence[str], responses: Sequence[SegmentedResponse]
    ) -> list[TokenizedSequence]:
        """One untruncated sequence per (prompt, response), tokenized and labelled ``batch_size`` at a time."""
        return self._tokenize_rendered([self.render_prompt(p) for p in prompts], responses)

    def _tokenize_rendered(
        self, rendered: Sequence[str], responses: Sequence[SegmentedResponse]
    ) -> list[TokenizedSequence]:
        out: list[TokenizedSequence] = []
        for start in range(0, len(responses), self.batch_size):
            stop = start + self.batch_size
            out.extend(self._tokenize_batch(rendered[start:stop], responses[start:stop]))
        return out

    def _tokenize_batch(
        self, rendered: Sequence[str], responses: Sequence[SegmentedResponse]
    ) -> list[TokenizedSequence]:
        """Labels a batch in one vectorized pass over the concatenation of its texts (global char positions)."""
        texts = [r + resp.text + self.end_of_turn for r, resp in zip(rendered, responses, strict=True)]
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.asarray([len(e.ids) for e in encodings], dtype=np.int64)
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int32, count=total)
        flat = chain.from_iterable(chain.from_iterable(e.offsets for e in encodings))
        offsets = np.fromiter(flat, dtype=np.int64, count=2 * total).reshape(-1, 2)
        text_base = np.concatenate([[0], np.cumsum([len(t) for t in texts])])
        response_start = text_base[:-1] + np.asarray([len(r) for r in rendered], dtype=np.int64)
        response_end = response_start + np.asarray([len(r.text) for r in responses], dtype=np.int64)
        owner = np.repeat(np.arange(len(texts)), lengths)
        starts, ends = offsets[:, 0] + text_base[owner], offsets[:, 1] + text_base[owner]
        # Anchor = first non-whitespace character of the token (its start when it is all whitespace).
        codes = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        is_space = _IS_SPACE[np.minimum(codes, len(_IS_SPACE) - 1)]
        position = np.arange(len(codes) + 1, dtype=np.int64)
        next_solid = np.where(np.append(is_space, False), len(codes), position)
        next_solid = np.minimum.accumulate(next_solid[::-1])[::-1]
        anchor = next_solid[starts]
        anchor = np.where(anchor < ends, anchor, starts)
        # Span lookup over all spans of the batch (global positions are increasing and spans disjoint).
        span_start, span_end, span_id = [], [], []
        for base, response in zip(response_start.tolist(), responses, strict=True):
            for span in response.spans:
                if span.name not in self._segment_index:
                    raise ValueError(f"span {span.name!r} is not one of the configured segments {self.segments}")
                if span.end > span.start:
                    span_start.append(base + span.start)
                    span_end.append(base + span.end)
                    span_id.append(self._segment_index[span.name])
        labels = np.full(total, self.num_segments, dtype=np.int8)
        if span_start:
            which = np.searchsorted(np.asarray(span_start, dtype=np.int64), anchor, side="right") - 1
            safe = np.maximum(which, 0)
            hit = (which >= 0) & (anchor < np.asarray(span_end, dtype=np.int64)[safe])
            labels = np.where(hit, np.asarray(span_id, dtype=np.int8)[safe], labels).astype(np.int8)
        labels[anchor >= response_end[owner]] = self.num_segments  # the end-of-turn text
        in_prompt = starts < response_start[owner]
        labels[in_prompt] = -1
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        labels[first[lengths > 0]] = -1
        prompt_lengths = np.bincount(owner[in_prompt], minlength=len(texts))
        bounds = np.cumsum(lengths)[:-1]
        return [
            TokenizedSequence(tokens.copy(), segments.copy(), max(int(p), 1))
            for tokens, segments, p in zip(np.split(ids, bounds), np.split(labels, bounds), prompt_lengths, strict=True)
        ]

    def truncate(self, sequence: TokenizedSequence) -> TokenizedSequence | None:
        """``sequence`` fitted into ``max_length`` by the policy (None: the pair must be dropped)."""
        if self.max_length is None or len(sequence) <= self.max_length:
            return sequence
        if self.truncation == "drop_pair":
            return None
        excess = len(sequence) - self.max_length
        positions = np.flatnonzero(sequence.segment_ids == self._segment_index[self.truncate_from])
        if len(positions) <= excess:  # never drop a whole segment
            return None
        keep = np.ones(len(sequence), dtype=bool)
        keep[positions[-excess:]] = False
        return TokenizedSequence(sequence.input_ids[keep], sequence.segment_ids[keep], sequence.prompt_length)

    def tokenize_pairs(self, pairs: Sequence[SegmentedPair], stats: DataStats | None = None) -> list[TokenizedPair]:
        """Tokenized pairs (``example_id`` = position among the KEPT pairs); drops/truncations go to ``stats``."""
        return self.tokenize_and_filter(pairs, stats)[0]

    def tokenize_and_filter(
        self, pairs: Sequence[SegmentedPair], stats: DataStats | None = None
    ) -> tuple[list[TokenizedPair], list[int]]:
        """Tokenized pairs plus, for each, the index in ``pairs`` it came from (pairs too long are left out)."""
        stats = stats if stats is not None else DataStats()
        rendered = [self.render_prompt(p.prompt) for p in pairs]  # once per pair: both sides share the prompt
        chosen = self._tokenize_rendered(rendered, [p.chosen for p in pairs])
        with_rejected = [i for i, p in enumerate(pairs) if p.rejected is not None]
        tokenized = self._tokenize_rendered(
            [rendered[i] for i in with_rejected], [r for p in pairs if (r := p.rejected) is not None]
        )
        rejected: list[TokenizedSequence | None] = [None] * len(pairs)
        for index, sequence in zip(with_rejected, tokenized, strict=True):
            rejected[index] = sequence
        out: list[TokenizedPair] = []
        kept: list[int] = []
        for index, (good, bad) in enumerate(zip(chosen, rejected, strict=True)):
            fitted_good = self.truncate(good)
            fitted_bad = self.truncate(bad) if bad is not None else None
            if fitted_good is None or (bad is not None and fitted_bad is None):
                stats.skip(TOO_LONG)
                continue
            stats.truncated += int(fitted_good is not good) + int(bad is not None and fitted_bad is not bad)
            out.append(TokenizedPair(fitted_good, fitted_bad, len(out)))
            kept.append(index)
        return out, kept
