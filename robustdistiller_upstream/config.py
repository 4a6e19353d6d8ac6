"""Configs are dataclasses filled from YAML files and ``-o key=value`` overrides.

Unknown keys and values of the wrong type are errors that name the file (or ``-o``) and the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, Type, TypeVar

import yaml

from robustdistiller_upstream.errors import ConfigError

T = TypeVar("T")

# "a.b=1,c.d=[1,2]": a comma starts a new override only where "key=" follows, so list values may hold commas.
# s3prl's ",," separator is accepted too.
_OVERRIDE_SPLIT = re.compile(r",,|,(?=\s*[A-Za-z_][\w.]*\s*=)")


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1,c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML scalars/lists."""
    tree: dict[str, Any] = {}
    for group in overrides:
        for item in filter(None, (part.strip() for part in _OVERRIDE_SPLIT.split(group))):
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"-o: {item!r} is not of the form key=value")
            node = tree
            *parents, leaf = key.strip().split(".")
            for name in parents:
                node = node.setdefault(name, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"-o: {key!r} sets a field inside a value that is not a section")
            node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return tree


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where}: null is not allowed here")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, value, where)
    if tp is Any:
        return value
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        val_tp = args[1] if args else Any
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: Type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def from_dict(cls: Type[T], data: Mapping[str, Any], source: str = "<dict>") -> T:
    """Builds ``cls`` from a nested mapping; ``source`` names where it came from in errors."""
    try:
        return _build(cls, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {str(exc).lstrip(': ')}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(cls: Type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Dataclass defaults <- YAML file <- ``-o`` overrides."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    if overrides:
        data = merge(data, parse_overrides(overrides))
        source += " with -o overrides"
    return from_dict(cls, data, source)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists) that YAML and ``torch.load(weights_only=True)`` both accept."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
