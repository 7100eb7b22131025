"""The paper's data, ``prhegde/preference-data-math-stack-exchange``, from the hub or a local file of that schema.

Rows have ``question``, ``chosen``, ``rejected`` and possibly the decomposed ``Rq_a … Ra_b`` columns. Both paths
go through ``datasets.load_dataset`` (a hub id, or the ``json`` / ``parquet`` / ``csv`` builder for a local file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hipo.data.row_errors import RowLocation
from hipo.data.sources.base import Row, file_digest

MATH_STACK_EXCHANGE = "prhegde/preference-data-math-stack-exchange"
_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class HubSource:
    """A ``datasets`` dataset: a hub id (``split``, ``revision``) or a local file in the same schema (``path``).

    Args:
        dataset_id: hub id (used when ``path`` is None).
        path: a local ``.jsonl`` / ``.json`` / ``.parquet`` / ``.csv`` file.
        split: the split to read.
        revision: hub revision (commit, tag, branch) for reproducibility.
        limit: read at most this many rows.
    """

    def __init__(
        self,
        dataset_id: str = MATH_STACK_EXCHANGE,
        path: str | Path | None = None,
        split: str = "train",
        revision: str | None = None,
        limit: int | None = None,
    ) -> None:
        self.dataset_id = dataset_id
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            if not self.path.is_file():
                raise FileNotFoundError(f"local dataset file not found: {self.path}")
            if self.path.suffix not in _BUILDERS:
                raise ValueError(f"unsupported dataset file type {self.path.suffix!r} (use {sorted(_BUILDERS)})")
        self.split = split
        self.revision = revision
        self.limit = limit
        self.name = self.path.name if self.path is not None else f"{dataset_id}[{split}]"
        self._dataset: Any = None

    def _load(self) -> Any:
        if self._dataset is None:
            from datasets import load_dataset

            if self.path is not None:
                builder = _BUILDERS[self.path.suffix]
                self._dataset = load_dataset(builder, data_files=str(self.path), split="train")
            else:
                self._dataset = load_dataset(self.dataset_id, split=self.split, revision=self.revision)
        return self._dataset

    def rows(self) -> Iterator[tuple[RowLocation, Row]]:
        dataset = self._load()
        source = str(self.path) if self.path is not None else f"{self.dataset_id}[{self.split}]"
        # A JSON-lines file's row i is its line i only without blank lines; datasets drops them, so name the row.
        for index, row in enumerate(dataset):
            if self.limit is not None and index >= self.limit:
                return
            yield RowLocation(source, index + 1), row

    def fingerprint(self) -> str:
        if self.path is not None:
            return f"file:{file_digest(self.path)}:limit={self.limit}"
        return f"hub:{self.dataset_id}:{self.split}:{self.revision}:{self._load()._fingerprint}:limit={self.limit}"
