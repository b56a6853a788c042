"""The LMDB store's ``search`` database: a word index of runs and counters of runs by status.

Keys (values empty unless said):

====================================================  ========================================
key                                                   meaning
====================================================  ========================================
``t`` ‖ term ‖ 0x00 ‖ created (8) ‖ run               the run has `term` (newest last per term)
``r`` ‖ run ‖ 0x00 ‖ term                             the same entry, found from the run (only
                                                      for error terms: the others are checked
                                                      on the run's row)
``s`` ‖ hour (8) ‖ status                             value: how many runs created in that hour
                                                      have that status now (8 bytes, big-endian)
====================================================  ========================================

A run's terms are its searchable text (run id, target, idempotency key, and the
error type and message of a failed run), lower-cased, taken from the start of
the text and from the start of each word in it (a word starts after a character
that is neither a letter nor a digit). A search for ``abc`` finds the runs with
a term that starts with ``abc``: ``order-abc-1`` is found by ``order``,
``abc`` and ``abc-1``, not by ``bc``. The writer keeps both in the same write
transaction as the runs index (`index_append`), so they are exactly as durable;
`backfill` builds them once for a store written before they existed.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import lmdb

from perdure.eventlog._errors import StorageError
from perdure.eventlog._events import Event, RunFailed
from perdure.eventlog._protocol import RunInfo

if TYPE_CHECKING:
    from lmdb import _Database

    from perdure.eventlog._lmdb_journal import Op

#: Set in ``meta`` once the search database holds every run (new store, or `backfill` done).
READY_KEY = b"search_ready"
SEP = b"\x00"
TERM = b"t"
RUN = b"r"
STAT = b"s"
#: A term is at most this many bytes (a longer query is cut to it, then checked on the run).
MAX_TERM_BYTES = 96
#: Terms taken from one text (its start and the first words); error messages can be long.
MAX_TERMS_PER_TEXT = 12
HOUR = 3600.0
_U64 = struct.Struct(">Q")
_WORD_BREAK = re.compile(r"[\W_]+")


def _cut(text: str) -> bytes:
    """`text` in UTF-8, at most `MAX_TERM_BYTES` (cut on a character boundary), no NUL."""
    raw = text.replace("\x00", "").encode()
    if len(raw) <= MAX_TERM_BYTES:
        return raw
    return raw[:MAX_TERM_BYTES].decode(errors="ignore").encode()


def _text_terms(text: str) -> list[bytes]:
    low = text.lower()
    found = []
    for start in [0, *(m.end() for m in _WORD_BREAK.finditer(low))][:MAX_TERMS_PER_TEXT]:
        term = _cut(low[start:]) if start < len(low) else b""
        if term:
            found.append(term)
    return found


#: Targets repeat from run to run: their terms are worked out once.
_target_terms = functools.lru_cache(maxsize=1024)(_text_terms)


def terms(texts: Iterable[str], target: str = "") -> set[bytes]:
    """The index terms of some texts (and of a target): each text and each of its words'
    suffixes, lower-cased."""
    found = set(_target_terms(target)) if target else set()
    for text in texts:
        if text:
            found.update(_text_terms(text))
    return found


def query_term(needle: str) -> bytes:
    """The index prefix a text filter looks up (empty: the filter cannot use the index)."""
    return _cut(needle.lower())


def matches(texts: Iterable[str], needle: str) -> bool:
    """Whether `needle` finds a run with these texts (the same rule as the index)."""
    wanted = query_term(needle)
    return any(term.startswith(wanted) for term in terms(texts))


def _hour(created_at: float) -> bytes:
    return _U64.pack(max(0, int(created_at // HOUR)))


def hour_of(key: bytes) -> float:
    """Start (seconds since the epoch) of the hour of a ``s`` key."""
    return float(_U64.unpack_from(key, 1)[0]) * HOUR


def sortable(created_at: float) -> bytes:
    from perdure.eventlog._lmdb_keys import sortable_float

    return sortable_float(created_at)


class _Writes:
    """Puts and deletes in the search database, each also recorded as a journal operation."""

    def __init__(
        self, txn: lmdb.Transaction[bytes], db: _Database, ops: list[Op] | None, index: int
    ) -> None:
        self.txn, self.db, self.ops, self.index = txn, db, ops, index

    def put(self, key: bytes, value: bytes) -> None:
        if not self.txn.put(key, value, db=self.db):
            raise StorageError(f"LMDB refused to store search key {key!r}")
        if self.ops is not None:
            self.ops.append((self.index, key, value))

    def delete(self, key: bytes) -> None:
        self.txn.delete(key, db=self.db)
        if self.ops is not None:
            self.ops.append((self.index, key, None))

    def add_terms(
        self, run: bytes, created: bytes, found: set[bytes], *, from_run: bool = False
    ) -> None:
        """Index `found` for the run; `from_run`: also under the run (terms its row lacks)."""
        for term in found:
            self.put(TERM + term + SEP + created + run, b"")
            if from_run:
                self.put(RUN + run + SEP + term, b"")

    def bump(self, created_at: float, status: str, delta: int) -> None:
        key = STAT + _hour(created_at) + status.encode()
        raw = self.txn.get(key, db=self.db)
        count = (_U64.unpack(raw)[0] if raw is not None else 0) + delta
        if count > 0:
            self.put(key, _U64.pack(count))
        elif raw is not None:
            self.delete(key)


def index_append(
    writes: tuple[lmdb.Transaction[bytes], _Database, list[Op], int],
    before: RunInfo | None,
    after: RunInfo,
    events: Iterable[Event],
) -> None:
    """Update the search database for one append; `writes` is (txn, db, ops, db index)."""
    sink = _Writes(*writes)
    run = after.run_id.encode()
    created = sortable(after.created_at)
    if (
        before is None
        or before.target != after.target
        or before.idempotency_key != after.idempotency_key
    ):
        texts = (after.run_id, after.idempotency_key or "")
        sink.add_terms(run, created, terms(texts, after.target))
    if after.status == "failed" and (before is None or before.status != "failed"):
        for event in events:
            if type(event) is RunFailed:
                found = terms((event.error_type, event.message))
                sink.add_terms(run, created, found, from_run=True)
    if before is None or (before.status, before.created_at) != (after.status, after.created_at):
        if before is not None:
            sink.bump(before.created_at, before.status, -1)
        sink.bump(after.created_at, after.status, 1)


def backfill(
    txn: lmdb.Transaction[bytes],
    db: _Database,
    runs: _Database,
    events: _Database,
    meta: _Database,
) -> None:
    """Index every run of a store written before the search database existed (once)."""
    from perdure.eventlog._codec import decode
    from perdure.eventlog._lmdb_keys import event_key, load_run

    if txn.get(READY_KEY, db=meta) is not None:
        return
    sink = _Writes(txn, db, None, 0)
    cursor = txn.cursor(db=runs)
    for key, raw in cursor.iternext():
        info = load_run(key.decode(), raw)
        created = sortable(info.created_at)
        sink.add_terms(key, created, terms((info.run_id, info.target, info.idempotency_key or "")))
        if info.status == "failed" and info.next_seq > 0:
            last = txn.get(event_key(key, info.next_seq - 1), db=events)
            if last is not None:
                event = decode(info.run_id, info.next_seq - 1, last)
                if type(event) is RunFailed:
                    found = terms((event.error_type, event.message))
                    sink.add_terms(key, created, found, from_run=True)
        sink.bump(info.created_at, info.status, 1)
    if not txn.put(READY_KEY, b"1", db=meta):
        raise StorageError("LMDB refused to mark the search index ready")


def is_ready(txn: lmdb.Transaction[bytes], meta: _Database) -> bool:
    return txn.get(READY_KEY, db=meta) is not None


def term_hits(
    txn: lmdb.Transaction[bytes], db: _Database, prefix: bytes, cap: int
) -> list[bytes] | None:
    """``created ‖ run`` of the runs with a term starting with `prefix`, newest first; None
    when there are more than `cap` (the caller then walks the runs in order instead)."""
    cursor = txn.cursor(db=db)
    start = TERM + prefix
    found: set[bytes] = set()
    if cursor.set_range(start):
        for key in cursor.iternext(values=False):
            if not key.startswith(start):
                break
            cut = key.index(SEP, len(start))
            found.add(key[cut + 1 :])
            if len(found) > cap:
                return None
    return sorted(found, reverse=True)


def run_has_term(txn: lmdb.Transaction[bytes], db: _Database, run: bytes, prefix: bytes) -> bool:
    """Whether `run` has an error term starting with `prefix` (one key read); its other
    terms come from its row (check those with `matches`)."""
    cursor = txn.cursor(db=db)
    start = RUN + run + SEP + prefix
    return bool(cursor.set_range(start)) and cursor.key().startswith(start)


def status_counts(
    txn: lmdb.Transaction[bytes], db: _Database, since: float
) -> Iterator[tuple[float, str, int]]:
    """(hour start, status, runs) for each hour from the one holding `since`."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(STAT + _hour(since)):
        return
    for key, value in cursor.iternext():
        if not key.startswith(STAT):
            return
        yield hour_of(key), key[9:].decode(), int(_U64.unpack(value)[0])
