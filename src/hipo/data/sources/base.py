"""The row-source interface: an iterable of ``(RowLocation, row mapping)`` plus a content fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hipo.data.row_errors import RowLocation

Row = Mapping[str, Any]


@runtime_checkable
class RowSource(Protocol):
    """Yields raw rows with their provenance; ``fingerprint()`` changes whenever the rows would."""

    name: str

    def rows(self) -> Iterator[tuple[RowLocation, Row]]:
        """The rows, in order, each with its 1-based location."""
        ...

    def fingerprint(self) -> str:
        """A string that identifies the rows' content (hashed into the prepared-data cache key)."""
        ...


def file_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
