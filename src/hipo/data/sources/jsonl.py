"""A JSON-lines file of preference rows (``{prompt, chosen, rejected}`` or pre-decomposed ``Rq_a … Ra_b``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from hipo.data.row_errors import DataError, RowLocation
from hipo.data.sources.base import Row, file_digest


class JsonlSource:
    """Reads one JSON object per line (blank lines are skipped; line numbers are 1-based file lines).

    Which fields a row must have is the segmenter's business (it names the missing field and the row); this
    source only guarantees that every non-blank line is a JSON object, else a :class:`DataError` naming the file
    and the line.

    Args:
        path: the ``.jsonl`` file.
        limit: read at most this many rows.
    """

    def __init__(self, path: str | Path, limit: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL data file not found: {self.path}")
        self.limit = limit
        self.name = self.path.name

    def rows(self) -> Iterator[tuple[RowLocation, Row]]:
        count = 0
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if self.limit is not None and count >= self.limit:
                    return
                if not line.strip():
                    continue
                location = RowLocation(str(self.path), number)
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"malformed JSON ({error.msg} at column {error.colno})", location) from None
                if not isinstance(row, dict):
                    raise DataError(f"expected a JSON object, got {type(row).__name__}", location)
                count += 1
                yield location, row

    def fingerprint(self) -> str:
        return f"jsonl:{file_digest(self.path)}:limit={self.limit}"
