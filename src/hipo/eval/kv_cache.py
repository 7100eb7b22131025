"""Row-level operations on a Hugging Face ``DynamicCache`` for the decode loop, and the KV-cache memory estimate.

The decode loop (``hipo.eval.decode``) keeps one left-padded cache for all running sequences: every layer holds
keys and values of shape [R, H_kv, T, D] (R rows, T cache columns shared by all rows, padding marked in a separate
[R, T] attention mask). It removes finished rows (``select_rows``), appends newly prefilled rows whose length differs
(``append_rows`` pads the shorter side on the left) and drops leading columns that are padding in every row
(``drop_leading_columns``). Keys are stored after the rotary embedding, so moving them to other columns does not
change their positions: positions are passed explicitly per row. Its layers (``SlackLayer``) keep spare columns, so
that a generated token is written in place rather than copying the whole cache as ``DynamicLayer`` does.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

SLACK_COLUMNS = 64
"""Spare columns a ``SlackLayer`` allocates beyond what it holds."""


class SlackLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views of buffers with spare columns.

    ``DynamicLayer.update`` concatenates, i.e. copies the whole layer for every generated token; here a token is
    written into the next spare column. The buffers are reallocated (one copy, ``SLACK_COLUMNS`` spare columns) when
    they are full, or when the row operations below have replaced ``keys``/``values`` by new tensors.
    """

    key_buffer: torch.Tensor | None = None
    value_buffer: torch.Tensor | None = None

    def _holds(self, rows: int, columns: int) -> bool:
        """Whether ``keys`` still views the buffer from its first column and ``columns`` fit."""
        buffer, keys = self.key_buffer, self.keys
        return (
            buffer is not None
            and keys is not None
            and keys.numel() > 0
            and keys.data_ptr() == buffer.data_ptr()
            and buffer.shape[0] == rows == keys.shape[0]
            and columns <= buffer.shape[2]
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Appends ``key_states``/``value_states`` [R, H, Q, D]; returns all keys and values [R, H, T + Q, D]."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        keys, values = _kv(self)
        held = keys.shape[2] if keys.numel() > 0 else 0
        total = held + key_states.shape[2]
        if not self._holds(key_states.shape[0], total):
            shape = (key_states.shape[0], key_states.shape[1], total + SLACK_COLUMNS, key_states.shape[3])
            self.key_buffer = key_states.new_empty(shape)
            self.value_buffer = value_states.new_empty(shape[:3] + (value_states.shape[3],))
            if held:
                self.key_buffer[:, :, :held] = keys
                self.value_buffer[:, :, :held] = values
        assert self.key_buffer is not None and self.value_buffer is not None
        self.key_buffer[:, :, held:total] = key_states
        self.value_buffer[:, :, held:total] = value_states
        self.keys, self.values = self.key_buffer[:, :, :total], self.value_buffer[:, :, :total]
        return self.keys, self.values


def new_cache() -> DynamicCache:
    """An empty cache whose layers (``SlackLayer``, full attention) are created by the first forward."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = SlackLayer
    return cache


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The initialized layers; raises for cache layouts the row operations do not understand."""
    layers: list[DynamicLayer] = []
    for layer in cache.layers:
        if type(layer) not in (DynamicLayer, SlackLayer):
            raise NotImplementedError(
                f"the decode loop handles DynamicLayer caches only, got {type(layer).__name__}; "
                "use evaluate.engine=vllm for this model"
            )
        assert isinstance(layer, DynamicLayer)
        if layer.is_initialized:
            layers.append(layer)
    return layers


def _kv(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys, values) [R, H, T, D] of an initialized layer."""
    assert layer.keys is not None and layer.values is not None, "an initialized cache layer holds tensors"
    return layer.keys, layer.values


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keeps (or repeats) the rows ``rows`` [R'] (long indices into the batch dimension), in place."""
    for layer in _layers(cache):
        keys, values = _kv(layer)
        layer.keys = keys.index_select(0, rows.to(keys.device))
        layer.values = values.index_select(0, rows.to(values.device))


def _left_pad(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """``tensor`` [R, H, T, D] with ``columns`` zero columns prepended: [R, H, T + columns, D]."""
    if columns == 0:
        return tensor
    shape = (tensor.shape[0], tensor.shape[1], columns, tensor.shape[3])
    return torch.cat([tensor.new_zeros(shape), tensor], dim=2)


def append_rows(cache: DynamicCache, other: DynamicCache) -> None:
    """Appends ``other``'s rows [R2, H, T2, D] below ``cache``'s [R1, H, T1, D], in place.

    The shorter of the two is left-padded with zero columns to max(T1, T2); the caller pads the attention masks the
    same way (``cache_columns`` gives T), so the padding is never attended to.
    """
    mine, theirs = _layers(cache), _layers(other)
    if len(mine) != len(theirs):
        raise ValueError(f"caches with different layer counts: {len(mine)} vs {len(theirs)}")
    for layer, extra in zip(mine, theirs, strict=True):
        (keys, values), (extra_keys, extra_values) = _kv(layer), _kv(extra)
        width = max(keys.shape[2], extra_keys.shape[2])
        layer.keys = torch.cat(
            [_left_pad(keys, width - keys.shape[2]), _left_pad(extra_keys, width - extra_keys.shape[2])]
        )
        layer.values = torch.cat(
            [_left_pad(values, width - values.shape[2]), _left_pad(extra_values, width - extra_values.shape[2])]
        )


def drop_leading_columns(cache: DynamicCache, columns: int) -> None:
    """Removes the first ``columns`` cache columns of every layer ([R, H, T, D] -> [R, H, T - columns, D])."""
    if columns <= 0:
        return
    for layer in _layers(cache):
        keys, values = _kv(layer)
        layer.keys, layer.values = keys[:, :, columns:], values[:, :, columns:]


def cache_columns(cache: DynamicCache) -> int:
    """T, the number of cache columns (0 for an empty cache)."""
    layers = _layers(cache)
    return int(_kv(layers[0])[0].shape[2]) if layers else 0


# ---- memory ---------------------------------------------------------------------------------------------------------
def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys + values one token occupies in the cache, over all layers, in the model's dtype."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_attention_heads", 1) or 1
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layers = config.num_hidden_layers
    dtype_bytes = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def default_memory_budget(device: torch.device) -> int:
    """Bytes the running sequences may take: half the free GPU memory, or a quarter of the free RAM (≤ 4 GiB)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil ships with the project's stack
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(available // 4, 4 * 2**30)


def slots_for_budget(model: Any, max_sequence_tokens: int, budget_bytes: int, cap: int) -> int:
    """Concurrent sequences that fit ``budget_bytes``: each holds up to ``max_sequence_tokens`` cache columns.

    Per sequence: its KV cache (``kv_bytes_per_token`` × prompt + new tokens + spare columns) and the fp32 logits and
    probabilities of one step (2 × vocabulary × 4 bytes). The result is clamped to [1, ``cap``].
    """
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    per_sequence = kv_bytes_per_token(model) * (max_sequence_tokens + SLACK_COLUMNS) + 8 * vocab
    return max(1, min(cap, budget_bytes // max(per_sequence, 1)))
