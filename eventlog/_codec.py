"""Events to stored bytes and back: JSON built by per-class plans, in a checksummed envelope.

Stored record = 1 byte envelope version + 4 bytes big-endian CRC32 + JSON.
The CRC covers the version byte, the run id and the sequence number as well as
the JSON, so a record copied under the wrong key, or with a flipped version
bit, is caught too. (Envelope 1 records, which left the version byte out of
the CRC, still decode.) The JSON holds the wire name
(``"t"``), the schema version (``"v"``) and the event's fields except
``run_id``/``seq``, which live in the key. Decoding never executes code: it is
JSON parsing plus attrs construction of known classes.
"""

from __future__ import annotations

import contextlib
import gc
import operator
import struct
import threading
import typing
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import orjson

from perdure.eventlog._errors import CorruptEventError, SchemaVersionError
from perdure.eventlog._events import BY_WIRE_NAME, EVENT_TYPES, Event, RunKind, TimerPurpose

ENVELOPE_VERSION = 2
_HEADER = struct.Struct(">BI")
_SEQ = struct.Struct(">Q")


def _coerce(kind: type) -> Callable[[Any], Any]:
    """``kind(value)`` unless the value is of that exact type already (what cattrs did)."""

    def coerce(value: Any) -> Any:
        return value if type(value) is kind else kind(value)

    return coerce


def _optional(kind: type) -> Callable[[Any], Any]:
    inner = _coerce(kind)
    return lambda value: None if value is None else inner(value)


def _literal(alias: Any) -> Callable[[Any], Any]:
    allowed = frozenset(typing.get_args(alias))

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {sorted(allowed)}")
        return value

    return check


def _str_dict(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()}


def _any_dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()}


#: How a field's stored JSON becomes its value, by the field's annotation (as written in
#: `_events`). None: taken as it is. A class with any other annotation fails at import.
_FIELD_TYPES: dict[str, Callable[[Any], Any] | None] = {
    "str": _coerce(str),
    "int": _coerce(int),
    "float": _coerce(float),
    "bool": _coerce(bool),
    "str | None": _optional(str),
    "float | None": _optional(float),
    "Any": None,
    "dict[str, str]": _str_dict,
    "dict[str, Any]": _any_dict,
    "RunKind": _literal(RunKind),
    "TimerPurpose": _literal(TimerPurpose),
}


def _structurer(cls: type[Event]) -> Callable[[dict[str, Any]], Event]:
    """Build `cls` from a record's fields: known fields only (others are ignored, as
    records of a newer minor layout may carry more), each converted as declared; a
    missing required field or a bad value raises (the caller reports a corrupt event)."""
    plan = [(f.name, _FIELD_TYPES[str(f.type)]) for f in attrs.fields(cls)]

    def structure(data: dict[str, Any]) -> Event:
        kwargs = {}
        for name, convert in plan:
            if name in data:
                value = data[name]
                kwargs[name] = value if convert is None else convert(value)
        return cls(**kwargs)

    return structure


_STRUCTURE = {cls: _structurer(cls) for cls in EVENT_TYPES}
_FIELDS = {cls: tuple(f.name for f in attrs.fields(cls)) for cls in EVENT_TYPES}


def _record_getter(cls: type[Event]) -> tuple[tuple[str, ...], Callable[[Event], tuple[Any, ...]]]:
    """The fields a record stores of `cls` (all but run id and seq, which its key holds)
    and one getter of their values, for `encode_all`."""
    names = tuple(name for name in _FIELDS[cls] if name not in ("run_id", "seq"))
    if len(names) == 1:
        (only,) = names
        return names, lambda event: (getattr(event, only),)
    return names, operator.attrgetter(*names)


_RECORD_FIELDS = {cls: _record_getter(cls) for cls in EVENT_TYPES}
_DICT_FIELDS = {
    cls: tuple(f.name for f in attrs.fields(cls) if str(f.type).startswith("dict["))
    for cls in EVENT_TYPES
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: (wire name, version) -> function turning that version's fields into version+1's.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(wire_name: str, from_version: int, fn: Upcaster) -> None:
    """Register how to turn fields of `wire_name` at `from_version` into `from_version + 1`."""
    UPCASTERS[(wire_name, from_version)] = fn


def _checksum(version: int, run_id: str, seq: int, body: bytes) -> int:
    # Envelope 1 (perdure 0.1.0 pre-releases) left the version byte out of the CRC.
    head = zlib.crc32(run_id.encode(), zlib.crc32(bytes((version,))) if version != 1 else 0)
    return zlib.crc32(body, zlib.crc32(_SEQ.pack(seq), head))


def _unstructure(event: Event) -> dict[str, Any]:
    """The event's fields as a new dict (dict-valued fields copied), in declaration order."""
    data = {name: getattr(event, name) for name in _FIELDS[type(event)]}
    for name in _DICT_FIELDS[type(event)]:
        data[name] = dict(data[name])
    return data


def to_dict(event: Event) -> dict[str, Any]:
    """The event's fields plus its wire name and version, as plain JSON data."""
    data = _unstructure(event)
    data["t"] = event.WIRE_NAME
    data["v"] = event.VERSION
    return data


def encode(event: Event) -> bytes:
    """Stored bytes of an event: envelope header + JSON (without run id and seq)."""
    return encode_all(event.run_id, (event,))[0]


def encode_all(run_id: str, events: Sequence[Event]) -> list[bytes]:
    """`encode` for a batch of one run's events (the run id's share of the CRC is done once)."""
    head = zlib.crc32(run_id.encode(), zlib.crc32(bytes((ENVELOPE_VERSION,))))
    records = []
    for event in events:
        # The fields straight into a dict orjson encodes at once (`_unstructure` would
        # copy the dict-valued ones and the run id and seq only to drop them).
        names, values = _RECORD_FIELDS[type(event)]
        data = dict(zip(names, values(event), strict=True))
        data["t"] = event.WIRE_NAME
        data["v"] = event.VERSION
        body = orjson.dumps(data)
        crc = zlib.crc32(body, zlib.crc32(_SEQ.pack(event.seq), head))
        records.append(_HEADER.pack(ENVELOPE_VERSION, crc) + body)
    return records


#: Decoding at least this many records at once pauses the cyclic GC (`gc_paused`).
GC_PAUSE_FROM = 512
_gc_lock = threading.Lock()
_gc_pausers = [0]  # threads inside `gc_paused` that found the GC enabled


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a long history is decoded.

    Decoding allocates tens of thousands of small objects, none of them in
    cycles; each allocation burst triggers collections that walk every object
    already alive (a third of a 10,000-step resume's decode time). Reference
    counting still frees everything at once. Nested and concurrent pauses
    count: the collector is enabled again when the last one ends, and only if
    it was enabled when the first began (an application that disabled it keeps
    it disabled).
    """
    with _gc_lock:
        mine = gc.isenabled() or _gc_pausers[0] > 0
        if mine:
            _gc_pausers[0] += 1
            gc.disable()
    try:
        yield
    finally:
        if mine:
            with _gc_lock:
                _gc_pausers[0] -= 1
                if _gc_pausers[0] == 0:
                    gc.enable()


def decode(run_id: str, seq: int, record: bytes) -> Event:
    """Check and decode one stored record; any fault is a `CorruptEventError` with run and seq."""
    if len(record) < _HEADER.size:
        raise CorruptEventError(
            f"event {run_id}#{seq} is truncated ({len(record)} bytes)", run_id=run_id, seq=seq
        )
    version, crc = _HEADER.unpack_from(record)
    body = bytes(record[_HEADER.size :])
    # The checksum covers the version byte too: a flipped version bit is corruption,
    # not a record from a newer perdure (whose checksum would match).
    if _checksum(version, run_id, seq, body) != crc:
        raise CorruptEventError(
            f"event {run_id}#{seq} failed its checksum: the record is corrupt",
            run_id=run_id,
            seq=seq,
        )
    if not 1 <= version <= ENVELOPE_VERSION:
        if version > ENVELOPE_VERSION:
            raise SchemaVersionError(
                f"event {run_id}#{seq} uses envelope version {version}, newer than this "
                f"perdure reads ({ENVELOPE_VERSION}); upgrade perdure to read this store",
                run_id=run_id,
                seq=seq,
            )
        raise CorruptEventError(
            f"event {run_id}#{seq} has unknown envelope version {version}", run_id=run_id, seq=seq
        )
    try:
        data = orjson.loads(body)
        name = data.pop("t")
        version = data.pop("v")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptEventError(
            f"event {run_id}#{seq} is not a valid event record: {exc}", run_id=run_id, seq=seq
        ) from exc
    return _build(run_id, seq, name, version, data)


def from_dict(data: dict[str, Any]) -> Event:
    """Inverse of `to_dict` (used by tools that read exported JSON events)."""
    data = dict(data)
    try:
        run_id, seq = data.pop("run_id"), data.pop("seq")
        name, version = data.pop("t"), data.pop("v")
    except KeyError as exc:
        raise CorruptEventError(
            f"exported event lacks the field {exc.args[0]!r}",
            run_id=str(data.get("run_id", "?")),
            seq=int(data.get("seq", -1)) if isinstance(data.get("seq"), int) else -1,
        ) from None
    return _build(run_id, seq, name, version, data)


def _build(run_id: str, seq: int, name: Any, version: Any, data: dict[str, Any]) -> Event:
    cls = BY_WIRE_NAME.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CorruptEventError(
            f"event {run_id}#{seq} has unknown type {name!r}", run_id=run_id, seq=seq
        )
    if type(version) is not int or version < 1:
        raise CorruptEventError(
            f"event {run_id}#{seq} has invalid schema version {version!r}", run_id=run_id, seq=seq
        )
    if version > cls.VERSION:
        raise SchemaVersionError(
            f"event {run_id}#{seq} ({name} v{version}) was written by a newer perdure "
            f"(this one reads up to v{cls.VERSION}); upgrade perdure to read this store",
            run_id=run_id,
            seq=seq,
        )
    while version < cls.VERSION:
        upcast = UPCASTERS.get((name, version))
        if upcast is None:
            raise CorruptEventError(
                f"event {run_id}#{seq} ({name} v{version}) has no upcaster to v{version + 1}",
                run_id=run_id,
                seq=seq,
            )
        try:
            data = upcast(data)
        except Exception as exc:
            raise CorruptEventError(
                f"event {run_id}#{seq} ({name} v{version}) could not be upgraded: "
                f"{type(exc).__name__}: {exc}",
                run_id=run_id,
                seq=seq,
            ) from exc
        version += 1
    data["run_id"] = run_id
    data["seq"] = seq
    try:
        return _STRUCTURE[cls](data)
    except Exception as exc:  # a missing field, a value of the wrong type
        raise CorruptEventError(
            f"event {run_id}#{seq} ({name}) has malformed fields: {exc}", run_id=run_id, seq=seq
        ) from exc
