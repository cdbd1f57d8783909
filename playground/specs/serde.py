"""Lossless JSON <-> dataclass conversion shared by every spec.

All specs (architecture, augmentation, training) go through here so that
unknown keys, wrong types and newer versions are reported the same way,
with a path such as ``blocks[2].layers[1].kernel`` naming the culprit.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import stat
import types
import typing
import unicodedata
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")

MAX_DEPTH = 32  # specs nest about 6 deep; anything deeper is not a spec
MAX_INT = 2 ** 63 - 1  # every integer field is bounded well below this by its validator


MAX_PROBLEMS = 8  # a 228-character share link of 9,000 bad layers made a 1.4 MB message
MAX_PROBLEM_CHARS = 300


class SpecError(ValueError):
    """A spec could not be read or is invalid; ``problems`` lists the reasons, at most
    ``MAX_PROBLEMS`` of them (then how many more) and each cut to ``MAX_PROBLEM_CHARS``: a message
    stays readable, and small, however much a crafted input gets wrong."""

    def __init__(self, problems: list[str]):
        problems = [p if len(p) <= MAX_PROBLEM_CHARS else p[:MAX_PROBLEM_CHARS - 1] + "…" for p in problems]
        if len(problems) > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS] + [f"and {len(problems) - MAX_PROBLEMS:,} more problems"]
        self.problems = problems
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


def short(value: Any, width: int = 40) -> str:
    """A value as a message shows it: repr, cut to ``width`` characters (an attacker's 1 MB string
    or a lone surrogate never reaches a terminal or a page whole)."""
    text = repr(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= width else text[:width - 1] + "…"


def _hidden(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")


def hidden_char(text: str) -> str | None:
    """The first control, format (bidi overrides, zero-width), surrogate, private-use or line/paragraph
    separator character in ``text`` as U+XXXX, or None: such characters move a terminal's cursor, retitle
    its window or reorder what a page shows, and a name is a label, not a layout."""
    return next((f"U+{ord(ch):04X}" for ch in text if _hidden(ch)), None)


def printable(text: Any) -> str:
    """``text`` for a terminal: each character ``hidden_char`` would name shown as its escape."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if _hidden(ch) else ch for ch in str(text))


def _key(key: Any) -> str:
    return short(key)[1:-1] if isinstance(key, str) else short(key)


def _plain(value: Any, path: str, errors: list[str]) -> Any:
    """Free-form values (augmentation parameters): finite numbers only, and no negative zero (it
    turns a range (-0.0, 0.0) upside down)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.append(f"{path}: must be a finite number, got {value!r}")
        return value + 0.0
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        errors.append(f"{path}: {short(value)} is out of range")
    if isinstance(value, str) and not is_text(value):
        errors.append(f"{path}: holds a character that is not valid Unicode")
    if isinstance(value, list):
        return [_plain(v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{_key(k)}", errors) for k, v in value.items()}
    return value


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
        return False
    return True


def _convert(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return _plain(value, path, errors)
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
        errors.append(f"{path}: {short(value)} is not a valid {_name(tp)}")
        return None
    if origin is typing.Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            errors.append(f"{path}: {short(value)} is not one of {choices}")
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
        return {str(k): _convert(vt, v, f"{path}.{_key(k)}", errors) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true/false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {short(value)}")
        elif abs(value) > MAX_INT:
            errors.append(f"{path}: {short(value)} is out of range")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {short(value)}")
            return value
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            errors.append(f"{path}: must be a finite number, got {short(value)}")
        return number + 0.0  # no negative zero
    if tp is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected text, got {short(value)}")
        elif not is_text(value):
            errors.append(f"{path}: holds a character that is not valid Unicode")
        return value
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


@functools.cache
def _schema(cls: type) -> tuple[dict, dict]:
    """A dataclass's field types and fields (resolving string annotations is slow: once per class)."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _from_dict(cls: type[T], data: Any, path: str, errors: list[str]) -> T | None:
    if not isinstance(data, dict):
        errors.append(f"{path or cls.__name__}: expected an object, got {type(data).__name__}")
        return None
    hints, fields = _schema(cls)
    for key in data:
        if key not in fields:
            errors.append(f"{path + '.' if path else ''}{_key(key)}: unknown field (known: {', '.join(fields)})")
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


def too_deep(data: Any) -> bool:
    """Nested deeper than MAX_DEPTH (checked without recursion, so any depth is safe to ask)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, (list, tuple)):
            stack += [(v, depth + 1) for v in value]
    return False


def from_dict(cls: type[T], data: Any, version: int | None = None) -> T:
    """Build ``cls`` from a dict, raising SpecError listing every problem."""
    errors: list[str] = []
    if too_deep(data):
        raise SpecError([f"the spec is nested more than {MAX_DEPTH} levels deep"])
    if version is not None and isinstance(data, dict):
        v = data.get("version", version)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > version:
            raise SpecError([f"spec version {short(v)} is newer than this playground understands "
                             f"(version {version}); upgrade cifar-playground to load it"])
    obj = _from_dict(cls, data, "", errors)
    if errors or obj is None:
        raise SpecError(errors or ["empty spec"])
    if version is not None and getattr(obj, "version", version) != version:
        raise SpecError([f"version: this playground reads version {version} specs, got {short(obj.version)}"])
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def read_spec_file(path: str | os.PathLike) -> bytes:
    """A spec or space file's bytes, read no further than the JSON size limit: a FIFO, a device or
    a huge file is refused, not read. SpecError (one line, naming the file) when it cannot be read."""
    from .limits import current

    return read_bounded(path, current().json_bytes, "a spec file")


def read_bounded(path: str | os.PathLike, limit: int, what: str) -> bytes:
    """A regular file's bytes, at most ``limit`` of them (``what`` it is names the limit); a FIFO, a device or
    a larger file is refused unread. SpecError (one line, naming the file) when it cannot be read."""
    name = short(str(path), 80)[1:-1]
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before opening: opening a FIFO waits for a writer
            raise SpecError([f"{name}: not a regular file"])
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise SpecError([f"{name}: {e.strerror or 'cannot be read'}"]) from None
    if len(raw) > limit:
        raise SpecError([f"{name}: larger than the {limit:,}-byte limit for {what}"])
    return raw


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """An object whose key repeats is refused: which of two values a reader takes is a guess."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {short(twice)} appears twice in one object")
    return data


def parse_json(raw: str | bytes, max_bytes: int | None = None) -> Any:
    """Untrusted JSON text (a file, the editor, a share link, a stored record) -> plain data, or a
    one-line SpecError: too large, not UTF-8, not JSON, NaN/Infinity, a number of thousands of
    digits, nested too deeply."""
    if max_bytes is None:
        from .limits import current
        max_bytes = current().json_bytes
    if isinstance(raw, str):  # text from the editor: its bytes are what the limit counts, and a BOM is no error
        raw = raw.removeprefix("\ufeff")
        size = len(raw) if len(raw) > max_bytes else len(raw.encode("utf-8", "surrogatepass"))
    else:
        size = len(raw)
    if size > max_bytes:
        raise SpecError([f"the JSON is {size:,} bytes; the limit is {max_bytes:,}"])
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SpecError([f"the JSON is not UTF-8 text (byte {e.start} is {raw[e.start]:#04x})"]) from None
    try:
        data = json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise SpecError([f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"]) from None
    except RecursionError:
        raise SpecError([f"the JSON is nested more than {MAX_DEPTH} levels deep"]) from None
    except ValueError as e:  # a number of more than 4,300 digits, NaN, Infinity
        why = "a number has thousands of digits" if "digits" in str(e) else str(e).splitlines()[0][:120]
        raise SpecError([f"invalid JSON: {why}"]) from None
    if too_deep(data):
        raise SpecError([f"the JSON is nested more than {MAX_DEPTH} levels deep"])
    return data


def from_json(cls: type[T], text: str | bytes, version: int | None = None) -> T:
    return from_dict(cls, parse_json(text), version)


class JsonSpec:
    """Mixin for top-level specs: JSON/dict round trips through this module.

    ``from_json`` and ``from_dict`` are the one door for specs from outside (a file, a flag, the
    editor, a share link, a stored run, a checkpoint): they parse and validate, limits included.
    ``parse`` only checks the types, for the app's own working copy of a spec being edited
    (which may be invalid, and says so on the page). Subclasses set ``SPEC_VERSION`` (None:
    unversioned) and override ``_validated``.
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
    def parse(cls, data: dict):
        return from_dict(cls, data, cls.SPEC_VERSION)

    @classmethod
    def _validated(cls, spec):
        return spec
