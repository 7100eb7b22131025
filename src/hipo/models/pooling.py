"""Pool per-token log-probs into per-sequence, per-segment sums and counts with one scatter; and, for LD-DPO, the
part of each sum past the length the pair's two sides share."""

from __future__ import annotations

import torch

from hipo.losses.types import SegmentLogps


def pool_segments(
    token_logps: torch.Tensor,
    segment_ids: torch.Tensor,
    sequence_ids: torch.Tensor,
    num_sequences: int,
    num_segments: int,
) -> SegmentLogps:
    """Sum token log-probs per (sequence, segment), plus the whole response, in one ``index_add``.

    A scored token (segment id ``k >= 0``) of sequence ``n`` adds to cell ``(n, S)`` (the whole response) and, when
    ``k < S``, to cell ``(n, k)``; tokens with id ``S`` (outside every named span) count in the whole response only;
    ``-1`` tokens are ignored. Sums and counts come from a single ``index_add`` of ``[logp, 1]`` pairs over the
    flattened index ``n * (S + 1) + k``, so the cost does not grow with S and there is no Python loop.

    Args:
        token_logps: [R, T] float log-probs (0 where not scored); may require grad.
        segment_ids: [R, T] integer ids in ``-1..S``.
        sequence_ids: [R, T] integer ids in ``0..num_sequences-1`` for every scored token (-1 for padding).
        num_sequences: N.
        num_segments: S.

    Returns:
        SegmentLogps with sums [N, S+1] (fp32, or fp64 for fp64 input; differentiable) and counts [N, S+1] (long).

    Raises:
        ValueError: naming the tensor, on a shape mismatch, a non-float/non-integer dtype or an id out of range.
    """
    _check_inputs(token_logps, segment_ids, sequence_ids, num_sequences, num_segments)
    width = num_segments + 1
    scored = segment_ids >= 0
    logps = token_logps[scored]
    segments = segment_ids[scored]
    sequences = sequence_ids[scored]
    named = segments < num_segments
    whole_index = sequences * width + num_segments
    named_index = sequences[named] * width + segments[named]
    index = torch.cat([named_index, whole_index])
    # Accumulate in at least fp32: bf16 would round both the sums and the counts (exact only up to 256).
    values = torch.cat([logps[named], logps]).to(torch.promote_types(token_logps.dtype, torch.float32))
    pairs = torch.stack([values, torch.ones_like(values)], dim=-1)  # [M, 2]: (log-prob, 1 for the count)
    pooled = pairs.new_zeros(num_sequences * width, 2).index_add(0, index, pairs)
    sums = pooled[:, 0].reshape(num_sequences, width)
    counts = pooled[:, 1].detach().round().long().reshape(num_sequences, width)
    return SegmentLogps(sums=sums, counts=counts)


def paired_tail_sums(
    token_logps: torch.Tensor,
    segment_ids: torch.Tensor,
    sequence_ids: torch.Tensor,
    counts: torch.Tensor,
    num_segments: int,
) -> torch.Tensor:
    """LD-DPO's verbose part (Liu et al. 2024) of every cell of a paired batch: the summed log-probs of the tokens
    past the cell's shared length, [N, S+1].

    Sequences ``0..B-1`` are the chosen responses and ``B..2B-1`` the rejected ones (N = 2B), as the pair collator
    lays them out. Cell (n, k)'s shared length is ``min(counts[n, k], counts[partner, k])``: the first that many
    tokens of segment k (column S: of the whole response) on each side are shared, the rest is the tail. Tokens are
    taken in row-major order, which is each sequence's own order in padded and in packed rows.

    Args:
        token_logps: [R, T] log-probs (0 where not scored); may require grad.
        segment_ids: [R, T] ids in ``-1..S``, as :func:`pool_segments` reads them.
        sequence_ids: [R, T] sequence of each token.
        counts: [2B, S+1] the batch's cell counts (:func:`pool_segments`).
        num_segments: S.

    Returns:
        [2B, S+1] tail sums (fp32 or wider; differentiable).
    """
    rows, width = counts.shape
    if rows % 2 or width != num_segments + 1:
        raise ValueError(
            f"paired_tail_sums: counts must be [2B, S+1] = [even, {num_segments + 1}]; got {tuple(counts.shape)}"
        )
    half = rows // 2
    shared = torch.minimum(counts, torch.cat([counts[half:], counts[:half]])).flatten()  # [2B * (S+1)]
    scored = segment_ids >= 0
    logps = token_logps[scored].to(torch.promote_types(token_logps.dtype, torch.float32))
    segments, sequences = segment_ids[scored], sequence_ids[scored]
    named = segments < num_segments
    cells = torch.cat([sequences[named] * width + segments[named], sequences * width + num_segments])
    values = torch.cat([logps[named], logps])
    tail = _rank_within(cells, rows * width) >= shared[cells]
    return values.new_zeros(rows * width).index_add(0, cells[tail], values[tail]).reshape(rows, width)


def _rank_within(cells: torch.Tensor, num_cells: int) -> torch.Tensor:
    """[M] each entry's position among the entries of its cell, in order (0 for a cell's first)."""
    order = torch.argsort(cells, stable=True)
    sorted_cells = cells[order]
    per_cell = torch.bincount(sorted_cells, minlength=num_cells)
    starts = torch.cumsum(per_cell, 0) - per_cell
    ranks = torch.empty_like(cells)
    ranks[order] = torch.arange(cells.numel(), device=cells.device) - starts[sorted_cells]
    return ranks


def _check_inputs(
    token_logps: torch.Tensor,
    segment_ids: torch.Tensor,
    sequence_ids: torch.Tensor,
    num_sequences: int,
    num_segments: int,
) -> None:
    if token_logps.dim() != 2:
        raise ValueError(f"pool_segments: token_logps must be [R, T], got shape {tuple(token_logps.shape)}")
    if not token_logps.is_floating_point():
        raise ValueError(f"pool_segments: token_logps must be a float tensor, got {token_logps.dtype}")
    for name, ids in (("segment_ids", segment_ids), ("sequence_ids", sequence_ids)):
        if ids.shape != token_logps.shape:
            raise ValueError(
                f"pool_segments: {name} has shape {tuple(ids.shape)}, token_logps {tuple(token_logps.shape)}"
            )
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ValueError(f"pool_segments: {name} must be an integer tensor, got {ids.dtype}")
    if num_sequences < 0 or num_segments < 1:
        raise ValueError(
            f"pool_segments: need num_sequences >= 0 and num_segments >= 1, got {num_sequences}, {num_segments}"
        )
    if segment_ids.numel() == 0:
        return
    low, high = int(segment_ids.min()), int(segment_ids.max())
    if low < -1 or high > num_segments:
        raise ValueError(
            f"pool_segments: segment_ids range [{low}, {high}] outside [-1, {num_segments}] (S={num_segments})"
        )
    scored_sequences = sequence_ids[segment_ids >= 0]
    if scored_sequences.numel() and (int(scored_sequences.min()) < 0 or int(scored_sequences.max()) >= num_sequences):
        raise ValueError(
            f"pool_segments: sequence_ids of scored tokens range [{int(scored_sequences.min())}, "
            f"{int(scored_sequences.max())}] outside [0, {num_sequences - 1}]"
        )
