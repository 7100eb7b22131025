"""Collation of tokenized sequences into the :class:`~hipo.data.batch.TokenBatch` contract.

* padded: one sequence per row, right-padded with the pad id (attention 0, segment -1, sequence -1);
* packed (padding-free): sequences placed greedily into rows of ``pack_length`` tokens by first-fit decreasing,
  back to back, positions restarting at 0 per sequence, padding only at the end of a row; a sequence longer than
  ``pack_length`` gets a row of its own (the batch width is then that sequence's length);
* unpaired (KTO): N examples plus K = N mismatched "KL" sequences, sequence ``N + i`` being the prompt of
  example ``i`` followed by the response of example ``(i + 1) mod N`` (built from tokens; with N = 1 it is the
  example itself);
* responses (SFT): N chosen responses, one sequence each, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hipo.data.batch import TokenBatch
from hipo.data.tokenize import TokenizedPair, TokenizedSequence


@dataclass
class TokenizedExample:
    """One unpaired example: a sequence, whether it is desirable, and its id (``2 * pair id + (0 | 1)``)."""

    sequence: TokenizedSequence
    desirable: bool
    example_id: int


def unpair(pairs: Sequence[TokenizedPair]) -> list[TokenizedExample]:
    """Each pair as a desirable chosen example (id ``2i``) and an undesirable rejected one (id ``2i + 1``)."""
    out = []
    for pair in pairs:
        chosen, rejected = pair.paired_sides()
        out.append(TokenizedExample(chosen, True, 2 * pair.example_id))
        out.append(TokenizedExample(rejected, False, 2 * pair.example_id + 1))
    return out


def chosen_responses(pairs: Sequence[TokenizedPair]) -> list[TokenizedExample]:
    """The chosen response of each pair (or single response) as an example with the pair's id."""
    return [TokenizedExample(pair.chosen, True, pair.example_id) for pair in pairs]


def kl_sequence(prompt_of: TokenizedSequence, response_of: TokenizedSequence) -> TokenizedSequence:
    """The prompt tokens of ``prompt_of`` followed by the response tokens of ``response_of``."""
    p, r = prompt_of.prompt_length, response_of.prompt_length
    return TokenizedSequence(
        np.concatenate([prompt_of.input_ids[:p], response_of.input_ids[r:]]),
        np.concatenate([prompt_of.segment_ids[:p], response_of.segment_ids[r:]]),
        p,
    )


def pack_rows(lengths: Sequence[int], pack_length: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices per row (each row's total <= pack_length, or one oversize sequence).

    Ties in length keep the original order, so the result is deterministic.
    """
    if pack_length < 1:
        raise ValueError(f"pack_length must be >= 1, got {pack_length}")
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        for row, room in enumerate(free):
            if length <= room:
                rows[row].append(index)
                free[row] -= length
                break
        else:
            rows.append([index])
            free.append(max(pack_length - length, 0))
    return rows


def collate_sequences(
    sequences: Sequence[TokenizedSequence],
    example_ids: Sequence[int],
    pad_id: int,
    num_segments: int,
    packed: bool = False,
    pack_length: int = 2048,
) -> TokenBatch:
    """Sequences (in order: sequence i gets sequence id i) as a padded or packed :class:`TokenBatch`."""
    if not sequences:
        raise ValueError("cannot collate an empty batch")
    rows = pack_rows([len(s) for s in sequences], pack_length) if packed else [[i] for i in range(len(sequences))]
    width = max(sum(len(sequences[i]) for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    sequence_ids = torch.full(shape, -1, dtype=torch.long)
    for r, row in enumerate(rows):
        column = 0
        for index in row:
            sequence = sequences[index]
            end = column + len(sequence)
            input_ids[r, column:end] = torch.from_numpy(sequence.input_ids.astype(np.int64))
            segments[r, column:end] = torch.from_numpy(sequence.segment_ids.astype(np.int64))
            positions[r, column:end] = torch.arange(len(sequence))
            attention[r, column:end] = 1
            sequence_ids[r, column:end] = index
            column = end
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        segment_ids=segments,
        sequence_ids=sequence_ids,
        example_ids=torch.as_tensor(list(example_ids), dtype=torch.long),
        num_sequences=len(sequences),
        num_segments=num_segments,
        packed=packed,
    )


class PairCollator:
    """``list[TokenizedPair]`` (B pairs) -> TokenBatch of 2B sequences: chosen ``0..B-1``, rejected ``B..2B-1``.

    Args:
        pad_id: padding token id.
        num_segments: S.
        packed: padding-free rows.
        pack_length: tokens per packed row.
    """

    def __init__(self, pad_id: int, num_segments: int, packed: bool = False, pack_length: int = 2048) -> None:
        self.pad_id, self.num_segments, self.packed, self.pack_length = pad_id, num_segments, packed, pack_length

    def __call__(self, pairs: Sequence[TokenizedPair]) -> TokenBatch:
        sides = [p.paired_sides() for p in pairs]
        sequences = [chosen for chosen, _ in sides] + [rejected for _, rejected in sides]
        ids = [p.example_id for p in pairs]
        return collate_sequences(sequences, ids, self.pad_id, self.num_segments, self.packed, self.pack_length)


class UnpairedCollator(PairCollator):
    """``list[TokenizedExample]`` (N) -> TokenBatch of N examples + N KL sequences, with ``desirable`` [N]."""

    def __call__(self, examples: Sequence[TokenizedExample]) -> TokenBatch:  # type: ignore[override]
        n = len(examples)
        sequences = [e.sequence for e in examples]
        sequences += [kl_sequence(examples[i].sequence, examples[(i + 1) % n].sequence) for i in range(n)]
        ids = [e.example_id for e in examples]
        batch = collate_sequences(sequences, ids, self.pad_id, self.num_segments, self.packed, self.pack_length)
        batch.desirable = torch.tensor([e.desirable for e in examples], dtype=torch.bool)
        batch.num_kl_sequences = n
        return batch


class ResponseCollator(PairCollator):
    """``list[TokenizedExample]`` (N responses) -> TokenBatch of N sequences, sequence ``i`` being example ``i``."""

    def __call__(self, examples: Sequence[TokenizedExample]) -> TokenBatch:  # type: ignore[override]
        sequences = [e.sequence for e in examples]
        ids = [e.example_id for e in examples]
        return collate_sequences(sequences, ids, self.pad_id, self.num_segments, self.packed, self.pack_length)
