"""`LmdbEventLog`: the embedded, durable `EventLog` on LMDB, with group commit.

Layout: see `_lmdb_keys`. Opening, sharing and locking: `_lmdb_env`. Writes:
`_lmdb_writer` (one thread, one transaction and one journal flush per batch of
appends; `_lmdb_journal`). Reads run on the caller's thread in short read
transactions, after the commit of every batch already acknowledged; values
are copied out and decoded after the transaction ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import lmdb

from perdure.eventlog import _lmdb_snapshot as _snapshot
from perdure.eventlog._codec import GC_PAUSE_FROM, decode, gc_paused
from perdure.eventlog._errors import (
    CorruptEventError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
)
from perdure.eventlog._events import Event, RunCompleted
from perdure.eventlog._lmdb_env import SharedEnv, acquire, release
from perdure.eventlog._lmdb_keys import (
    MAX_KEY_BYTES,
    MAX_RUN_ID_BYTES,
    SEP,
    event_key,
    event_seq,
    load_claim,
    load_run,
    sortable_float,
    timer_entry,
)
from perdure.eventlog._lmdb_search import is_ready, status_counts
from perdure.eventlog._lmdb_tickets import Barrier, PendingAppend, Ticket
from perdure.eventlog._protocol import (
    RUN_STATUSES,
    Durability,
    IdempotencyRecord,
    LogStatistics,
    RunInfo,
    RunStatus,
    TimerEntry,
    check_batch,
)

if TYPE_CHECKING:
    from lmdb import _Database

#: The stdlib logger perdure logs to (the host configures it; fields are record attributes).
logger = logging.getLogger("perdure")

DEFAULT_MAP_SIZE = 1 << 30


class LmdbEventLog:
    """The `EventLog` in an LMDB store at `path` (a directory; created owner-only if missing).

    `durability` chooses what an acknowledged append survives:

    - ``"fsync"`` (default): a batch is acknowledged once it is on stable
      storage - one flush of the store's journal, shared by every append
      queued meanwhile (group commit); LMDB is updated right after (see
      `perdure.eventlog._lmdb_journal`). Survives process crashes, OS crashes
      and power loss.
    - ``"process"``: commits reach the OS page cache but are not fsynced.
      Survives a crash of this process (even SIGKILL), not an OS crash or power
      loss, which can lose recent commits - and, as LMDB documents for
      ``MDB_NOSYNC``, can even leave the store damaged on a filesystem that
      reorders writes. Several times faster per commit.

    One process at a time may open a store for writing (a second gets
    `StoreLockedError`); ``read_only=True`` opens beside a running writer, sees
    its commits as they land and refuses writes with `ReadOnlyStoreError`.
    Opening the same store twice in one process shares one environment and one
    writer thread. `map_size` is the initial LMDB map (address space, not disk);
    the writer doubles it whenever it fills up.

    Cancelling a caller waiting in `append` does not withdraw the append: it
    may still commit (read the run back to know).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        read_only: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
    ) -> None:
        if durability not in ("fsync", "process"):
            raise ValueError(f"durability must be 'fsync' or 'process', not {durability!r}")
        if map_size <= 0:
            raise ValueError(f"map_size must be positive, not {map_size!r}")
        self._path = os.fspath(path)
        self._durability: Durability = durability
        self._read_only = read_only
        self._shared: SharedEnv = acquire(
            self._path, durability=durability, read_only=read_only, map_size=map_size
        )
        self._closed = False

    def __repr__(self) -> str:
        mode = "read-only" if self._read_only else self._durability
        state = ", closed" if self._closed else ""
        return f"LmdbEventLog({self._path!r}, {mode}{state})"

    @property
    def path(self) -> str:
        return self._path

    @property
    def durability(self) -> Durability:
        return self._durability

    @property
    def read_only(self) -> bool:
        return self._read_only

    def _open_env(self) -> SharedEnv:
        if self._closed:
            raise StoreClosedError(f"this LmdbEventLog ({self._path}) is closed")
        shared = self._shared
        if shared.forked:
            raise StorageError(
                f"this LmdbEventLog ({self._path}) was opened before fork(); an LMDB store "
                "cannot cross fork, open it again in this process"
            )
        return shared

    # -- writes ----------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: RunStatus | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        """`EventLog.append`, plus `on_durable`: called once on the caller's event loop
        as soon as the batch is durable, before this coroutine resumes (the runtime
        wakes code waiting on the outcome one loop iteration sooner). Not called if
        the append fails; if it raises, `append` raises that although the batch is
        stored.
        """
        shared = self._open_env()
        if self._read_only or shared.writer is None:
            raise ReadOnlyStoreError(f"the store at {self._path} is open read-only")
        check_batch(run_id, expected_seq, events, status)
        loop = asyncio.get_running_loop()
        if on_durable is None:
            ticket = Ticket(loop, loop.create_future())
        else:
            context = contextvars.copy_context()
            ticket = Ticket(loop, loop.create_future(), on_durable, context)
        # Encoding and key building happen on the writer thread, keeping the loop's share small.
        shared.writer.submit(PendingAppend(ticket, run_id, expected_seq, tuple(events), status))
        await ticket.future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        shared = self._shared
        try:
            if not self._read_only and shared.writer is not None and not shared.forked:
                loop = asyncio.get_running_loop()
                barrier = Ticket(loop, loop.create_future())
                try:
                    shared.writer.submit(Barrier(barrier))
                except StoreClosedError:
                    pass
                else:
                    await barrier.future
        finally:
            release(shared)

    async def copy(self, dest: str | os.PathLike[str]) -> None:
        """Write a consistent, compacted copy of the live store into the new directory `dest`."""
        shared = self._open_env()
        await shared.caught_up()
        await asyncio.to_thread(shared.copy_to, os.fspath(dest))

    # -- reads -----------------------------------------------------------------------------

    async def read(self, run_id: str, from_seq: int = 0) -> list[Event]:
        shared = self._open_env()
        await shared.caught_up(run_id=run_id)
        if from_seq < 0:
            raise ValueError(f"read of run {run_id!r}: from_seq {from_seq} must be >= 0")
        run = _run_key(run_id)
        if run is None:
            return []
        dbs = shared.dbs

        def collect(txn: lmdb.Transaction[bytes]) -> tuple[int, list[tuple[bytes, bytes]]]:
            raw = txn.get(run, db=dbs.runs)
            next_seq = load_run(run_id, raw).next_seq if raw is not None else 0
            # Scan by key prefix, not up to the index's next_seq: a damaged index
            # entry must be reported below, never silently hide events.
            found: list[tuple[bytes, bytes]] = []
            prefix = run + SEP
            cursor = txn.cursor(db=dbs.events)
            if cursor.set_range(event_key(run, from_seq)):
                for key, value in cursor.iternext():
                    if not key.startswith(prefix):
                        break
                    found.append((key, value))
            return next_seq, found

        next_seq, records = shared.read(collect)
        events: list[Event] = []
        with gc_paused() if len(records) >= GC_PAUSE_FROM else contextlib.nullcontext():
            for expected, (key, record) in enumerate(records, start=from_seq):
                seq = event_seq(key)
                if seq != expected:
                    raise CorruptEventError(
                        f"event {run_id}#{expected} is missing from the store",
                        run_id=run_id,
                        seq=expected,
                    )
                events.append(decode(run_id, seq, record))
        missing = from_seq + len(records)
        if records and missing > next_seq:
            raise CorruptEventError(
                f"the runs index says run {run_id!r} ends before seq {next_seq}, but its "
                f"events go on to seq {missing - 1}: the index entry is corrupt",
                run_id=run_id,
                seq=next_seq,
            )
        if missing < next_seq:
            raise CorruptEventError(
                f"event {run_id}#{missing} is missing from the store "
                f"(the run is at seq {next_seq})",
                run_id=run_id,
                seq=missing,
            )
        return events

    async def read_with_snapshot(self, run_id: str) -> tuple[bytes | None, list[Event]]:
        """The run's snapshot (the payload given to `write_snapshot`) and the events after it;
        (None, every event) when there is no snapshot that still fits the log.

        A snapshot fits if its file is sound and the record it was taken after is
        still the run's record at that seq (see `perdure.eventlog._lmdb_snapshot`).
        """
        shared = self._open_env()
        run = _run_key(run_id)
        data = _snapshot.load(_snapshot.snapshot_file(self._path, run_id)) if run else None
        found = _snapshot.unpack(run_id, data) if data is not None else None
        if found is not None and run is not None:
            seq, after_crc, payload = found
            await shared.caught_up(run_id=run_id)
            key = event_key(run, seq - 1)
            record = shared.read(lambda txn: txn.get(key, db=shared.dbs.events))
            if (
                record is not None
                and len(record) >= 5
                and _snapshot.record_crc(record) == after_crc
            ):
                return payload, await self.read(run_id, seq)
        return None, await self.read(run_id)

    async def write_snapshot(self, run_id: str, seq: int, payload: bytes) -> bool:
        """Keep `payload` (a run's state folded from its events ``0 .. seq-1``) beside the log;
        False if not written (read-only store, no event at ``seq - 1``, a file error)."""
        shared = self._open_env()
        run = _run_key(run_id)
        if self._read_only or run is None or seq < 1:
            return False
        await shared.caught_up(run_id=run_id)
        key = event_key(run, seq - 1)
        record = shared.read(lambda txn: txn.get(key, db=shared.dbs.events))
        if record is None or len(record) < 5:
            return False
        data = _snapshot.pack(run_id, seq, _snapshot.record_crc(record), payload)
        return await asyncio.to_thread(
            _snapshot.save, _snapshot.snapshot_file(self._path, run_id), data
        )

    async def get_run(self, run_id: str) -> RunInfo | None:
        shared = self._open_env()
        await shared.caught_up(run_id=run_id)
        run = _run_key(run_id)
        if run is None:
            return None
        raw = shared.read(lambda txn: txn.get(run, db=shared.dbs.runs))
        return None if raw is None else load_run(run_id, raw)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        shared = self._open_env()
        await shared.caught_up()
        if limit is not None and limit < 0:
            raise ValueError(f"list_runs: limit {limit} must be >= 0")
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"list_runs: unknown status {status!r}")
        dbs = shared.dbs
        statuses = RUN_STATUSES if status is None else (status,)

        skipped: list[tuple[str, str]] = []

        def collect(txn: lmdb.Transaction[bytes]) -> list[RunInfo]:
            # Each status's keys are ordered by (created_at, run id); merging keeps that order.
            orders = [_suffixes(txn, dbs.run_order, s.encode() + SEP) for s in statuses]
            found: list[RunInfo] = []
            skipped.clear()  # a retried read starts over
            for suffix in heapq.merge(*orders):
                if limit is not None and len(found) >= limit:
                    break
                run = suffix[8:]
                run_id = run.decode(errors="backslashreplace")
                raw = txn.get(run, db=dbs.runs)
                if raw is None:
                    skipped.append((run_id, "it is in the run order index but not in runs"))
                    continue
                try:
                    info = load_run(run.decode(), raw)
                except (StorageError, UnicodeDecodeError) as exc:
                    skipped.append((run_id, str(exc)))
                    continue
                if target is None or info.target == target:
                    found.append(info)
            return found

        found = shared.read(collect)
        for run_id, reason in skipped:  # one damaged row must not hide every other run
            logger.warning(
                "skipped a run whose runs-index row cannot be read",
                extra={"run_id": run_id, "store": self._path, "reason": reason},
            )
        return found

    async def lookup_idempotency(self, key: str) -> IdempotencyRecord | None:
        shared = self._open_env()
        await shared.caught_up(key=key)
        raw_key = key.encode()
        if not raw_key or len(raw_key) > MAX_KEY_BYTES:
            return None
        raw = shared.read(lambda txn: txn.get(raw_key, db=shared.dbs.idempotency))
        return None if raw is None else load_claim(key, raw)

    # -- reads without the event loop (sync callers' fast path) ------------------------------

    def _settled_in_lmdb(self, *, run_id: str | None = None, key: str | None = None) -> bool:
        """True if every batch acknowledged to this process that touched `run_id` (or claimed
        `key`) is in LMDB already, so a read now sees what `caught_up` would wait for."""
        writer = self._open_env().writer
        if writer is None:
            return True
        return not (
            (run_id is not None and writer.unapplied_run(run_id))
            or (key is not None and writer.unapplied_key(key))
        )

    def keyed_completed_now(
        self, key: str
    ) -> tuple[IdempotencyRecord, RunInfo, RunCompleted] | None:
        """The run holding idempotency `key`, if it completed: its claim, its index row and
        its final `RunCompleted`, read from any thread without waiting, in one transaction;
        None otherwise, or if a batch acknowledged to this process for the key or the run
        is not in LMDB yet (then ask `lookup_idempotency` and `read`)."""
        shared = self._open_env()
        raw_key = key.encode()
        if not raw_key or len(raw_key) > MAX_KEY_BYTES or not self._settled_in_lmdb(key=key):
            return None
        dbs = shared.dbs

        def collect(
            txn: lmdb.Transaction[bytes],
        ) -> tuple[IdempotencyRecord, RunInfo, bytes] | None:
            raw = txn.get(raw_key, db=dbs.idempotency)
            if raw is None:
                return None
            held = load_claim(key, raw)
            run = _run_key(held.run_id)
            row = txn.get(run, db=dbs.runs) if run is not None else None
            if run is None or row is None:
                return None
            info = load_run(held.run_id, row)
            if info.status != "completed" or info.next_seq < 1:
                return None
            record = txn.get(event_key(run, info.next_seq - 1), db=dbs.events)
            return None if record is None else (held, info, record)

        found = shared.read(collect)
        if found is None or not self._settled_in_lmdb(run_id=found[0].run_id):
            return None
        held, info, record = found
        last = decode(held.run_id, info.next_seq - 1, record)
        return (held, info, last) if type(last) is RunCompleted else None

    def completed_now(self, run_id: str) -> tuple[RunInfo, RunCompleted] | None:
        """A completed run's index row and its final `RunCompleted`, from any thread, without
        waiting; None unless LMDB holds the run as completed and nothing acknowledged to this
        process for it is missing from LMDB (then read it the usual way)."""
        shared = self._open_env()
        run = _run_key(run_id)
        if run is None or not self._settled_in_lmdb(run_id=run_id):
            return None
        dbs = shared.dbs

        def collect(txn: lmdb.Transaction[bytes]) -> tuple[RunInfo, bytes | None] | None:
            raw = txn.get(run, db=dbs.runs)
            if raw is None:
                return None
            info = load_run(run_id, raw)
            if info.status != "completed" or info.next_seq < 1:
                return info, None
            return info, txn.get(event_key(run, info.next_seq - 1), db=dbs.events)

        found = shared.read(collect)
        if found is None or found[1] is None:
            return None
        info = found[0]
        last = decode(run_id, info.next_seq - 1, found[1])
        return (info, last) if type(last) is RunCompleted else None

    async def due_timers(self, now: float, limit: int = 256) -> list[TimerEntry]:
        shared = self._open_env()
        await shared.caught_up()
        if limit < 0:
            raise ValueError(f"due_timers: limit {limit} must be >= 0")
        bound = sortable_float(now)

        def collect(txn: lmdb.Transaction[bytes]) -> list[bytes]:
            keys: list[bytes] = []
            if limit == 0:
                return keys
            for key in txn.cursor(db=shared.dbs.timers).iternext(values=False):
                if key[:8] > bound:
                    break
                keys.append(key)
                if len(keys) >= limit:
                    break
            return keys

        return [timer_entry(key) for key in shared.read(collect)]

    async def next_timer(self) -> TimerEntry | None:
        shared = self._open_env()
        await shared.caught_up()

        def first(txn: lmdb.Transaction[bytes]) -> bytes | None:
            cursor = txn.cursor(db=shared.dbs.timers)
            return cursor.key() if cursor.first() else None

        key = shared.read(first)
        return None if key is None else timer_entry(key)

    async def statistics(self) -> LogStatistics:
        shared = self._open_env()
        await shared.caught_up()
        dbs = shared.dbs

        def collect(txn: lmdb.Transaction[bytes]) -> tuple[dict[str, int], int, int, int]:
            counts: dict[str, int] = {}
            if dbs.search is not None and is_ready(txn, dbs.meta):  # the writer's counters
                for _, status, runs in status_counts(txn, dbs.search, 0.0):
                    counts[status] = counts.get(status, 0) + runs
                counts = {status: counts[status] for status in RUN_STATUSES if status in counts}
            else:
                for status in RUN_STATUSES:
                    count = sum(1 for _ in _suffixes(txn, dbs.run_order, status.encode() + SEP))
                    if count:
                        counts[status] = count
            return (
                counts,
                txn.stat(dbs.events)["entries"],
                txn.stat(dbs.timers)["entries"],
                txn.stat(dbs.idempotency)["entries"],
            )

        counts, events, timers, keys = shared.read(collect)
        writer = shared.writer
        return LogStatistics(
            runs_by_status=counts,
            events=events,
            timers=timers,
            idempotency_keys=keys,
            size_bytes=shared.data_size(),
            appends=writer.appends if writer is not None else 0,
            batches=writer.batches if writer is not None else 0,
            last_batch_size=writer.last_batch_size if writer is not None else 0,
        )


def _run_key(run_id: str) -> bytes | None:
    """The run's key bytes, or None for an id that no stored run can have."""
    run = run_id.encode()
    if not run or len(run) > MAX_RUN_ID_BYTES or SEP in run:
        return None
    return run


def _suffixes(txn: lmdb.Transaction[bytes], db: _Database, prefix: bytes) -> Iterator[bytes]:
    """Keys of `db` that start with `prefix`, in order, with the prefix cut off."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    for key in cursor.iternext(values=False):
        if not key.startswith(prefix):
            return
        yield key[len(prefix) :]
