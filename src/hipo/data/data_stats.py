"""Counts of what data preparation kept, skipped, truncated and dropped (logged by the caller)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Reasons a pair is skipped or dropped (keys of ``DataStats.skipped``).
EMPTY_RESPONSE = "empty_response"
SEGMENTATION_FAILED = "segmentation_failed"
TOO_LONG = "too_long"


@dataclass
class DataStats:
    """What happened to the rows of one preparation run.

    Attributes:
        rows_read: raw rows read from the source(s).
        pairs_kept: pairs that reached the tokenized train + validation sets.
        skipped: pairs removed, by reason (``empty_response``, ``segmentation_failed``, ``too_long``).
        single_segment: pairs kept whole (one segment / whole-only) after a segmentation failure.
        truncated: sequences (chosen or rejected) shortened by the ``truncate_segment`` policy.
        train_pairs: pairs in the training set.
        val_pairs: pairs in the validation set.
    """

    rows_read: int = 0
    pairs_kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    single_segment: int = 0
    truncated: int = 0
    train_pairs: int = 0
    val_pairs: int = 0

    def skip(self, reason: str, count: int = 1) -> None:
        """Count ``count`` pairs removed for ``reason``."""
        self.skipped[reason] += count

    @property
    def dropped(self) -> int:
        """Pairs removed by the length policy (``drop_pair``, or nothing left to truncate)."""
        return self.skipped[TOO_LONG]

    def merge(self, other: DataStats) -> DataStats:
        """Element-wise sum of two stats objects (a new object)."""
        return DataStats(
            rows_read=self.rows_read + other.rows_read,
            pairs_kept=self.pairs_kept + other.pairs_kept,
            skipped=self.skipped + other.skipped,
            single_segment=self.single_segment + other.single_segment,
            truncated=self.truncated + other.truncated,
            train_pairs=self.train_pairs + other.train_pairs,
            val_pairs=self.val_pairs + other.val_pairs,
        )

    def as_dict(self) -> dict[str, int]:
        """Flat ``{name: count}`` for logging (skip reasons become ``skipped/<reason>``)."""
        flat = {
            "rows_read": self.rows_read,
            "pairs_kept": self.pairs_kept,
            "single_segment": self.single_segment,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "train_pairs": self.train_pairs,
            "val_pairs": self.val_pairs,
        }
        flat.update({f"skipped/{reason}": n for reason, n in sorted(self.skipped.items())})
        return flat

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable form (``from_json`` inverts it)."""
        data: dict[str, Any] = {k: v for k, v in self.as_dict().items() if "/" not in k and k != "dropped"}
        data["skipped"] = dict(self.skipped)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DataStats:
        """Inverse of :meth:`to_json`."""
        values = dict(data)
        skipped = Counter({str(k): int(v) for k, v in values.pop("skipped", {}).items()})
        return cls(skipped=skipped, **{k: int(v) for k, v in values.items()})
