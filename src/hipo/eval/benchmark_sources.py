"""Where a benchmark's rows come from: an explicit file, a local copy (``root`` / ``$HIPO_SHARED_DIR``), the hub.

Local copies are looked up before any hub access: ``<root>/<name>/test.jsonl`` for a configured root
(``benchmark.<name>.root`` or ``evaluate.benchmark_root``), then ``$HIPO_SHARED_DIR/data/benchmarks/<name>/test.jsonl``.
The hub is used only when neither exists; an unreachable hub fails at once (a 3 s connection probe, or
``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``: the ``datasets`` cache only), naming the local options.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hipo.errors import UserError

log = logging.getLogger(__name__)

SHARED_DIR_ENV = "HIPO_SHARED_DIR"
HUB_PROBE_TIMEOUT_S = 3.0
_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class BenchmarkError(UserError, ValueError):
    """A benchmark that cannot be evaluated as given (empty file, wrong schema, bad gold answers), naming the file."""


class BenchmarkFileNotFound(UserError, FileNotFoundError):
    """A benchmark file (``path`` or ``<root>/<name>/test.jsonl``) that does not exist."""


class BenchmarkUnavailable(UserError, RuntimeError):
    """No local copy of a benchmark and the hub cannot provide it."""


def local_options_hint(name: str) -> str:
    """How to point a command at a local copy of benchmark ``name`` (the hint of hub failures)."""
    return (
        f"use a local copy: benchmark.{name}.path=FILE (JSONL in the hub dataset's schema), "
        f"evaluate.benchmark_root=DIR (reads DIR/{name}/test.jsonl), or {SHARED_DIR_ENV}=DIR "
        f"(reads DIR/data/benchmarks/{name}/test.jsonl); HF_HUB_OFFLINE=1 reads the datasets cache"
    )


def shared_copy(name: str) -> Path | None:
    """``$HIPO_SHARED_DIR/data/benchmarks/<name>/test.jsonl`` when the variable is set and the file exists."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if not shared:
        return None
    path = Path(shared).expanduser() / "data" / "benchmarks" / name / "test.jsonl"
    return path if path.is_file() else None


def root_copy(name: str, root: str | Path) -> Path:
    """``<root>/<name>/test.jsonl`` (which may not exist: the caller decides)."""
    return Path(root).expanduser() / name / "test.jsonl"


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for each non-blank line; bad JSON or a non-object row raises naming file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                message = f"{path}:{line_number}: invalid JSON ({error.msg} at column {error.colno})"
                raise BenchmarkError(message) from error
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            rows.append((line_number, row))
    return rows


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` asks for cache-only hub access."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in _OFFLINE_ENVS)


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """``(reachable, detail)``: a TCP connection to the hub's host (``$HF_ENDPOINT`` or huggingface.co) within
    ``timeout_s`` seconds (name resolution included)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    outcome: dict[str, str] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome["ok"] = ""
        except OSError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "ok" in outcome:
        return True, f"{host}:{port}"
    return False, f"{host}:{port} {outcome.get('error', f'no answer within {timeout_s:g} s')}"


def read_hub(name: str, hub_id: str, hub_config: str | None, split: str) -> list[tuple[int, dict[str, Any]]]:
    """All rows of a hub dataset split (its only split when ``split`` is absent), after checking the hub is there.

    Raises:
        BenchmarkUnavailable: the hub is unreachable (found in at most ``HUB_PROBE_TIMEOUT_S``) or the load failed.
    """
    import datasets

    if not hub_offline():
        reachable, detail = hub_reachable()
        if not reachable:
            raise BenchmarkUnavailable(
                f"benchmark {name!r}: no local copy, and the hub cannot be reached to load {hub_id!r} ({detail})",
                hint=local_options_hint(name),
            )
    try:
        splits = datasets.load_dataset(hub_id, hub_config)
    except Exception as error:
        raise BenchmarkUnavailable(
            f"benchmark {name!r}: could not load hub dataset {hub_id!r} (config {hub_config!r}): {error}. "
            f"Pass a local JSONL file with benchmark.{name}.path=FILE instead.",
            hint=local_options_hint(name),
        ) from error
    if split not in splits and len(splits) == 1:
        log.info("benchmark %s: hub dataset has no split %r, using its only split %r", name, split, next(iter(splits)))
        split = next(iter(splits))
    if split not in splits:
        raise BenchmarkError(f"benchmark {name!r}: hub dataset {hub_id!r} has no split {split!r}: {list(splits)}")
    return [(index + 1, dict(row)) for index, row in enumerate(splits[split])]
