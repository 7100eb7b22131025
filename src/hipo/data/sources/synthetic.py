"""Rows of the embedded synthetic preference data (arithmetic problems, one localized error per rejected answer)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping

from hipo.data.row_errors import RowLocation
from hipo.data.sources.base import Row
from hipo.data.synthetic.problems import LEVELS, generate_problems
from hipo.data.synthetic.responses import (
    ERROR_SEGMENTS,
    StructuredResponse,
    check_mt_error_answer,
    dispreferred_response,
    preferred_response,
)

GENERATOR_VERSION = 1
FORMATS = ("fields", "tags", "headers", "plain")
_HEADERS = {"Rq": "**Refined Query:**", "Mt": "**Meta-thinking:**", "Ra": "**Refined Answer:**"}


def render(response: StructuredResponse, fmt: str) -> str:
    """One response as text: ``tags`` (``<Rq>…</Rq>``), ``headers`` (bold labels) or ``plain`` (paragraphs)."""
    parts = response.parts()
    if fmt == "tags":
        return "\n".join(f"<{name}>{text}</{name}>" for name, text in parts.items())
    if fmt == "headers":
        return "\n\n".join(f"{_HEADERS[name]}\n{text}" for name, text in parts.items())
    if fmt == "plain":
        return "\n\n".join(parts.values())
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


class SyntheticSource:
    """Deterministic rows: ``question``, ``answer``, ``error_segment``, ``id`` plus the responses.

    With ``format='fields'`` the responses come pre-decomposed (``Rq_a, Mt_a, Ra_a, Rq_b, Mt_b, Ra_b``; use the
    ``fields`` segmenter); otherwise as whole ``chosen`` / ``rejected`` texts rendered with tags, headers or plain
    paragraphs (``tags`` / ``rules`` segmenters).

    Args:
        num_pairs: number of rows.
        seed: generator seed.
        split: 'train' | 'validation' | 'test' (disjoint by question hash, see ``generate_problems``).
        format: 'fields' | 'tags' | 'headers' | 'plain'.
        error_weights: relative frequency of the error segment (default uniform over Rq, Mt, Ra).
        boxed_fraction: share of responses whose answer is written ``\\boxed{N}``.
        mt_error_answer: what Ra states after an Mt slip: 'gold' | 'propagated' | 'contradicting' (see ``responses``).
        level: the problems' level, 'multi_step' (2-4 steps) | 'one_step' (see ``hipo.data.synthetic.problems``).
    """

    def __init__(
        self,
        num_pairs: int = 2000,
        seed: int = 0,
        split: str = "train",
        format: str = "fields",
        error_weights: Mapping[str, float] | None = None,
        boxed_fraction: float = 0.5,
        mt_error_answer: str = "gold",
        level: str = "multi_step",
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        weights = dict(error_weights) if error_weights is not None else dict.fromkeys(ERROR_SEGMENTS, 1.0)
        unknown = set(weights) - set(ERROR_SEGMENTS)
        if unknown or sum(weights.values()) <= 0 or min(weights.values()) < 0:
            raise ValueError(f"error_weights must be non-negative over {ERROR_SEGMENTS} with a positive sum: {weights}")
        check_mt_error_answer(mt_error_answer)  # at construction: a config typo fails before any row
        if level not in LEVELS:
            raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
        self.num_pairs = num_pairs
        self.seed = seed
        self.split = split
        self.format = format
        self.error_weights = {name: float(weights.get(name, 0.0)) for name in ERROR_SEGMENTS}
        self.boxed_fraction = boxed_fraction
        self.mt_error_answer = mt_error_answer
        self.level = level
        self.name = f"synthetic-{split}-{seed}" + ("" if level == "multi_step" else f"-{level}")

    def rows(self) -> Iterator[tuple[RowLocation, Row]]:
        rng = random.Random(f"hipo-synthetic-responses:{self.seed}:{self.split}")
        segments, weights = list(self.error_weights), list(self.error_weights.values())
        for index, problem in enumerate(generate_problems(self.num_pairs, self.seed, self.split, self.level)):
            error_segment = rng.choices(segments, weights)[0]
            boxed = rng.random() < self.boxed_fraction
            good = preferred_response(problem, boxed)
            bad = dispreferred_response(problem, error_segment, boxed, rng, self.mt_error_answer)
            row: dict[str, object] = {
                "id": problem.id,
                "question": problem.question,
                "answer": problem.answer,
                "error_segment": error_segment,
            }
            if self.format == "fields":
                row.update({f"{name}_a": text for name, text in good.parts().items()})
                row.update({f"{name}_b": text for name, text in bad.parts().items()})
            else:
                row["chosen"], row["rejected"] = render(good, self.format), render(bad, self.format)
            yield RowLocation(self.name, index + 1), row

    def fingerprint(self) -> str:
        params = {k: v for k, v in vars(self).items() if k != "name"}
        return f"synthetic:v{GENERATOR_VERSION}:" + json.dumps(params, sort_keys=True)
