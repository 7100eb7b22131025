"""Silences third-party chatter that says nothing about the user's run (advertising tips, internal deprecations)."""

from __future__ import annotations

import logging
import warnings

_DROPPED_LOG_PREFIXES = ("💡 Tip:",)
_IGNORED_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # lightning's own use of a torch pytree API
    r".*is_gradient_checkpointing.*deprecated",  # peft calling a transformers alias
    r".*overridden `transfer_batch_to_device`",
    r".*modules? in eval mode at the start of training",  # the frozen reference copy, by design
    r".*recommended to use `self.log\('val/.*sync_dist=True",  # held-out sums are all-reduced exactly before logging
)


class _DropPrefixes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_DROPPED_LOG_PREFIXES)


def quiet_third_party() -> None:
    """Installs the filters (idempotent)."""
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in target.filters):
            target.addFilter(_DropPrefixes())
