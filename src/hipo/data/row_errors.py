"""Where a row came from, and the errors that name it (file, line, field)."""

from __future__ import annotations

from dataclasses import dataclass

from hipo.errors import UserError


@dataclass(frozen=True)
class RowLocation:
    """Provenance of one raw row: the source (file path or dataset id) and its 1-based row/line number."""

    source: str
    row: int

    def __str__(self) -> str:
        return f"{self.source}:{self.row}"


class DataError(UserError, ValueError):
    """Bad input data. The message names the file/dataset, the 1-based line/row and the field when known.

    Args:
        message: what is wrong.
        location: the row where it happened.
        field: the offending field (column) name.
        hint: how to fix it, when the data suggests it (e.g. another segmenter).
    """

    def __init__(
        self, message: str, location: RowLocation | None = None, field: str | None = None, hint: str | None = None
    ) -> None:
        self.reason = message
        self.location = location
        self.field = field
        where = str(location) if location is not None else "<unknown source>"
        what = f" field {field!r}:" if field is not None else ""
        super().__init__(f"{where}:{what} {message}", hint=hint)


class SegmentationError(DataError):
    """A response whose segments cannot be found (subject to the segmenter's ``on_failure`` policy)."""
