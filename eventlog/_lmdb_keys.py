"""Byte layout of the LMDB store: named databases, keys, and index values.

Named databases (``max_dbs`` is small and fixed; never one per run):

==============  ==========================================  ==========================
database        key                                         value
==============  ==========================================  ==========================
``events``      run ‖ 0x00 ‖ seq (8 bytes, big-endian)      codec record (CRC envelope)
``runs``        run                                         01 ‖ CRC32 (4) ‖ RunInfo JSON
``run_order``   status ‖ 0x00 ‖ created (8) ‖ run            empty
``idempotency`` key                                         {run_id, input_digest} JSON
``timers``      due (8) ‖ run ‖ 0x00 ‖ timer id             empty
``timer_ids``   run ‖ 0x00 ‖ timer id                       due (8)
``meta``        b"schema_version"                           ASCII integer
``meta``        b"journal_applied"                          last journal frame in LMDB (8)
``search``      (see `perdure.eventlog._lmdb_search`)       word index, runs by status
==============  ==========================================  ==========================

A ``runs`` value's CRC32 covers the run id and the JSON, so a damaged row (or
one moved under another run's key) is detected; rows written before the
checksum (plain JSON, starting with ``{``) are still read.

``run`` is the run id in UTF-8 (no NUL, checked by `check_batch`); ``due`` and
``created`` are floats encoded so that byte order is numeric order
(`sortable_float`). Byte order of UTF-8 equals code-point order, so the
timers and run_order databases iterate exactly in the `(due_at, run_id,
timer_id)` and `(created_at, run_id)` orders the in-memory log uses.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from perdure.eventlog._errors import StorageError
from perdure.eventlog._events import Event
from perdure.eventlog._index import IndexChanges, index_changes
from perdure.eventlog._protocol import IdempotencyRecord, RunInfo, RunStatus, TimerEntry

if TYPE_CHECKING:
    from lmdb import _Database

#: Layout version of the store (databases and keys), checked at open.
SCHEMA_VERSION = 2
SCHEMA_KEY = b"schema_version"

EVENTS = b"events"
RUNS = b"runs"
RUN_ORDER = b"run_order"
IDEMPOTENCY = b"idempotency"
TIMERS = b"timers"
TIMER_IDS = b"timer_ids"
META = b"meta"
SEARCH = b"search"
#: Journal operations name databases by their index here: new ones go at the end.
DB_NAMES = (EVENTS, RUNS, RUN_ORDER, IDEMPOTENCY, TIMERS, TIMER_IDS, META, SEARCH)
#: Fixed so that a store never grows a database per run.
MAX_DBS = 16
#: LMDB keys are at most 511 bytes; run ids get a fixed share so every key fits.
MAX_KEY_BYTES = 511
MAX_RUN_ID_BYTES = 400


@attrs.frozen
class Databases:
    """Handles of the named databases above, opened once per environment."""

    events: _Database
    runs: _Database
    run_order: _Database
    idempotency: _Database
    timers: _Database
    timer_ids: _Database
    meta: _Database
    #: None only in a read-only view of a store written before the search database existed.
    search: _Database | None = None

    def in_order(self) -> list[_Database]:
        """The handles in `DB_NAMES` order (journal operations name databases by index)."""
        return [getattr(self, name.decode()) for name in DB_NAMES]


_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
SEP = b"\x00"


def sortable_float(value: float) -> bytes:
    """8 bytes whose unsigned byte order is the numeric order of `value` (NaN excluded)."""
    (bits,) = _U64.unpack(_F64.pack(value))
    return _U64.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def unsortable_float(data: bytes) -> float:
    """Inverse of `sortable_float`."""
    (bits,) = _U64.unpack(data)
    return float(_F64.unpack(_U64.pack(bits & ~_SIGN if bits & _SIGN else bits ^ _ALL))[0])


def event_key(run: bytes, seq: int) -> bytes:
    return run + SEP + _U64.pack(seq)


def event_seq(key: bytes) -> int:
    return int(_U64.unpack(key[-8:])[0])


def order_key(status: str, created_at: float, run: bytes) -> bytes:
    return status.encode() + SEP + sortable_float(created_at) + run


def timer_key(due: bytes, run: bytes, timer: bytes) -> bytes:
    return due + run + SEP + timer


def timer_entry(key: bytes) -> TimerEntry:
    """Rebuild a `TimerEntry` from its `timers` key (the value is empty)."""
    run, _, timer = key[8:].partition(SEP)
    return TimerEntry(
        due_at=unsortable_float(key[:8]), run_id=run.decode(), timer_id=timer.decode()
    )


#: First byte of a checksummed `runs` value (older values are plain JSON: ``{``).
_RUN_ROW = b"\x01"
_CRC = struct.Struct(">I")


def dump_run(info: RunInfo) -> bytes:
    body = orjson.dumps(
        {
            "target": info.target,
            "kind": info.kind,
            "status": info.status,
            "created_at": info.created_at,
            "updated_at": info.updated_at,
            "next_seq": info.next_seq,
            "idempotency_key": info.idempotency_key,
        }
    )
    crc = zlib.crc32(body, zlib.crc32(info.run_id.encode()))
    return b"".join((_RUN_ROW, _CRC.pack(crc), body))


def load_run(run_id: str, raw: bytes) -> RunInfo:
    """Parse a `runs` value; a damaged entry is a `StorageError` naming the run."""
    body = raw
    if raw[:1] == _RUN_ROW:
        body = raw[5:]
        if len(raw) < 5 or _CRC.unpack_from(raw, 1)[0] != zlib.crc32(
            body, zlib.crc32(run_id.encode())
        ):
            raise StorageError(
                f"the runs index entry of run {run_id!r} is corrupt: its checksum does not match"
            )
    elif raw[:1] != b"{":
        raise StorageError(f"the runs index entry of run {run_id!r} is corrupt: unknown format")
    try:
        data: dict[str, Any] = orjson.loads(body)
        return RunInfo(run_id=run_id, **data)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise StorageError(f"the runs index entry of run {run_id!r} is corrupt: {exc}") from exc


def dump_claim(run_id: str, input_digest: str) -> bytes:
    return orjson.dumps({"run_id": run_id, "input_digest": input_digest})


def load_claim(key: str, raw: bytes) -> IdempotencyRecord:
    """Parse an `idempotency` value; a damaged entry is a `StorageError` naming the key."""
    try:
        data: dict[str, Any] = orjson.loads(raw)
        return IdempotencyRecord(key=key, run_id=data["run_id"], input_digest=data["input_digest"])
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise StorageError(f"the idempotency entry of key {key!r} is corrupt: {exc}") from exc


@attrs.frozen
class Plan:
    """The keys one append touches besides its events, derived from `index_changes`."""

    run: bytes
    changes: IndexChanges
    claim: bytes | None  # the idempotency key its RunStarted claims
    timers_set: list[tuple[bytes, bytes, bytes]]  # (timer_ids key, due, timers key)
    timers_removed: list[bytes]  # timer_ids keys


def plan(run_id: str, events: Sequence[Event], status: RunStatus | None) -> Plan:
    """Keys of a checked batch; `ValueError` if one cannot fit in an LMDB key."""
    run = run_id.encode()
    if len(run) > MAX_RUN_ID_BYTES:
        raise ValueError(
            f"run id {run_id[:40]!r}... is {len(run)} bytes in UTF-8; the LMDB store allows "
            f"at most {MAX_RUN_ID_BYTES}"
        )
    changes = index_changes(events, status)
    claim = None
    started = changes.started
    if started is not None and started.idempotency_key is not None:
        claim = started.idempotency_key.encode()
        if not claim or len(claim) > MAX_KEY_BYTES:
            raise ValueError(
                f"idempotency key {started.idempotency_key[:40]!r} must be 1 to "
                f"{MAX_KEY_BYTES} bytes in UTF-8"
            )
    timers_set = []
    for timer in changes.timers_set:
        timer_id = timer.timer_id.encode()
        due = sortable_float(timer.due_at)
        key = timer_key(due, run, timer_id)
        if len(key) > MAX_KEY_BYTES:
            raise ValueError(
                f"timer id {timer.timer_id[:40]!r} of run {run_id!r} is too long for the LMDB "
                f"store (run id + timer id must stay under {MAX_KEY_BYTES - 9} bytes)"
            )
        timers_set.append((run + SEP + timer_id, due, key))
    removed = [run + SEP + timer_id.encode() for timer_id in changes.timers_removed]
    return Plan(
        run=run,
        changes=changes,
        claim=claim,
        timers_set=timers_set,
        timers_removed=[key for key in removed if len(key) <= MAX_KEY_BYTES],  # longer: never set
    )
