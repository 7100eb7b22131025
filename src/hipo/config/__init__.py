"""Typed Hydra configuration: dataclass schemas for every config group, registered in Hydra's ConfigStore.

``register_configs()`` is called by every Hydra entry point before composition. A YAML file of a group extends its
schema through its defaults list (``- /schema/<group>/<name>@_here_``), so a misspelled key fails at composition
with a message naming the key, and a wrongly typed value fails naming the field.
"""

from hipo.config.register import register_configs
from hipo.config.schema import (
    DataConfig,
    LoggerConfig,
    LoraConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainerConfig,
)

__all__ = [
    "DataConfig",
    "LoggerConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainerConfig",
    "register_configs",
]
