"""Human-readable view of segmented pairs (``hipo segment``): each response with its segments marked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hipo.data.segmented import SegmentedPair, SegmentedResponse
from hipo.data.tokenize import PreferenceTokenizer


def mark_segments(response: SegmentedResponse) -> str:
    """The response text with each span wrapped as ``⟦Name⟧…⟦/Name⟧`` (outside text left as is)."""
    out, position = [], 0
    for span in response.spans:
        out.append(response.text[position : span.start])
        out.append(f"⟦{span.name}⟧{response.text[span.start : span.end]}⟦/{span.name}⟧")
        position = span.end
    out.append(response.text[position:])
    return "".join(out)


def _responses(pair: SegmentedPair) -> list[SegmentedResponse]:
    """The chosen response and, when there is one, the rejected one."""
    return [pair.chosen] + ([pair.rejected] if pair.rejected is not None else [])


def _token_counts(pairs: Sequence[SegmentedPair], tokenizer: Any) -> list[list[dict[str, int]]]:
    """Per pair, the token count of each segment of the chosen (and rejected) response."""
    tok = tokenizer if isinstance(tokenizer, PreferenceTokenizer) else None
    if tok is None:
        segments = tuple(dict.fromkeys(s.name for p in pairs for r in _responses(p) for s in r.spans))
        tok = PreferenceTokenizer(tokenizer, segments or ("segment",), truncate_from=(segments or ("segment",))[0])
    names = [*tok.segments, "outside"]
    counts = []
    for pair in tok.tokenize_pairs(pairs):
        per_side = []
        for seq in (pair.chosen, pair.rejected):
            if seq is None:
                continue
            tally = np.bincount(seq.segment_ids[seq.segment_ids >= 0], minlength=len(names))
            per_side.append({name: int(n) for name, n in zip(names, tally, strict=True)})
        counts.append(per_side)
    return counts


def describe_segmentation(pairs: Sequence[SegmentedPair], n: int = 5, tokenizer: Any = None) -> str:
    """A report of the first ``n`` pairs: prompt, and each response with its segments delimited and labelled.

    Args:
        pairs: segmented pairs.
        n: how many to show.
        tokenizer: optional HF tokenizer or :class:`PreferenceTokenizer`; adds per-segment token counts computed
            by the training tokenization (``outside`` = separators, headers and the end of turn).
    """
    shown = list(pairs[:n])
    counts = _token_counts(shown, tokenizer) if tokenizer is not None and shown else None
    blocks = []
    for index, pair in enumerate(shown):
        meta = ", ".join(f"{k}={v}" for k, v in pair.meta.items())
        lines = [f"=== pair {index + 1}/{len(shown)}" + (f" ({meta})" if meta else ""), "--- prompt", pair.prompt]
        for side, response in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            if response is None:
                continue
            lines.append(f"--- {side}")
            if counts is not None:
                tally = counts[index][0 if side == "chosen" else 1]
                lines.append("tokens: " + ", ".join(f"{name}={count}" for name, count in tally.items()))
            lines.append(mark_segments(response))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")
