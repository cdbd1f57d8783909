"""Lossless JSON <-> dataclass conversion shared by every spec.

All specs (architecture, augmentation, training) go through here so that
unknown keys, wrong types and newer versions are reported the same way,
with a path such as ``blocks[2].layers[1].kernel`` naming the culprit.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")


class SpecError(ValueError):
    """A spec could not be read or is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def valid_or_raise(spec: T, problems: list[str]) -> T:
    """The spec itself if ``problems`` is empty; otherwise a SpecError naming every problem."""
    if problems:
        raise SpecError(problems)
    return spec


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain JSON-able structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(to_dict(obj), indent=indent, sort_keys=False)


def _convert(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(arg, value, path, trial)
            if not trial:
                return out
        errors.append(f"{path}: {value!r} is not a valid {_name(tp)}")
        return None
    if origin is typing.Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            errors.append(f"{path}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, path, errors)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return [] if origin is list else ()
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                errors.append(f"{path}: expected {len(args)} values, got {len(value)}")
                return tuple(value)
            return tuple(_convert(a, v, f"{path}[{i}]", errors) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return {}
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(vt, v, f"{path}.{k}", errors) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            errors.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected text, got {value!r}")
        return value
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _from_dict(cls: type[T], data: Any, path: str, errors: list[str]) -> T | None:
    if not isinstance(data, dict):
        errors.append(f"{path or cls.__name__}: expected an object, got {type(data).__name__}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            errors.append(f"{path + '.' if path else ''}{key}: unknown field (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub, errors)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(f"{sub}: missing")
    if errors:
        return None
    return cls(**kwargs)


def from_dict(cls: type[T], data: Any, version: int | None = None) -> T:
    """Build ``cls`` from a dict, raising SpecError listing every problem."""
    errors: list[str] = []
    if version is not None and isinstance(data, dict):
        v = data.get("version", version)
        if isinstance(v, int) and v > version:
            raise SpecError([f"spec version {v} is newer than this playground understands "
                             f"(version {version}); upgrade cifar-playground to load it"])
    obj = _from_dict(cls, data, "", errors)
    if errors or obj is None:
        raise SpecError(errors or ["empty spec"])
    return obj


def from_json(cls: type[T], text: str, version: int | None = None) -> T:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError([f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"]) from None
    return from_dict(cls, data, version)


class JsonSpec:
    """Mixin for top-level specs: JSON/dict round trips through this module.

    Subclasses set ``SPEC_VERSION`` (None: unversioned) and may override
    ``_validated`` to reject specs that parse but are invalid.
    """

    SPEC_VERSION: int | None = None

    def to_json(self, indent: int | None = 2) -> str:
        return to_json(self, indent)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_json(cls, text: str):
        return cls._validated(from_json(cls, text, cls.SPEC_VERSION))

    @classmethod
    def from_dict(cls, data: dict):
        return cls._validated(from_dict(cls, data, cls.SPEC_VERSION))

    @classmethod
    def _validated(cls, spec):
        return spec
