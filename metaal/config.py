"""Experiment configs: a tree of dataclasses filled from a YAML file and command-line overrides.

The schema is plain ``@dataclass``es; every field has a default and, ideally, help text in
``field(metadata={"help": ...})``. ``load_config`` reads the YAML, merges ``--key.sub value``
overrides over it and checks every value against the field types, so a typo or a wrong type
fails before any training starts, naming the full dotted key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from metaal.errors import MetaalError
from metaal.limits import load_yaml

T = TypeVar("T")
NoneType = type(None)


class ConfigError(MetaalError):
    """A config file or override is missing, malformed, or does not fit the schema."""


class _Invalid(Exception):
    """A bad value at `key`; becomes a ConfigError once we know whether `key` came from a file or the command line."""

    def __init__(self, key: str, message: str, section: bool = False):
        super().__init__(message)
        self.key = key
        self.section = section  # raised by a whole dataclass (validate), not by one value


def from_dict(schema: type[T], data: dict, source: str = "config") -> T:
    """Build and check `schema` from plain data (e.g. parsed YAML); errors name `source`."""
    return _build_root(schema, data, source, override_keys=())


def load_config(schema: type[T], path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults, then the YAML file at `path` (if any), then command-line `overrides`."""
    source, data = "config", {}
    if path is not None:
        source = os.fspath(path)
        data = _read_yaml(source)
    pairs = _override_pairs(overrides)
    return _build_root(schema, _merge(data, _nest(pairs)), source, [key for key, _ in pairs])


def parse_overrides(args: Sequence[str]) -> dict:
    """`--a.b 1`, `--a.b=1` and `a.b=1` -> {"a": {"b": 1}}; values are read as YAML (1, 0.5, true, [1, 2], null)."""
    return _nest(_override_pairs(args))


def to_dict(config: Any) -> Any:
    """A dataclass tree as plain dicts and lists, safe for json.dumps and yaml.safe_dump."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, Mapping):
        return {key: to_dict(value) for key, value in config.items()}
    return config


def help_text(schema: type) -> str:
    """One line per dotted key: `key  type = default  help`; items of a list of sections show as `key[].sub`."""
    rows = list(_help_rows(schema, ""))
    key_width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    return "\n".join(f"{key:<{key_width}}  {kind:<{kind_width}}  {text}".rstrip() for key, kind, text in rows)


def _read_yaml(path: str) -> dict:
    try:
        with open(path, "rb") as file:  # bytes, so bad encodings surface as YAML errors with a position
            data = load_yaml(file.read(), path, error=ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if data is None:  # an empty file means "all defaults"
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _override_pairs(args: Sequence[str]) -> list[tuple[str, Any]]:
    args, pairs, i = list(args), [], 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            key, has_value, text = arg[2:].partition("=")
            if not has_value:
                if i == len(args) or args[i].startswith("--"):
                    raise ConfigError(f"command line: '{arg}' needs a value: {arg} VALUE or {arg}=VALUE")
                text, i = args[i], i + 1
        elif "=" in arg:
            key, _, text = arg.partition("=")
        else:
            raise ConfigError(f"command line: expected '--key value' or 'key=value', got {arg!r}")
        if "" in key.split("."):
            raise ConfigError(f"command line: bad key {key!r} in {arg!r}; keys look like 'trainer.lr'")
        what = f"command line: cannot read the value of '{key}' ({text[:200]!r}) as YAML"
        pairs.append((key, None if text.strip() == "None" else load_yaml(text, what, ConfigError)))  # a sweep's null
    return pairs


def _nest(pairs: list[tuple[str, Any]]) -> dict:
    nested: dict = {}
    for key, value in pairs:
        for part in reversed(key.split(".")):
            value = {part: value}
        nested = _merge(nested, value)  # later overrides win; `a={x: 1}` then `a.y=2` keeps both
    return nested


def _merge(base: dict, over: dict) -> dict:
    """Sections merge key by key; anything else (a number, a whole list) is replaced."""
    merged = dict(base)
    for key, value in over.items():
        both_sections = isinstance(merged.get(key), dict) and isinstance(value, dict)
        merged[key] = _merge(merged[key], value) if both_sections else value
    return merged


def _build_root(schema: type[T], data: Any, source: str, override_keys: Sequence[str]) -> T:
    try:
        return _build(schema, data, "")
    except _Invalid as error:
        def inside(key: str, section: str) -> bool:
            return section == "" or key == section or key.startswith((section + ".", section + "["))

        if any(inside(error.key, key) for key in override_keys):
            source = "command line"
        elif error.section and any(inside(key, error.key) for key in override_keys):
            source += " (with command-line overrides)"  # validate() saw a mix of file and command-line values
        raise ConfigError(f"{source}: {error}") from error.__cause__


def _build(schema: type[T], data: Any, key: str) -> T:
    if isinstance(data, schema):
        return data
    if not isinstance(data, Mapping):
        raise _type_error(key, "a mapping of keys", data)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for name in data:
        if name not in fields:
            raise _unknown_key(key, str(name), list(fields))
    hints = typing.get_type_hints(schema)  # resolves string annotations from `from __future__ import annotations`
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], _join(key, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _Invalid(_join(key, name), f"missing required key '{_join(key, name)}'")
    try:
        config = schema(**values)
        if callable(getattr(config, "validate", None)):
            config.validate()
    except ValueError as exc:
        raise _Invalid(key, (f"'{key}': " if key else "") + str(exc), section=True) from exc
    return config


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (Union, types.UnionType):
        if value is None and NoneType in args:
            return None
        errors = []
        for option in (arg for arg in args if arg is not NoneType):
            try:
                return _convert(option, value, key)
            except _Invalid as error:
                errors.append(error)
        # An error inside the value (a list item, a sub-key) says more than "must be X or Y".
        deeper = [error for error in errors if error.key != key or error.section]
        raise deeper[0] if deeper else _type_error(key, _expected(tp), value)
    if origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in args):
            return value
        raise _Invalid(key, f"{_name(key)} must be one of {', '.join(map(repr, args))}; got {value!r}")
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, "a mapping of keys", value)
        return dict(value)  # a free-form section (a learner's or trainer's options): its owner checks it
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, "a list", value)
        item_type = args[0] if args else Any  # list[X] or tuple[X, ...]
        items = [_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
        return items if origin is list else tuple(items)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # YAML reads `lr: 1` as an int
    if tp is float and isinstance(value, str) and any(c.isdigit() for c in value):
        try:
            return float(value)  # PyYAML (YAML 1.1) reads `1e-3`, with no dot, as a string
        except ValueError:
            pass
    # bool is a subclass of int: `steps: true` must not pass as 1.
    if isinstance(value, tp) and (tp is bool or not isinstance(value, bool)):
        return value
    raise _type_error(key, _expected(tp), value)


def _expected(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is NoneType:
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping of keys"
    name = getattr(tp, "__name__", str(tp))
    return ("an " if name[0] in "aeiou" else "a ") + name


def _type_error(key: str, expected: str, value: Any) -> _Invalid:
    return _Invalid(key, f"{_name(key)} must be {expected}, got {value!r} ({type(value).__name__})")


def _unknown_key(section: str, name: str, allowed: list[str]) -> _Invalid:
    key = _join(section, name)
    where = f"keys under '{section}' are" if section else "top-level keys are"
    message = f"unknown key '{key}'; {where}: {', '.join(allowed)}"
    close = difflib.get_close_matches(name, allowed, n=1)
    return _Invalid(key, message + (f"; did you mean '{close[0]}'?" if close else ""))


def _join(section: str, name: str) -> str:
    return f"{section}.{name}" if section else name


def _name(key: str) -> str:
    return f"'{key}'" if key else "the top level"


def _help_rows(schema: type, prefix: str):
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        if not field.init:
            continue
        key, tp, text = prefix + field.name, hints[field.name], field.metadata.get("help", "")
        if dataclasses.is_dataclass(tp):
            yield key, "section", text
            yield from _help_rows(tp, key + ".")
            continue
        yield key, f"{_type_name(tp)} = {_default_text(field)}", text
        for candidate in (tp, *typing.get_args(tp)):  # list[Source] or list[Source] | None
            item_args = typing.get_args(candidate)
            if typing.get_origin(candidate) in (list, tuple) and item_args and dataclasses.is_dataclass(item_args[0]):
                yield from _help_rows(item_args[0], key + "[].")
                break


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is NoneType:
        return "null"
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (list, tuple):
        return f"list[{', '.join(_type_name(arg) for arg in args if arg is not Ellipsis) or 'any'}]"
    return getattr(tp, "__name__", str(tp))


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "(required)"
    return json.dumps(to_dict(value), default=str)  # JSON is valid YAML, so this is what you would write
