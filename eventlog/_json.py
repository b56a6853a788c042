"""Stored values: validation with a path to the bad value, tagged JSON, canonical bytes, digests.

Stored values (inputs, results, interrupt questions and answers) are JSON:
dict with str keys, list, str, int (64-bit), float (finite), bool, None. A few
everyday types are stored as *tagged* JSON, an object
``{"__perdure__": tag, "value": json}`` that stays readable in the log:

=============================  ===============  ==============================
Python value                   tag              ``value``
=============================  ===============  ==============================
`datetime.datetime`            ``datetime``     ISO 8601 text (`isoformat()`)
`datetime.date`                ``date``         ISO 8601 text
`datetime.time`                ``time``         ISO 8601 text
`uuid.UUID`                    ``uuid``         canonical text
`decimal.Decimal`              ``decimal``      text (`str()`: no precision lost)
`enum.Enum` (not str/int)      ``enum``         the member's value
dataclass instance             ``dataclass``    its fields, as an object
attrs instance                 ``attrs``        its fields, as an object
pydantic model                 ``pydantic``     ``model_dump(mode="json")``
a dict with a ``__perdure__``  ``dict``         the dict itself (escaped)
=============================  ===============  ==============================

The tag names no class, so a stored value never imports or runs code when read,
and moving a class to another module keeps digests (and so replays) stable.
Values that were plain JSON before (including str/int enums and dict or list
subclasses) are stored exactly as before. Tuples are refused rather than silently
turned into lists, so that a replayed run sees exactly what the live run saw
(inside a dataclass, attrs or pydantic object they are lists, rebuilt as tuples
from the declared field types). `perdure.eventlog._values` turns stored values
back into Python values: the declared types when code declares them, plain JSON
otherwise.

Values nest at most `MAX_DEPTH` levels (the JSON encoder's own limit, less the
room events need around a value); a deeper value, or one that contains itself,
is refused with the path of where it goes too deep or repeats.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import orjson

from perdure.eventlog._errors import SerializationError

#: The key of a tagged value: ``{"__perdure__": tag, "value": ...}``.
TAG = "__perdure__"
#: How deep stored values may nest (containers and tagged values each count one level).
#: orjson refuses values nested 255 levels or more; events wrap a value in a few levels.
MAX_DEPTH = 200

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_isfinite = math.isfinite


class _Invalid(Exception):
    """Internal: a bad value found while walking; each container on the way up adds its step."""

    def __init__(self, reason: str, type_name: str) -> None:
        self.reason = reason  # the message after the path, e.g. " is a set, which ..."
        self.type_name = type_name
        self.steps: list[str] = []
        self.containers: list[int] = []

    def add(self, step: str, container: Any) -> _Invalid:
        self.steps.append(step)
        self.containers.append(id(container))
        return self


def check_json(value: Any, path: str = "value", *, where: str | Callable[[], str] = "") -> Any:
    """Return the stored form of `value`, or raise `SerializationError` naming the bad path.

    Plain JSON comes back as the very same object (no copy); a value holding
    tagged types (datetime, dataclasses, ...) comes back as a new tagged-JSON
    structure. `where` (e.g. ``"task 'fetch' (run 'r1', position 3)"``)
    prefixes the message, so the error says which call the bad value belongs
    to; a hot caller passes a function, called only if there is an error.
    """
    try:
        return _store(value, 0, False)
    except _Invalid as bad:
        error = _error(bad, path)
    if where:
        prefix = where if isinstance(where, str) else where()
        error = SerializationError(f"{prefix}: {error}", path=error.path, type_name=error.type_name)
    raise error


def _error(bad: _Invalid, root: str) -> SerializationError:
    steps = bad.steps[::-1]
    containers = bad.containers[::-1]
    if bad.type_name == "depth":
        # Too deep: a container that holds itself shows as one seen before on the path.
        seen: dict[int, int] = {}
        for index, ident in enumerate(containers):
            if ident in seen:
                first, again = seen[ident], index
                origin = root + "".join(steps[:first])
                path = root + "".join(steps[:again])
                return SerializationError(
                    f"{path} is {origin} itself: the value contains a cycle, which JSON "
                    "cannot represent",
                    path=path,
                    type_name="cycle",
                )
            seen[ident] = index
        path = root + "".join(steps)
        shown = (
            path if len(steps) <= 12 else root + "".join(steps[:6]) + "..." + "".join(steps[-6:])
        )
        return SerializationError(
            f"{shown} is nested more than {MAX_DEPTH} levels deep, deeper than perdure "
            "stores; flatten the value",
            path=path,
            type_name="depth",
        )
    path = root + "".join(steps)
    return SerializationError(path + bad.reason, path=path, type_name=bad.type_name)


def _store(value: Any, depth: int, loose: bool) -> Any:
    cls = type(value)
    if cls is str:
        if not value.isascii():
            _check_text(value)
        return value
    if cls is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise _bad_int()
        return value
    if cls is bool or value is None:
        return value
    if cls is float:
        if not math.isfinite(value):
            raise _bad_float(value)
        return value
    if cls is dict:
        return _store_dict(value, depth, loose)
    if cls is list:
        return _store_list(value, depth, loose)
    return _store_other(value, depth, loose)


def _store_dict(value: dict[Any, Any], depth: int, loose: bool) -> Any:
    if depth >= MAX_DEPTH:
        raise _Invalid("", "depth")
    out: dict[str, Any] | None = None
    for key, item in value.items():
        if type(key) is not str and not isinstance(key, str):
            raise _Invalid(
                f" has a key {key!r} of type {type(key).__name__}; "
                "JSON object keys must be strings",
                type(key).__name__,
            ).add(f"[{key!r}]", value)
        if not key.isascii():
            try:
                _check_text(key)
            except _Invalid as bad:
                raise bad.add(" key", value) from None
        # Scalars inline (no call): most of a typical value.
        cls = type(item)
        if cls is str:
            if item.isascii():
                continue
        elif cls is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
        elif cls is bool or item is None or (cls is float and _isfinite(item)):
            continue
        try:
            stored = _store(item, depth + 1, loose)
        except _Invalid as bad:
            raise bad.add(f"[{key!r}]", value) from None
        if stored is not item:
            if out is None:
                out = dict(value)
            out[key] = stored
    if TAG in value:  # a user's own "__perdure__" key: escape it, so it never reads as a tag
        if depth + 1 >= MAX_DEPTH:
            raise _Invalid("", "depth")
        return {TAG: "dict", "value": value if out is None else out}
    return value if out is None else out


def _store_list(value: list[Any], depth: int, loose: bool) -> Any:
    if depth >= MAX_DEPTH:
        raise _Invalid("", "depth")
    out: list[Any] | None = None
    for index, item in enumerate(value):
        cls = type(item)
        if cls is str:
            if item.isascii():
                continue
        elif cls is int:
            if _INT_MIN <= item <= _INT_MAX:
                continue
        elif cls is bool or item is None or (cls is float and _isfinite(item)):
            continue
        try:
            stored = _store(item, depth + 1, loose)
        except _Invalid as bad:
            raise bad.add(f"[{index}]", value) from None
        if stored is not item:
            if out is None:
                out = list(value)
            out[index] = stored
    return value if out is None else out


def _store_other(value: Any, depth: int, loose: bool) -> Any:
    # Subclasses of the JSON types (a StrEnum, an OrderedDict) are stored as their base
    # type, as they always were: the same bytes, so the same digest. They are read through
    # the base type's own methods, as the encoder reads them, so an override cannot hide
    # a value from the check (and the encoder writes no float subclass at all).
    if isinstance(value, str):
        return _store(str.__str__(value), depth, loose)
    if isinstance(value, int):
        return _store(int.__int__(value), depth, loose)
    if isinstance(value, float):
        return _store(float.__float__(value), depth, loose)
    if isinstance(value, dict):
        return _store_dict(dict(dict.items(value)), depth, loose)
    if isinstance(value, list):
        return _store_list(list(list.__iter__(value)), depth, loose)
    if depth >= MAX_DEPTH:
        raise _Invalid("", "depth")
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    # `decimal` is not imported for this check: without the module there is no Decimal.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, enum.Enum):
        try:
            payload = _store(value.value, depth + 1, loose)
        except _Invalid as bad:
            raise bad.add(".value", value) from None
        return {TAG: "enum", "value": payload}
    if loose and isinstance(value, (tuple, set, frozenset)):
        # Inside a dataclass, attrs or pydantic object: rebuilt from the declared field type.
        return _store_list(
            list(value) if isinstance(value, tuple) else _sorted(value), depth, loose
        )
    cls = type(value)
    if dataclasses.is_dataclass(cls):
        names = [field.name for field in dataclasses.fields(cls)]
        return {TAG: "dataclass", "value": _store_fields(value, names, depth)}
    if attrs.has(cls):
        names = [field.name for field in attrs.fields(cls)]
        return {TAG: "attrs", "value": _store_fields(value, names, depth)}
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        try:
            dumped = value.model_dump(mode="json")
        except Exception as exc:
            raise _Invalid(
                f" is a {cls.__name__} (pydantic) that cannot be dumped to JSON: {exc}",
                cls.__name__,
            ) from None
        try:
            payload = _store(dumped, depth + 1, True)
        except _Invalid as bad:
            raise bad.add("", value) from None
        return {TAG: "pydantic", "value": payload}
    kind = cls.__name__
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise _Invalid(
        f" is a {kind}, which is not JSON-serialisable{hint}; perdure stores "
        "dict/list/str/int/float/bool/None, and datetime, date, time, UUID, Decimal, Enum, "
        "dataclasses, attrs classes and pydantic models as tagged JSON",
        kind,
    )


def _store_fields(owner: Any, names: list[str], depth: int) -> dict[str, Any]:
    """A dataclass's or attrs instance's fields, stored (one level below its tag)."""
    if depth + 1 >= MAX_DEPTH:
        raise _Invalid("", "depth").add("", owner)
    out = {}
    for name in names:
        try:
            out[name] = _store(getattr(owner, name), depth + 2, True)
        except _Invalid as bad:
            raise bad.add(f".{name}", owner) from None
    return out


def _sorted(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items in a stable order (so that the same set always has the same digest)."""
    try:
        return sorted(items)
    except TypeError:
        raise _Invalid(
            " is a set whose items cannot be sorted; use a list", type(items).__name__
        ) from None


def _bad_int() -> _Invalid:
    return _Invalid(
        " is an integer outside the 64-bit range JSON can carry here; store it as a string",
        "int",
    )


def _bad_float(value: float) -> _Invalid:
    return _Invalid(f" is {value!r}, which JSON cannot represent; use None or a string", "float")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(
            " contains a lone surrogate character, which is not valid UTF-8 JSON", "str"
        ) from None


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys) of a value already checked by `check_json`."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def digest(value: Any) -> str:
    """A short stable digest of a JSON value, used to match replayed calls to recorded ones."""
    return hashlib.blake2b(dumps(value), digest_size=8).hexdigest()


_PLAIN = frozenset({str, int, float, bool, type(None)})
_TAG_BYTES = b'"' + TAG.encode() + b'"'


def fresh(value: Any) -> Any:
    """The value exactly as a replay will see it: unshared, plain JSON types, no tags.

    Containers are copied so user code cannot mutate recorded state, and
    subclasses (a StrEnum, an OrderedDict) become their plain JSON type, so the
    live run and its replay see the same thing. Tagged values become their
    plain JSON (a datetime its ISO text, a dataclass its fields); code that
    declares a type gets it back through `perdure.eventlog._values.restore`.
    """
    if type(value) in _PLAIN:
        return value
    data = orjson.dumps(value)
    copy = orjson.loads(data)
    if _TAG_BYTES in data:  # rare: only values that hold tagged types pay for the walk
        return _untag(copy)
    return copy


def _untag(value: Any) -> Any:
    """Plain JSON of a stored value: each tagged value replaced by its payload."""
    if type(value) is dict:
        if len(value) == 2 and type(value.get(TAG)) is str and "value" in value:
            payload = value["value"]
            if value[TAG] == "dict" and type(payload) is dict:  # an escaped user dict
                return {key: _untag(item) for key, item in payload.items()}
            return _untag(payload)
        return {key: _untag(item) for key, item in value.items()}
    if type(value) is list:
        return [_untag(item) for item in value]
    return value
