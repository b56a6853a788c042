"""Strict JSON values: validation with a path to the bad value, canonical bytes, digests.

Stored values (inputs, results, interrupt questions and answers) must be plain
JSON: dict with str keys, list, str, int, float (finite), bool, None. Tuples are
refused rather than silently turned into lists, so that a replayed run sees
exactly what the live run saw.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import orjson

from perdure.eventlog._errors import SerializationError

_SCALARS = (str, bool, type(None))
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def check_json(value: Any, path: str = "value", *, where: str | Callable[[], str] = "") -> None:
    """Raise `SerializationError` naming the path of the first value that is not plain JSON.

    `where` (e.g. ``"task 'fetch' (run 'r1', position 3)"``) prefixes the
    message, so the error says which call the bad value belongs to; a hot
    caller passes a function, called only if there is an error.
    """
    if where:
        try:
            _check(value, path)
        except SerializationError as exc:
            prefix = where if isinstance(where, str) else where()
            raise SerializationError(
                f"{prefix}: {exc}", path=exc.path, type_name=exc.type_name
            ) from None
    else:
        _check(value, path)


def _check(value: Any, path: str) -> None:
    if isinstance(value, str):
        if not value.isascii():
            _check_text(value, path)
        return
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise SerializationError(
                f"{path} is an integer outside the 64-bit range JSON can carry here; "
                "store it as a string",
                path=path,
                type_name="int",
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(
                f"{path} is {value!r}, which JSON cannot represent; use None or a string",
                path=path,
                type_name="float",
            )
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not key.isascii():
                _check_text(key, f"{path} key")
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings",
                    path=f"{path}[{key!r}]",
                    type_name=type(key).__name__,
                )
            _check(item, f"{path}[{key!r}]")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    kind = type(value).__name__
    hint = " (use a list)" if isinstance(value, tuple) else ""
    raise SerializationError(
        f"{path} is a {kind}, which is not JSON-serialisable{hint}; "
        "perdure stores only dict/list/str/int/float/bool/None",
        path=path,
        type_name=kind,
    )


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError(
            f"{path} contains a lone surrogate character, which is not valid UTF-8 JSON",
            path=path,
            type_name="str",
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


def fresh(value: Any) -> Any:
    """The value exactly as a replay will see it: unshared, plain JSON types.

    Containers are copied so user code cannot mutate recorded state, and
    subclasses (a StrEnum, an OrderedDict) become their plain JSON type, so the
    live run and its replay see the same thing.
    """
    if type(value) in _PLAIN:
        return value
    return orjson.loads(orjson.dumps(value))
