"""An on-disk JSON cache of LLM replies, keyed by a hash of (model, full request), written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def request_key(model: str, payload: Any, namespace: str = "") -> str:
    """SHA-256 hex digest of the model, a namespace and the JSON of the full request payload (sorted keys)."""
    blob = json.dumps({"namespace": namespace, "model": model, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JsonCache:
    """One JSON file per key under ``directory/<first two hex digits>/<key>.json``.

    Writes go to a temporary file in the same folder, then ``os.replace`` renames it: a reader never sees a half
    written entry and concurrent writers of the same key leave one complete file. A corrupt entry reads as a miss.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        """The cached value for ``key``, or None when absent or unreadable."""
        path = self._path(key)
        try:
            with path.open(encoding="utf-8") as handle:
                return json.load(handle)["value"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, value: Any) -> None:
        """Stores a JSON-serializable ``value`` under ``key`` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8")
        try:
            with handle:
                json.dump({"key": key, "value": value}, handle, ensure_ascii=False)
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.exists() else 0
