"""Flattening a resolved config into MLflow params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hipo.config.secrets import REDACTED, is_secret_key

MAX_PARAM_VALUE_CHARS = 6000
# Mappings of named ``_target_`` nodes logged as one param, the names of their non-null entries
# (``trainer.callbacks`` -> ``[exact_resume, ..., progress_bar]``): their settings are paths and class names that
# would fill the params table; they stay in the run's ``config/resolved.yaml`` artifact.
NAMED_NODES = ("trainer.callbacks",)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to string values: ``{"loss": {"beta": 0.2}}`` -> ``{"loss.beta": "0.2"}``.

    Lists are kept as one value (``[0.25, 0.25, 0.2, 0.3]``) so a weight vector stays one comparable param, and so
    are the mappings of :data:`NAMED_NODES` (as the list of their enabled names).
    Values longer than MLflow's limit are truncated with a marker; secret-named keys are redacted.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in NAMED_NODES and isinstance(value, Mapping):
            value = [str(entry) for entry, node in value.items() if node is not None]
        elif isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
            continue
        text = REDACTED if is_secret_key(name) and value is not None else str(value)
        if len(text) > MAX_PARAM_VALUE_CHARS:
            text = text[: MAX_PARAM_VALUE_CHARS - 14] + "...[truncated]"
        flat[name] = text
    return flat
