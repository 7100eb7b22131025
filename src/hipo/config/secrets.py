"""Secrets never enter a config: API keys are read from environment variables that the config names.

Everything a config holds is written somewhere -- MLflow params and the ``config/resolved.yaml`` artifact, the
``hipo.overrides`` tag and run names, Hydra's ``.hydra/*.yaml`` and job log, a sweep's ``multirun.yaml`` -- so a
key given as a config value would be persisted many times over. Hence:

* a command-line override that sets a secret-named key (``…api_key=…``, ``…password=…``) is refused before Hydra
  sees it, with a message that names the key but never echoes the value (``refuse_secret_overrides``);
* the config schemas have no field for a secret, only ``api_key_env`` (the variable's *name*);
* as a second line of defence, whatever writes a config redacts secret-named keys (``redact_secrets``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[redacted]"

# The last component of a dotted key that holds a secret (``api_key_env`` holds a variable name: not a secret).
_SECRET_NAME = re.compile(
    r"^(?:api_?key|access_?token|auth_?token|hf_?token|bearer_?token|secret|secret_?key|client_?secret|password)$",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a (dotted) config key names a secret: ``evaluate.judge.client.api_key`` -> True."""
    return bool(_SECRET_NAME.match(str(key).rsplit(".", 1)[-1]))


def _override_key(override: str) -> str | None:
    """The key of a Hydra override ``[+|++|~]key=value`` (None for flags such as ``-m``)."""
    if override.startswith("-") or "=" not in override:
        return None
    return override.split("=", 1)[0].lstrip("+~").strip()


def secret_overrides(overrides: Iterable[str]) -> list[str]:
    """The keys of the overrides that set a secret (the values are not returned)."""
    return [key for key in (_override_key(o) for o in overrides) if key is not None and is_secret_key(key)]


def secret_refusal(keys: list[str]) -> tuple[str, str]:
    """The one-line error and hint for secrets given as overrides (values never included)."""
    example = keys[0].rsplit(".", 1)[0] + ".api_key_env" if "." in keys[0] else "api_key_env"
    message = (
        f"{', '.join(keys)}: secrets are not taken as config values (they would be written to MLflow, Hydra's "
        "output files and logs)"
    )
    hint = f"export the key in an environment variable and name that variable: {example}=MY_KEY_VAR"
    return message, hint


def redact_secrets(config: Any) -> Any:
    """A copy of a nested dict/list config with the value of every secret-named key replaced by ``[redacted]``."""
    if isinstance(config, Mapping):
        return {
            key: (REDACTED if is_secret_key(str(key)) and value is not None else redact_secrets(value))
            for key, value in config.items()
        }
    if isinstance(config, list | tuple):
        return [redact_secrets(value) for value in config]
    return config


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    """Overrides with the value of every secret-setting one replaced by ``[redacted]``."""
    redacted = []
    for override in overrides:
        key = _override_key(override)
        if key is not None and is_secret_key(key):
            override = f"{override.split('=', 1)[0]}={REDACTED}"
        redacted.append(override)
    return redacted
