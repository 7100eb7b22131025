"""On-disk cache of prepared (segmented + tokenized) data under ``cache_dir()/data/<fingerprint>.npz``.

One ``.npz`` file per fingerprint holds every token array plus a JSON header (stats and the validation pairs'
text). It is written to a temporary file in the same folder and moved into place with ``os.replace``, so a crash
never leaves a half-written entry that a later run would read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hipo.data.data_stats import DataStats
from hipo.data.segmented import SegmentedPair, SegmentedResponse, Span
from hipo.data.tokenize import TokenizedPair, TokenizedSequence
from hipo.models.embedded import cache_dir

CACHE_FORMAT_VERSION = 2  # 2: single responses (``{prefix}_has_rejected``)


def data_cache_root() -> Path:
    """``cache_dir()/data`` (``$HIPO_CACHE/data`` or ``~/.cache/hipo/data``)."""
    return cache_dir() / "data"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 over the tokenizer's full definition (vocab, merges, normalizer, …), chat template and specials."""
    digest = hashlib.sha256()
    digest.update(type(tokenizer).__name__.encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    digest.update(str(getattr(tokenizer, "chat_template", None)).encode("utf-8"))
    for name in ("eos_token", "pad_token", "bos_token"):
        digest.update(f"{name}={getattr(tokenizer, name, None)}".encode())
    return digest.hexdigest()


def fingerprint(parts: dict[str, Any]) -> str:
    """A short hash of a JSON-serializable description of everything the prepared data depends on."""
    text = json.dumps({"cache_format": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _response_json(response: SegmentedResponse) -> dict[str, Any]:
    return {"text": response.text, "spans": [asdict(s) for s in response.spans]}


def pair_to_json(pair: SegmentedPair) -> dict[str, Any]:
    """A JSON-serializable form of a :class:`SegmentedPair` (``pair_from_json`` inverts it)."""
    return {
        "prompt": pair.prompt,
        "chosen": _response_json(pair.chosen),
        "rejected": _response_json(pair.rejected) if pair.rejected is not None else None,
        "meta": pair.meta,
    }


def pair_from_json(data: dict[str, Any]) -> SegmentedPair:
    """Inverse of :func:`pair_to_json`."""

    def response(r: dict[str, Any]) -> SegmentedResponse:
        return SegmentedResponse(r["text"], tuple(Span(**s) for s in r["spans"]))

    rejected = response(data["rejected"]) if data["rejected"] is not None else None
    return SegmentedPair(data["prompt"], response(data["chosen"]), rejected, dict(data["meta"]))


def _pack(prefix: str, pairs: list[TokenizedPair]) -> dict[str, np.ndarray]:
    """The sequences of ``pairs`` back to back (chosen, then rejected where there is one) and which pairs have one."""
    sequences = [s for p in pairs for s in (p.chosen, p.rejected) if s is not None]
    return {
        f"{prefix}_ids": np.concatenate([s.input_ids for s in sequences]) if sequences else np.zeros(0, np.int32),
        f"{prefix}_segments": np.concatenate([s.segment_ids for s in sequences]) if sequences else np.zeros(0, np.int8),
        f"{prefix}_lengths": np.asarray([len(s) for s in sequences], dtype=np.int64),
        f"{prefix}_prompt_lengths": np.asarray([s.prompt_length for s in sequences], dtype=np.int64),
        f"{prefix}_has_rejected": np.asarray([p.rejected is not None for p in pairs], dtype=bool),
    }


def _unpack(prefix: str, arrays: Any) -> list[TokenizedPair]:
    ids, segments = arrays[f"{prefix}_ids"], arrays[f"{prefix}_segments"]
    lengths, prompt_lengths = arrays[f"{prefix}_lengths"], arrays[f"{prefix}_prompt_lengths"]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    sequences = iter(
        TokenizedSequence(ids[bounds[i] : bounds[i + 1]], segments[bounds[i] : bounds[i + 1]], int(prompt_lengths[i]))
        for i in range(len(lengths))
    )
    return [
        TokenizedPair(next(sequences), next(sequences) if bool(has_rejected) else None, index)
        for index, has_rejected in enumerate(arrays[f"{prefix}_has_rejected"])
    ]


def save_prepared(
    path: Path,
    train: list[TokenizedPair],
    val: list[TokenizedPair],
    val_pairs: list[SegmentedPair],
    stats: DataStats,
    description: dict[str, Any],
) -> None:
    """Writes one cache entry atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "stats": stats.to_json(),
        "val_pairs": [pair_to_json(p) for p in val_pairs],
        "description": description,
    }
    arrays: dict[str, Any] = {**_pack("train", train), **_pack("val", val)}
    arrays["header"] = np.frombuffer(json.dumps(header, default=str).encode("utf-8"), dtype=np.uint8)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_prepared(path: Path) -> tuple[list[TokenizedPair], list[TokenizedPair], list[SegmentedPair], DataStats]:
    """Reads a cache entry written by :func:`save_prepared`: (train, val, validation SegmentedPairs, stats)."""
    with np.load(path) as arrays:
        header = json.loads(arrays["header"].tobytes().decode("utf-8"))
        train, val = _unpack("train", arrays), _unpack("val", arrays)
    val_pairs = [pair_from_json(p) for p in header["val_pairs"]]
    return train, val, val_pairs, DataStats.from_json(header["stats"])
