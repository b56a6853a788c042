"""The LMDB writer thread: group commit of appends from any number of event loops.

An LMDB write transaction must begin and commit on the same thread, and a
commit (with its fsync) must never run on an event loop. So every write goes
through one `Writer` thread per open store. It takes everything queued, applies
each append in a child transaction of one write transaction (a failed append
is rolled back alone: `SequenceConflictError`, `IdempotencyKeyTakenError` or a
`ValueError` fails only that append), commits once - one fsync for the whole
batch - and only then resolves each caller's future on the caller's own loop
with `loop.call_soon_threadsafe`.

Batch-level failures: `MapFullError` aborts the batch, doubles the map between
transactions and retries the same batch; any other `lmdb.Error` fails every
append of the batch with `StorageError` (nothing is acknowledged) and the
writer carries on with the next batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import attrs
import lmdb

from perdure.eventlog._codec import encode
from perdure.eventlog._errors import (
    IdempotencyKeyTakenError,
    SequenceConflictError,
    StorageError,
    StoreClosedError,
)
from perdure.eventlog._events import Event, RunStarted
from perdure.eventlog._index import updated_run
from perdure.eventlog._lmdb_keys import (
    SEP,
    Databases,
    dump_claim,
    dump_run,
    event_key,
    load_claim,
    load_run,
    order_key,
    plan,
    timer_key,
)
from perdure.eventlog._protocol import RunStatus

if TYPE_CHECKING:
    from lmdb import _Database

#: Appends per transaction at most; more wait for the next commit.
MAX_BATCH = 4096
#: Doublings of the map allowed for one batch before it is failed.
MAX_GROWTHS = 24
#: Seconds between `reader_check()` runs (a dead process's reader slot pins pages).
READER_CHECK_INTERVAL = 30.0
#: Seconds of CPU the writer spends on a batch before it lets other threads take the
#: GIL. Without it, an event loop waiting for the GIL waits for the interpreter's
#: switch interval (5 ms) while a big batch is applied.
YIELD_AFTER = 0.0005
#: Appenders woken per event-loop iteration when a batch settles (see `_settle`).
SETTLE_CHUNK = 64


class ResizeGuard:
    """Keeps `set_mapsize` (which needs no open transaction in the process) apart from reads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def resizing(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


@attrs.define(slots=True, eq=False)
class Ticket:
    """Where to report an outcome: a future on the loop that waits for it."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


@attrs.define(slots=True, eq=False)
class PendingAppend:
    """One append (already through `check_batch`), waiting for the writer."""

    ticket: Ticket
    run_id: str
    expected_seq: int
    events: tuple[Event, ...]
    status: RunStatus | None


@attrs.define(slots=True, eq=False)
class Barrier:
    """Resolved once everything queued before it is committed (used by `close`)."""

    ticket: Ticket


_STOP = object()


class Writer:
    """The one thread that writes to a store; see the module docstring."""

    def __init__(self, env: lmdb.Environment, dbs: Databases, guard: ResizeGuard, path: str):
        self._env = env
        self._dbs = dbs
        self._guard = guard
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"perdure-writer:{path}", daemon=True
        )
        self.appends = 0
        self.batches = 0
        self.last_batch_size = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: PendingAppend | Barrier) -> None:
        """Queue an item; `StoreClosedError` once the writer is stopping."""
        with self._lock:
            if self._stopping:
                raise StoreClosedError(f"the LMDB store at {self._path} is closed")
            self._queue.put(item)

    def stop(self) -> None:
        """Commit everything already queued, then end the thread (blocks until it has)."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put(_STOP)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            next_check = time.monotonic() + READER_CHECK_INTERVAL
            while not stop:
                if time.monotonic() >= next_check:
                    with suppress(lmdb.Error):
                        self._env.reader_check()
                    next_check = time.monotonic() + READER_CHECK_INTERVAL
                try:
                    first = self._queue.get(timeout=READER_CHECK_INTERVAL)
                except queue.Empty:
                    continue
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if batch[-1] is _STOP:  # nothing is queued after _STOP (submit refuses)
                    batch.pop()
                    stop = True
                self._process(batch)
        finally:
            with self._lock:
                self._stopping = True
            self._fail_queued()

    def _process(self, batch: list[Any]) -> None:
        appends: list[PendingAppend] = [item for item in batch if type(item) is PendingAppend]
        fatal: BaseException | None = None
        try:
            outcomes = self._commit(appends) if appends else []
        except BaseException as exc:  # a bug here must not strand the waiting callers
            outcomes = [
                StorageError(f"the writer of {self._path} failed: {exc!r}; nothing acknowledged")
                for _ in appends
            ]
            fatal = None if isinstance(exc, Exception) else exc
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, BaseException | None]]] = {}
        results = iter(outcomes)
        for item in batch:
            outcome = next(results) if type(item) is PendingAppend else None
            by_loop.setdefault(item.ticket.loop, []).append((item.ticket, outcome))
        for loop, settled in by_loop.items():
            with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, settled)
        if fatal is not None:
            raise fatal

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                continue
            error = StoreClosedError(f"the LMDB store at {self._path} closed before this append")
            with suppress(RuntimeError):
                item.ticket.loop.call_soon_threadsafe(_settle, [(item.ticket, error)])

    def _commit(self, appends: list[PendingAppend]) -> list[BaseException | None]:
        """Write one batch in one transaction; the outcome of each append, in order.

        Each append goes in a child transaction, so a failing one is rolled back
        alone; a batch of one needs no child. A batch whose appends all failed
        is aborted, not committed: nothing to make durable, no fsync.
        """
        env = self._env
        single = len(appends) == 1
        for _ in range(MAX_GROWTHS):
            outcomes: list[BaseException | None] = [None] * len(appends)
            txn = env.begin(write=True)
            next_yield = time.perf_counter() + YIELD_AFTER
            try:
                for index, item in enumerate(appends):
                    if index & 15 == 15 and time.perf_counter() >= next_yield:
                        time.sleep(0)  # hands the GIL to a waiting event loop
                        next_yield = time.perf_counter() + YIELD_AFTER
                    child = txn if single else env.begin(write=True, parent=txn)
                    try:
                        self._apply(child, item)
                    except lmdb.Error:
                        if not single:
                            child.abort()
                        raise
                    except Exception as exc:  # this append's own failure only
                        if not single:
                            child.abort()
                        outcomes[index] = exc
                        continue
                    if not single:
                        child.commit()
                written = sum(
                    len(item.events)
                    for item, outcome in zip(appends, outcomes, strict=True)
                    if outcome is None
                )
                if written:
                    self._commit_txn(txn)
                else:
                    txn.abort()
            except lmdb.MapFullError:
                txn.abort()
                self._grow()
                continue
            except lmdb.Error as exc:
                txn.abort()
                return [
                    StorageError(
                        f"commit to the LMDB store at {self._path} failed ({exc}); "
                        "nothing of this append was acknowledged"
                    )
                    for _ in appends
                ]
            except BaseException:
                txn.abort()
                raise
            if written:
                self.appends += written
                self.batches += 1
                self.last_batch_size = written
            return outcomes
        return [
            StorageError(f"the LMDB store at {self._path} cannot grow its map enough for a batch")
            for _ in appends
        ]

    def _commit_txn(self, txn: lmdb.Transaction[bytes]) -> None:
        """Commit (a seam for fault-injection tests)."""
        txn.commit()

    def _grow(self) -> None:
        """Double the map size; only between transactions, never beside a read."""
        try:
            with self._guard.resizing():
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        except lmdb.Error:  # the next attempt fails again and reports StorageError
            pass

    def _apply(self, txn: lmdb.Transaction[bytes], item: PendingAppend) -> None:
        """Validate one append against `txn` (which sees earlier appends), then write it.

        The checks run in the in-memory log's order, so both raise the same error
        for the same bad append.
        """
        dbs = self._dbs
        keys = plan(item.run_id, item.events, item.status)
        run = keys.run
        raw = txn.get(run, db=dbs.runs)
        info = None if raw is None else load_run(item.run_id, raw)
        actual = 0 if info is None else info.next_seq
        if actual != item.expected_seq:
            raise SequenceConflictError(
                f"append to run {item.run_id!r} expected next seq {item.expected_seq}, "
                f"but the run is at {actual}",
                run_id=item.run_id,
                expected=item.expected_seq,
                actual=actual,
            )
        started = keys.changes.started
        if keys.claim is not None:
            held_raw = txn.get(keys.claim, db=dbs.idempotency)
            if held_raw is not None:
                held = load_claim(keys.claim.decode(), held_raw)
                if held.run_id != item.run_id:
                    raise IdempotencyKeyTakenError(
                        f"idempotency key {held.key!r} is held by run {held.run_id!r}",
                        key=held.key,
                        existing_run_id=held.run_id,
                        existing_digest=held.input_digest,
                    )
        if info is None and not isinstance(item.events[0], RunStarted):
            raise ValueError(
                f"append to unknown run {item.run_id!r}: its first event must be RunStarted"
            )
        records = [encode(event) for event in item.events]
        updated = updated_run(item.run_id, info, keys.changes, actual + len(records))
        for offset, record in enumerate(records):
            key = event_key(run, actual + offset)
            if not txn.put(key, record, db=dbs.events, overwrite=False):
                raise StorageError(
                    f"event {item.run_id}#{actual + offset} is already stored although the runs "
                    f"index puts run {item.run_id!r} at seq {actual}: the store is inconsistent; "
                    "nothing of this append was written"
                )
        _put(txn, run, dump_run(updated), dbs.runs)
        if info is None or (info.status, info.created_at) != (updated.status, updated.created_at):
            if info is not None:
                txn.delete(order_key(info.status, info.created_at, run), db=dbs.run_order)
            _put(txn, order_key(updated.status, updated.created_at, run), b"", dbs.run_order)
        if keys.claim is not None and started is not None:
            _put(txn, keys.claim, dump_claim(item.run_id, started.input_digest), dbs.idempotency)
        prefix = len(run) + len(SEP)
        for lookup in keys.timers_removed:
            due = txn.pop(lookup, db=dbs.timer_ids)
            if due is not None:
                txn.delete(timer_key(due, run, lookup[prefix:]), db=dbs.timers)
        for lookup, due, key in keys.timers_set:
            _put(txn, lookup, due, dbs.timer_ids)
            _put(txn, key, b"", dbs.timers)


def _put(txn: lmdb.Transaction[bytes], key: bytes, value: bytes, db: _Database) -> None:
    if not txn.put(key, value, db=db):
        raise StorageError(f"LMDB refused to store key {key!r}")


def _settle(settled: list[tuple[Ticket, BaseException | None]]) -> None:
    """Runs on the caller's loop: hand each waiting append its outcome.

    A big batch wakes its appenders `SETTLE_CHUNK` at a time, one chunk per
    loop iteration, so other callbacks (timers, I/O) run in between instead
    of waiting behind a thousand resumed tasks.
    """
    for ticket, outcome in settled[:SETTLE_CHUNK]:
        future = ticket.future
        if future.done():  # the caller was cancelled; the outcome stands regardless
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
    if len(settled) > SETTLE_CHUNK:
        settled[0][0].loop.call_soon(_settle, settled[SETTLE_CHUNK:])
