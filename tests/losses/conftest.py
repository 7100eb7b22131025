"""Fixtures of the loss tests: a fake ``TokenBatch`` built directly from tensors (the losses read only its
``desirable`` / ``num_kl_sequences`` fields; the token tensors are placeholders of a consistent shape)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from hipo.data.batch import TokenBatch


def _fake_batch(
    num_sequences: int, num_segments: int, desirable: list[bool] | None = None, num_kl: int = 0
) -> TokenBatch:
    length = 4
    ids = torch.zeros(num_sequences, length, dtype=torch.long)
    segment_ids = torch.full_like(ids, -1)
    segment_ids[:, 1:] = num_segments
    num_examples = len(desirable) if desirable is not None else num_sequences // 2
    return TokenBatch(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(length).expand(num_sequences, length).clone(),
        segment_ids=segment_ids,
        sequence_ids=torch.arange(num_sequences).unsqueeze(1).expand(num_sequences, length).clone(),
        example_ids=torch.arange(num_examples),
        num_sequences=num_sequences,
        num_segments=num_segments,
        desirable=torch.tensor(desirable, dtype=torch.bool) if desirable is not None else None,
        num_kl_sequences=num_kl,
    )


@pytest.fixture
def fake_batch() -> Callable[..., TokenBatch]:
    """``fake_batch(num_sequences, num_segments, desirable=None, num_kl=0) -> TokenBatch``."""
    return _fake_batch
