"""The cached reference: per-segment reference log-probs computed once, stored on disk, reused by every later run.

Before training, the live reference (a no-grad pass) scores every training and validation sequence of a data module
in batches; the rows (``SegmentLogps``: sums and counts, [S+1] each) go to
``cache_dir()/refcache/<fingerprint>.npz``. The fingerprint hashes everything the values depend on
(:mod:`hipo.training.ref_cache_key`), plus the cache format and the number of segments. A sweep of losses x
seeds sharing model and data therefore does ONE reference pass.

Lookup is by a per-sequence **content signature** (a 64-bit hash of every token's id, segment id and position),
which is layout-independent (padded and packed batches give the same signature). The batch's ``example_ids`` could
index the table too, but train and validation ids collide and KTO's mismatched KL sequences have none; signatures
serve all three and also verify that a row really belongs to the sequence it is used for. A sequence that is not in
the cache (KTO's KL sequences -- built per batch from another example's response -- or data that changed under a
stale table) is scored live for just those rows; KL rows are expected, any other miss logs a warning once.

Stale and broken caches are never used silently: a different fingerprint names a different file (recomputed); a
file that is truncated, corrupted (checksum over every array) or inconsistent with its header is reported with a
warning and recomputed. Files are written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hipo.data.batch import TokenBatch
from hipo.data.collate import collate_sequences
from hipo.data.tokenize import TokenizedPair, TokenizedSequence
from hipo.losses.types import SegmentLogps
from hipo.training.ref_cache_key import cache_key, refcache_root

log = logging.getLogger(__name__)

ReferenceFn = Callable[[TokenBatch], SegmentLogps]
_MASK = (1 << 63) - 1  # keeps right shifts logical on int64
_K1, _K2, _K3 = 0x9E3779B97F4A7C15 & _MASK, 0xC2B2AE3D27D4EB4F & _MASK, 0x165667B19E3779F9 & _MASK
_K4, _K5 = 0x94D049BB133111EB & _MASK, 0xBF58476D1CE4E5B9 & _MASK


class RefCacheError(ValueError):
    """A reference cache file that cannot be used (truncated, corrupted, or for other data)."""


# ---- signatures ------------------------------------------------------------------------------------------------------
def sequence_signatures(batch: TokenBatch) -> torch.Tensor:
    """A 64-bit content hash per sequence, independent of the padded/packed layout.

    Each real token contributes ``mix(id, segment id, position)`` (a splitmix-style integer mixer); a sequence's
    signature is the wrapping int64 sum of its tokens' contributions plus a mixed length term.

    Returns:
        [N] int64 signatures of sequences ``0..num_sequences-1``.
    """
    ids = batch.input_ids.long()
    value = ids * _K1 + (batch.segment_ids.long() + 2) * _K2 + (batch.position_ids.long() + 1) * _K3
    value = value ^ ((value >> 31) & ((1 << 33) - 1))
    value = value * _K4
    value = value ^ ((value >> 29) & ((1 << 35) - 1))
    value = value * _K5
    real = batch.sequence_ids >= 0
    out = torch.zeros(batch.num_sequences, dtype=torch.long, device=ids.device)
    out.index_add_(0, batch.sequence_ids[real].long(), value[real])
    lengths = torch.zeros(batch.num_sequences, dtype=torch.long, device=ids.device)
    lengths.index_add_(0, batch.sequence_ids[real].long(), torch.ones_like(value[real]))
    return out + lengths * _K5


def select_sequences(batch: TokenBatch, indices: Sequence[int], pad_id: int = 0) -> TokenBatch:
    """A new batch holding only sequences ``indices`` of ``batch`` (same layout kind), renumbered ``0..len-1``."""
    cpu = batch.to("cpu")
    sequences = []
    for index in indices:
        mask = cpu.sequence_ids == index
        ids, segments = cpu.input_ids[mask].numpy(), cpu.segment_ids[mask].numpy()
        scored = np.flatnonzero(segments >= 0)
        sequences.append(TokenizedSequence(ids, segments, int(scored[0]) if len(scored) else len(ids)))
    pack_length = int(batch.input_ids.shape[1])
    sub = collate_sequences(sequences, list(range(len(indices))), pad_id, batch.num_segments, batch.packed, pack_length)
    return sub.to(batch.input_ids.device)


# ---- the table -------------------------------------------------------------------------------------------------------
class ReferenceTable:
    """Reference rows keyed by sequence signature.

    Args:
        signatures: [M] int64.
        sums: [M, S+1] float reference log-prob sums.
        counts: [M, S+1] token counts.
    """

    def __init__(self, signatures: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
        if not (len(signatures) == len(sums) == len(counts)) or sums.shape != counts.shape or sums.ndim != 2:
            raise RefCacheError(f"inconsistent table shapes {signatures.shape}, {sums.shape}, {counts.shape}")
        self.signatures, self.sums, self.counts = signatures, sums, counts
        self.index = {int(s): i for i, s in enumerate(signatures.tolist())}

    def __len__(self) -> int:
        return len(self.signatures)


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode() + str(arrays[key].dtype).encode() + str(arrays[key].shape).encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def save_table(path: Path, table: ReferenceTable, header: dict[str, Any]) -> None:
    """Writes the table atomically with a header holding a checksum of every array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"signatures": table.signatures, "sums": table.sums, "counts": table.counts}
    full_header = {**header, "rows": len(table), "checksum": _checksum(arrays)}
    payload = np.frombuffer(json.dumps(full_header, default=str).encode("utf-8"), dtype=np.uint8)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            # The arrays by name (not **arrays: mypy would match that dict against savez's bool allow_pickle).
            np.savez(out, header=payload, signatures=table.signatures, sums=table.sums, counts=table.counts)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_table(path: Path, key: str) -> ReferenceTable:
    """Reads and verifies a table written by :func:`save_table`.

    Raises:
        RefCacheError: the file is truncated or unreadable, lacks an array, has another key, or fails its checksum.
    """
    try:
        with np.load(path) as data:
            header = json.loads(data["header"].tobytes().decode("utf-8"))
            arrays = {name: data[name] for name in ("signatures", "sums", "counts")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise RefCacheError(f"{path}: unreadable reference cache ({type(error).__name__}: {error})") from error
    if header.get("key") != key:
        raise RefCacheError(f"{path}: header key {header.get('key')!r} differs from the expected {key!r}")
    if header.get("rows") != len(arrays["signatures"]) or header.get("checksum") != _checksum(arrays):
        raise RefCacheError(f"{path}: checksum or row count mismatch (a partial or corrupted file)")
    return ReferenceTable(arrays["signatures"], arrays["sums"], arrays["counts"])


def compute_table(
    live_reference: ReferenceFn,
    sequences: Sequence[TokenizedSequence],
    num_segments: int,
    pad_id: int,
    batch_size: int = 16,
    packed: bool = False,
    pack_length: int = 2048,
    device: torch.device | str = "cpu",
) -> ReferenceTable:
    """Scores ``sequences`` with the live reference in batches (longest first, so padded batches waste little)."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    signatures, sums, counts = [], [], []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [sequences[i] for i in order[start : start + batch_size]]
            batch = collate_sequences(chunk, list(range(len(chunk))), pad_id, num_segments, packed, pack_length)
            batch = batch.to(device)
            rows = live_reference(batch)
            signatures.append(sequence_signatures(batch).cpu())
            sums.append(rows.sums.detach().float().cpu())
            counts.append(rows.counts.detach().cpu())
    return ReferenceTable(
        torch.cat(signatures).numpy(), torch.cat(sums).numpy(), torch.cat(counts).numpy().astype(np.int64)
    )


# ---- the callable ----------------------------------------------------------------------------------------------------
class CachedReference:
    """``batch -> SegmentLogps`` from the table; sequences missing from it are scored by ``live_reference``.

    Args:
        table: the precomputed rows.
        live_reference: the live reference (for KTO's KL sequences and any other miss).
        pad_id: pad id for re-collated sub-batches of missing sequences.
        counts_dtype: dtype of the returned counts (the policy pooling's, so the loss's count check compares equal).
    """

    def __init__(
        self,
        table: ReferenceTable,
        live_reference: ReferenceFn | None,
        pad_id: int = 0,
        counts_dtype: torch.dtype = torch.long,
    ) -> None:
        self.table, self.live_reference, self.pad_id, self.counts_dtype = table, live_reference, pad_id, counts_dtype
        self._sums = torch.from_numpy(table.sums)
        self._counts = torch.from_numpy(table.counts)
        self.hits = 0
        self.live_rows = 0
        self._warned = False

    def __call__(self, batch: TokenBatch) -> SegmentLogps:
        signatures = sequence_signatures(batch).tolist()
        rows = [self.table.index.get(int(s), -1) for s in signatures]
        found = torch.tensor([r for r in rows if r >= 0], dtype=torch.long)
        missing = [n for n, r in enumerate(rows) if r < 0]
        device = batch.input_ids.device
        sums = torch.empty(batch.num_sequences, self._sums.shape[1], dtype=self._sums.dtype)
        counts = torch.empty(batch.num_sequences, self._counts.shape[1], dtype=self._counts.dtype)
        present = torch.tensor([n for n, r in enumerate(rows) if r >= 0], dtype=torch.long)
        sums[present], counts[present] = self._sums[found], self._counts[found]
        sums, counts = sums.to(device), counts.to(device)
        self.hits += len(found)
        if missing:
            self._fill_live(batch, missing, sums, counts)
        return SegmentLogps(sums, counts.to(self.counts_dtype))

    def _fill_live(self, batch: TokenBatch, missing: list[int], sums: torch.Tensor, counts: torch.Tensor) -> None:
        first_kl = batch.num_sequences - batch.num_kl_sequences
        unexpected = [n for n in missing if n < first_kl]
        if unexpected and not self._warned:
            log.warning(
                "reference cache: %d sequence(s) of a batch are not in the cache (new or changed data?); "
                "scoring them live",
                len(unexpected),
            )
            self._warned = True
        if self.live_reference is None:
            raise RefCacheError(f"{len(missing)} sequence(s) are not in the reference cache and no live reference")
        live = self.live_reference(select_sequences(batch, missing, self.pad_id))
        index = torch.tensor(missing, dtype=torch.long, device=sums.device)
        sums[index] = live.sums.detach().to(sums.dtype)
        counts[index] = live.counts.detach().to(counts.dtype)
        self.live_rows += len(missing)


def pair_sequences(pairs: Iterable[TokenizedPair]) -> list[TokenizedSequence]:
    """Chosen and rejected sequences of ``pairs``."""
    return [s for p in pairs for s in p.paired_sides()]


def load_or_compute(
    live_reference: ReferenceFn,
    sequences: Sequence[TokenizedSequence],
    fingerprint_parts: dict[str, Any],
    num_segments: int,
    pad_id: int,
    batch_size: int = 16,
    packed: bool = False,
    pack_length: int = 2048,
    device: torch.device | str = "cpu",
    cache_root: Path | None = None,
    use_cache: bool = True,
) -> tuple[ReferenceTable, bool, Path]:
    """The table for ``fingerprint_parts``: read from disk when valid, else computed (and written).

    Returns:
        (table, whether it came from disk, its path).
    """
    key = cache_key(fingerprint_parts, num_segments)
    path = (cache_root if cache_root is not None else refcache_root()) / f"{key}.npz"
    if use_cache and path.exists():
        try:
            table = load_table(path, key)
            log.info("reference log-probs read from the cache %s (%d sequences)", path, len(table))
            return table, True, path
        except RefCacheError as error:
            log.warning("%s; recomputing the reference log-probs", error)
    started = time.perf_counter()
    table = compute_table(live_reference, sequences, num_segments, pad_id, batch_size, packed, pack_length, device)
    elapsed = time.perf_counter() - started
    if use_cache:
        header = {"key": key, "parts": fingerprint_parts, "num_segments": num_segments, "compute_s": elapsed}
        save_table(path, table, header)
        log.info("reference log-probs of %d sequences computed in %.1f s, cached at %s", len(table), elapsed, path)
    return table, False, path


def build_cached_reference(
    live_reference: ReferenceFn,
    datamodule: Any,
    fingerprint_parts: dict[str, Any],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    cache_root: Path | None = None,
    counts_dtype: torch.dtype = torch.long,
) -> CachedReference:
    """A :class:`CachedReference` over every training and validation sequence of a (set-up) data module.

    Args:
        live_reference: the no-grad live reference (also scores cache misses such as KTO's KL sequences).
        datamodule: a :class:`hipo.data.datamodule.PreferenceDataModule` (``setup`` is called if needed).
        fingerprint_parts: what the reference depends on (see :func:`reference_fingerprint_parts`); the prepared
            data's fingerprint is added as ``prepared_data`` when absent.
        batch_size: sequences per reference batch.
        device: where the reference runs.
        cache_root: the cache folder (default ``cache_dir()/refcache``).
        counts_dtype: dtype of the returned counts (match the policy's pooling).
    """
    datamodule.setup("fit")
    prepared = datamodule.prepared
    parts = dict(fingerprint_parts)
    parts.setdefault("prepared_data", prepared.fingerprint)
    pad_id = int(datamodule.tokenizer.pad_token_id)
    num_segments = datamodule.preference_tokenizer.num_segments
    sequences = pair_sequences(prepared.train) + pair_sequences(prepared.val)
    table, _, _ = load_or_compute(
        live_reference,
        sequences,
        parts,
        num_segments,
        pad_id,
        batch_size=batch_size,
        packed=bool(datamodule.packed),
        pack_length=int(datamodule.pack_length),
        device=device,
        cache_root=cache_root,
    )
    return CachedReference(table, live_reference, pad_id=pad_id, counts_dtype=counts_dtype)
