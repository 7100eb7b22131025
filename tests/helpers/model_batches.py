"""Test helper: hand-built TokenBatch objects (padded and packed) from (prompt ids, response ids, segment ids).

Independent of the project's collate so that the model tests do not depend on it; follows the contract of
``hipo.data.batch``: prompt tokens get segment id -1, positions restart at 0 per sequence, padding has attention 0,
segment -1, sequence -1 and position 0.
"""

from __future__ import annotations

import torch

from hipo.data.batch import TokenBatch

Sequence = tuple[list[int], list[int], list[int]]  # (prompt ids, response ids, segment id of each response token)


def _tokens(sequence: Sequence) -> tuple[list[int], list[int]]:
    prompt, response, segments = sequence
    if not prompt:
        raise ValueError("a sequence needs at least one prompt token (the first token is never scored)")
    if len(response) != len(segments):
        raise ValueError(f"{len(response)} response tokens but {len(segments)} segment ids")
    return prompt + response, [-1] * len(prompt) + list(segments)


def padded_batch(
    sequences: list[Sequence], num_segments: int, pad_id: int = 2, length: int | None = None
) -> TokenBatch:
    """One sequence per row, right-padded to ``length`` (default: the longest)."""
    length = length or max(len(p) + len(r) for p, r, _ in sequences)
    rows = len(sequences)
    input_ids = torch.full((rows, length), pad_id, dtype=torch.long)
    attention = torch.zeros(rows, length, dtype=torch.long)
    positions = torch.zeros(rows, length, dtype=torch.long)
    segment_ids = torch.full((rows, length), -1, dtype=torch.long)
    sequence_ids = torch.full((rows, length), -1, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        ids, segs = _tokens(sequence)
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        positions[i, :n] = torch.arange(n)
        segment_ids[i, :n] = torch.tensor(segs)
        sequence_ids[i, :n] = i
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        segment_ids=segment_ids,
        sequence_ids=sequence_ids,
        example_ids=torch.arange(rows),
        num_sequences=rows,
        num_segments=num_segments,
        packed=False,
    )


def packed_batch(sequences: list[Sequence], num_segments: int, row_length: int, pad_id: int = 2) -> TokenBatch:
    """Sequences placed back to back in order into rows of ``row_length`` (a new row when the next does not fit)."""
    rows: list[list[int]] = [[]]
    used = 0
    for i, (prompt, response, _) in enumerate(sequences):
        n = len(prompt) + len(response)
        if n > row_length:
            raise ValueError(f"sequence {i} has {n} tokens > row_length {row_length}")
        if used + n > row_length:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    shape = (len(rows), row_length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    segment_ids = torch.full(shape, -1, dtype=torch.long)
    sequence_ids = torch.full(shape, -1, dtype=torch.long)
    for r, members in enumerate(rows):
        column = 0
        for i in members:
            ids, segs = _tokens(sequences[i])
            end = column + len(ids)
            input_ids[r, column:end] = torch.tensor(ids)
            attention[r, column:end] = 1
            positions[r, column:end] = torch.arange(len(ids))
            segment_ids[r, column:end] = torch.tensor(segs)
            sequence_ids[r, column:end] = i
            column = end
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        segment_ids=segment_ids,
        sequence_ids=sequence_ids,
        example_ids=torch.arange(len(sequences)),
        num_sequences=len(sequences),
        num_segments=num_segments,
        packed=True,
    )


def random_sequences(
    count: int, num_segments: int, vocab: int, seed: int = 0, with_outside: bool = True, max_len: int = 12
) -> list[Sequence]:
    """``count`` random sequences: prompts of 1..6 tokens, responses of 1..max_len tokens split into ordered segments
    (ids 0..S-1, plus id S for some tokens when ``with_outside``)."""
    g = torch.Generator().manual_seed(seed)
    out: list[Sequence] = []
    for _ in range(count):
        p = int(torch.randint(1, 7, (1,), generator=g))
        n = int(torch.randint(1, max_len + 1, (1,), generator=g))
        top = num_segments + 1 if with_outside else num_segments
        segs = sorted(torch.randint(0, top, (n,), generator=g).tolist())
        prompt = torch.randint(3, vocab, (p,), generator=g).tolist()
        response = torch.randint(3, vocab, (n,), generator=g).tolist()
        out.append((prompt, response, segs))
    return out


def adam_step(model: torch.nn.Module, batch: TokenBatch, lr: float = 1e-2) -> None:
    """One Adam step on the trainable parameters that raises the whole-response log-prob of every sequence."""
    from hipo.models.logprobs import sequence_segment_logps

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    loss = -sequence_segment_logps(model, batch).sums[:, -1].mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
