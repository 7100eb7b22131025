"""Config nodes that build objects (``_target_``): their schemas are generated from the constructors.

A component (a loss, a weight scheme, a segmenter, a row source, a chat client, your own class) is configured by one
YAML node holding ``_target_`` and the constructor's arguments; nothing restates those arguments in Python. Before
any data or model is loaded, :func:`check_components` walks the composed config and checks every ``_target_`` node
against its constructor's signature: the target imports, each key is a parameter (or a config-only label such as
``name``) and each value has the parameter's type. A mistake fails in a second with one line naming the key::

    segmenter.answer_windw: not a parameter of hipo.data.segmenters.RulesSegmenter (its parameters: ...)
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from hipo.errors import ConfigError

TARGET = "_target_"
LABEL_KEYS = ("name",)  # config-only labels a component node may carry; never passed to the constructor
_INSTANTIATE_FLAGS = ("_recursive_", "_convert_", "_partial_", "_args_")  # read by Hydra, not the constructor
_PRIMITIVES: tuple[type, ...] = (int, float, str, bool)


def _config_type(annotation: Any) -> Any:
    """The OmegaConf field type of a constructor annotation: primitives, optionals and containers of them, else Any.

    ``Path`` becomes ``str``; ``Sequence[str]`` becomes ``list[str]``; ``Mapping[str, float] | None`` becomes
    ``dict[str, float] | None``; classes, callables and literals are not checked here (the constructor checks them).
    """
    origin = typing.get_origin(annotation)
    if annotation is Path:
        return str
    if annotation in _PRIMITIVES:
        return annotation
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        mapped = {_config_type(arg) for arg in members}
        optional = len(members) < len(typing.get_args(annotation))
        if len(mapped) != 1 or Any in mapped:
            return Any
        (single,) = mapped
        return single | None if optional else single
    args = typing.get_args(annotation)
    if origin in (list, tuple, Sequence) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        element = _config_type(args[0]) if args else Any
        return list[element] if element in _PRIMITIVES else list[Any]  # type: ignore[valid-type]
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        value = _config_type(args[1]) if len(args) == 2 else Any
        return dict[str, value] if value in _PRIMITIVES else dict[str, Any]  # type: ignore[valid-type]
    return Any


@cache
def constructor_schema(target: type | typing.Callable[..., Any]) -> type:
    """A dataclass with ``_target_`` and one field per parameter of ``target`` (typed, all ``MISSING``).

    Only used to check nodes: defaults live in the YAML file and in the constructor, never here.
    """
    signature = inspect.signature(target)
    function = getattr(target, "__init__") if isinstance(target, type) else target  # noqa: B009 - mypy refuses `.__init__` on a class
    hints = typing.get_type_hints(function)
    fields: list[tuple[str, Any, Any]] = [(TARGET, str, dataclasses.field(default=MISSING))]
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        fields.append((name, _config_type(hints.get(name, Any)), dataclasses.field(default=MISSING)))
    return dataclasses.make_dataclass(f"{getattr(target, '__name__', 'target')}Schema", fields)


def _accepts_any_keyword(target: Any) -> bool:
    """True when the constructor takes ``**kwargs`` (then unknown keys cannot be told from mistakes)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values())


def _has_signature(target: Any) -> bool:
    """False for the few callables Python cannot introspect (some builtins): those nodes are not checked."""
    try:
        inspect.signature(target)
    except (TypeError, ValueError):
        return False
    return True


def import_target(path: str, where: str) -> Any:
    """The object named by an import path (``package.module.Name``); a one-line ``ConfigError`` naming ``where``."""
    module_path, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_path)
    except Exception as error:  # ImportError, or whatever the module raises while importing
        raise ConfigError(f"{where}={path}: cannot import {module_path} ({type(error).__name__}: {error})") from None
    if not hasattr(module, name):
        raise ConfigError(f"{where}={path}: module {module_path} has no {name!r}")
    return getattr(module, name)


def config_only_keys(node: DictConfig) -> tuple[str, ...]:
    """Keys of a settings node that are not constructor arguments (labels, values others interpolate).

    A plain component node has none besides :data:`LABEL_KEYS`. A settings schema that also builds an object (the
    Trainer, the data module) names its other keys in a ``CONFIG_ONLY_KEYS`` class attribute, found from the node's
    structured type, or from its ``_target_`` when the node is a plain copy (a worker rank's resolved config).
    """
    schema = OmegaConf.get_type(node)
    if not hasattr(schema, "CONFIG_ONLY_KEYS"):
        schema = _settings_schemas_by_target().get(str(node.get(TARGET)))
    return tuple(getattr(schema, "CONFIG_ONLY_KEYS", ()))


@cache
def _settings_schemas_by_target() -> dict[str, type]:
    """The registered settings schemas that build an object, by their default ``_target_``."""
    from hipo.config.register import SCHEMAS

    by_target: dict[str, type] = {}
    for nodes in SCHEMAS.values():
        for schema in nodes.values():
            fields = {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}
            default = fields[TARGET].default if TARGET in fields else None
            if isinstance(default, str) and isinstance(schema, type):
                by_target[default] = schema
    return by_target


def check_component(node: DictConfig, where: str) -> None:
    """Checks one ``_target_`` node (not its children) against its constructor; ``where`` is its config path.

    Raises:
        ConfigError: the target does not import, a key is not a parameter, or a value has the wrong type.
    """
    path = str(node[TARGET])
    target = import_target(path, f"{where}.{TARGET}")
    if not _has_signature(target):
        return
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    for key in (*LABEL_KEYS, *_INSTANTIATE_FLAGS, *config_only_keys(node)):
        values.pop(key, None)
    # Child components are checked on their own; here only their presence counts.
    values = {key: ({} if isinstance(value, dict) and TARGET in value else value) for key, value in values.items()}
    schema = OmegaConf.structured(constructor_schema(target))
    if _accepts_any_keyword(target):
        OmegaConf.set_struct(schema, False)
    try:
        OmegaConf.merge(schema, values)
    except ConfigKeyError as error:
        parameters = [name for name in schema if name != TARGET]
        raise ConfigError(
            f"{where}.{error.key}: not a parameter of {path} (its parameters: {', '.join(parameters)})"
        ) from None
    except ValidationError as error:
        key = str(error.full_key or error.key)
        declared = {f.name: f.type for f in dataclasses.fields(constructor_schema(target))}
        if key in declared:
            expected = declared[key]
            shown = expected.__name__ if isinstance(expected, type) else str(expected).replace("typing.", "")
            problem = f"={values.get(key)!r}: expected {shown}"
        else:  # an element of a list or dict parameter
            problem = f": {str(error.msg).splitlines()[0]}"
        raise ConfigError(f"{where}.{key}{problem} (parameter of {path})") from None


def check_components(cfg: DictConfig | ListConfig, where: str = "") -> None:
    """Checks every ``_target_`` node under ``cfg`` (depth first), naming the first mistake by its config path."""
    keys: Sequence[Any] = list(cfg.keys()) if isinstance(cfg, DictConfig) else range(len(cfg))
    if isinstance(cfg, DictConfig) and TARGET in cfg:
        check_component(cfg, where or "<root>")
    for key in keys:
        child = cfg._get_node(key)  # noqa: SLF001 - the node itself, without resolving interpolations
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_missing():  # noqa: SLF001
            check_components(child, f"{where}.{key}" if where else str(key))
