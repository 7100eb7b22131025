"""Typed Hydra configuration: settings schemas registered in one place, ``_target_`` nodes checked by constructor.

``register_configs()`` (:mod:`hipo.config.register`) is called by every Hydra entry point before composition. A
YAML file of a settings group extends its schema through its defaults list (``- /schema/<group>/<name>@_here_``), so
a misspelled key fails at composition naming the key. A ``_target_`` node is checked against the signature of the
class it builds (:func:`hipo.config.components.check_components`) before anything loads.
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
