"""The LMDB writer thread: group commit of appends from any number of event loops.

An LMDB write transaction must begin and commit on the same thread, and a
commit (with its fsync) must never run on an event loop. So every write goes
through one `Writer` thread per open store. It takes everything queued, applies
each append in a child transaction of one write transaction (`_lmdb_batch`: a
failed append is rolled back alone - `SequenceConflictError`,
`IdempotencyKeyTakenError` or a `ValueError` fails only that append), makes the
batch durable once, and only then resolves each caller's future on the
caller's own loop with `loop.call_soon_threadsafe` (`_lmdb_tickets`).

Durable means: with ``durability="fsync"``, the batch's frame is in the journal
(one flush, see `_lmdb_journal`); the LMDB commit follows the acknowledgement,
and reads in this process wait for it (`Writer.caught_up`). With
``"process"``, the LMDB commit has returned.

Batch-level failures: `MapFullError` aborts the batch, doubles the map between
transactions and retries the same batch; any other `lmdb.Error`, or a failed
journal write, fails every append of the batch with `StorageError` (nothing is
acknowledged) and the writer carries on with the next batch. A journaled
batch whose LMDB commit fails is redone from its frame; if that fails too the
writer refuses further appends (reopening re-applies the journal).
"""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import lmdb

from perdure.eventlog._errors import StorageError, StoreClosedError
from perdure.eventlog._events import RunStarted
from perdure.eventlog._lmdb_batch import META_DB, apply_batch, put
from perdure.eventlog._lmdb_journal import (
    APPLIED_KEY,
    Journal,
    Op,
    applied_value,
    apply_ops,
    encode_frame,
)
from perdure.eventlog._lmdb_keys import Databases
from perdure.eventlog._lmdb_tickets import (
    Barrier,
    PendingAppend,
    ResizeGuard,
    Ticket,
    release,
    settle,
)
from perdure.eventlog._protocol import RunInfo

#: Appends per transaction at most; more wait for the next commit.
MAX_BATCH = 4096
#: Doublings of the map allowed for one batch before it is failed.
MAX_GROWTHS = 24
#: Seconds between `reader_check()` runs (a dead process's reader slot pins pages).
READER_CHECK_INTERVAL = 30.0

_STOP = object()
#: Queued by a waiting reader: commit the open transaction now.
_CATCH_UP = object()
#: With the journal, LMDB commits (one flush each) once the writer is idle this
#: long, or once this many batches or seconds have gone into one transaction.
IDLE_COMMIT = 0.001
MAX_PENDING_FRAMES = 256
MAX_PENDING_AGE = 0.02
#: Runs-index rows the writer keeps (a busy run's append then reads nothing).
RUN_CACHE_SIZE = 4096


#: Free bytes under which a failed write is blamed on a full disk.
FULL_DISK_BYTES = 1 << 20


def disk_full(path: str, cause: object) -> int | None:
    """The free bytes of `path`'s filesystem if a failure with `cause` is a full disk, else None.

    LMDB often reports a full disk as an I/O error (the write or the flush
    fails), so the free space decides, not the message alone.
    """
    try:
        fs = os.statvfs(path)
    except OSError:
        return None
    free = fs.f_bavail * fs.f_frsize
    nospace = getattr(cause, "errno", None) == errno.ENOSPC or "No space left" in str(cause)
    return free if nospace or free < FULL_DISK_BYTES else None


class Writer:
    """The one thread that writes to a store; see the module docstring."""

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: Databases,
        guard: ResizeGuard,
        path: str,
        *,
        journal: Journal | None = None,
        next_frame: int = 1,
        flush_first: bool = False,
    ):
        self._env = env
        self._dbs = dbs
        self._handles = dbs.in_order()
        self._journal = journal
        self._next_frame = next_frame
        #: Flush LMDB before anything else (see `recover`): the thread's first act.
        self._flush_first = flush_first
        #: Batches acknowledged / committed to LMDB (they differ while a journaled commit runs).
        self._acked = 0
        self._applied = 0
        self._readers: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._broken: StorageError | None = None
        #: Runs and idempotency keys that acknowledged batches not yet in LMDB touched.
        self._unapplied_runs: set[str] = set()
        self._unapplied_keys: set[str] = set()
        #: The open LMDB transaction holding journaled batches, and their changes.
        self._txn: lmdb.Transaction[bytes] | None = None
        self._txn_began = 0.0
        self._pending: list[list[Op]] = []
        #: Runs-index rows as the open transaction (or LMDB) has them, for busy runs:
        #: filled only with batches that are durable, emptied if LMDB refuses one.
        self._runs: dict[str, RunInfo] = {}
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
            if self._broken is not None and type(item) is PendingAppend:
                raise self._broken
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
            if self._flush_first:
                try:
                    self._env.sync(True)
                except lmdb.Error as exc:  # no frame may lie on what is not durable
                    self._break(StorageError(f"flushing the store at {self._path} failed: {exc}"))
            stop = False
            next_check = time.monotonic() + READER_CHECK_INTERVAL
            while not stop:
                if time.monotonic() >= next_check:
                    with suppress(lmdb.Error):
                        self._env.reader_check()
                    next_check = time.monotonic() + READER_CHECK_INTERVAL
                wait = READER_CHECK_INTERVAL if self._txn is None else IDLE_COMMIT
                try:
                    first = self._queue.get(timeout=wait)
                except queue.Empty:
                    self._commit_pending()  # idle: let LMDB catch up with the journal
                    continue
                batch = [first]
                # This thread alone takes from the queue: `empty()` is exact here, and
                # cheaper than the `queue.Empty` a lone append's batch would raise.
                while len(batch) < MAX_BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                if batch[-1] is _STOP:  # nothing is queued after _STOP (submit refuses)
                    batch.pop()
                    stop = True
                batch = [item for item in batch if item is not _CATCH_UP]
                if batch:
                    self._process(batch)
                if self._txn is not None and (
                    stop
                    or self._readers
                    or len(self._pending) >= MAX_PENDING_FRAMES
                    or time.monotonic() - self._txn_began >= MAX_PENDING_AGE
                ):
                    self._commit_pending()
        finally:
            try:
                self._commit_pending()
            finally:
                with self._lock:
                    self._stopping = True
                self._fail_queued()

    def _process(self, batch: list[Any]) -> None:
        appends: list[PendingAppend] = [item for item in batch if type(item) is PendingAppend]
        acked = False

        def acknowledge(outcomes: list[BaseException | None]) -> None:
            nonlocal acked
            acked = True
            self._post(batch, outcomes)

        try:
            if self._broken is not None:
                acknowledge([self._broken for _ in appends])
            elif appends:
                self._commit(appends, acknowledge)
        except BaseException as exc:  # a bug here must not strand the waiting callers
            if not acked:
                error = StorageError(
                    f"the writer of {self._path} failed: {exc!r}; nothing acknowledged"
                )
                acknowledge([error for _ in appends])
            else:
                self._break(StorageError(f"the writer of {self._path} failed: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
        if not acked:
            acknowledge([])

    def _post(self, batch: list[Any], outcomes: list[BaseException | None]) -> None:
        """Hand every item of `batch` its outcome on its own loop."""
        if len(batch) == 1:  # the common case of a lone caller, without the grouping
            ticket = batch[0].ticket
            outcome = outcomes[0] if outcomes else None
            try:  # noqa: SIM105 - no `suppress` object: this runs once per step
                ticket.loop.call_soon_threadsafe(settle, [(ticket, outcome)])
            except RuntimeError:  # a closed loop: nobody is waiting any more
                pass
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Ticket, BaseException | None]]] = {}
        results = iter(outcomes)
        for item in batch:
            outcome = next(results, None) if type(item) is PendingAppend else None
            by_loop.setdefault(item.ticket.loop, []).append((item.ticket, outcome))
        for loop, settled in by_loop.items():
            with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(settle, settled)

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or item is _CATCH_UP:
                continue
            error = StoreClosedError(f"the LMDB store at {self._path} closed before this append")
            with suppress(RuntimeError):
                item.ticket.loop.call_soon_threadsafe(settle, [(item.ticket, error)])
        self._wake_readers(None)

    # -- read barrier --------------------------------------------------------------------------

    def unapplied_run(self, run_id: str) -> bool:
        """Whether an acknowledged batch of `run_id` is not in LMDB yet (any thread)."""
        return run_id in self._unapplied_runs

    def unapplied_key(self, key: str) -> bool:
        """Whether an acknowledged batch claimed idempotency `key` but is not in LMDB yet."""
        return key in self._unapplied_keys

    async def caught_up(self, *, run_id: str | None = None, key: str | None = None) -> None:
        """Return once every batch acknowledged so far is visible to readers.

        With the journal a batch is acknowledged before its LMDB commit (see
        `_lmdb_journal`); reads in this process wait here for that commit, so
        they always see what they were told is stored. A read of one run (or
        one idempotency key) waits only if an uncommitted batch touched it: a
        new run reading its empty log does not force a commit.
        """
        if run_id is not None and run_id not in self._unapplied_runs:
            return
        if key is not None and key not in self._unapplied_keys:
            return
        target = self._acked
        if self._applied >= target:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._applied >= target:
                return
            if self._broken is not None:
                raise self._broken
            if self._stopping and not self._thread.is_alive():
                return  # stopped: LMDB holds all it ever will
            self._readers.append((target, loop, future))
            if not self._stopping:
                self._queue.put(_CATCH_UP)  # wakes the writer to commit now
        await future

    def _mark_applied(self, batches: int) -> None:
        with self._lock:
            self._applied += batches
            if not self._readers:
                return
        self._wake_readers(None)

    def _wake_readers(self, error: BaseException | None) -> None:
        with self._lock:
            applied = self._applied
            ready = [r for r in self._readers if error is not None or r[0] <= applied]
            self._readers = [r for r in self._readers if not (error is not None or r[0] <= applied)]
        for _, loop, future in ready:
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(release, future, error)

    def _break(self, error: StorageError) -> None:
        """Refuse every later append: LMDB could not take a batch the journal holds."""
        self._runs = {}
        with self._lock:
            if self._broken is None:
                self._broken = error
        self._wake_readers(error)

    # -- one batch -----------------------------------------------------------------------------

    def _commit(
        self,
        appends: list[PendingAppend],
        acknowledge: Callable[[list[BaseException | None]], None],
    ) -> None:
        """Write one batch and `acknowledge` each append's outcome, in order.

        Each append goes in a child transaction, so a failing one is rolled back
        alone; a batch of one needs no child. A batch whose appends all failed
        writes nothing. Without the journal the batch is its own LMDB
        transaction, acknowledged once committed. With it, the batch is a child
        of the open LMDB transaction (`_txn`), acknowledged once its frame is
        durable; that transaction is committed later (`_commit_pending`).
        """
        for _ in range(MAX_GROWTHS):
            journaled = self._journal is not None
            try:
                parent = self._open_txn() if journaled else None
                txn = self._env.begin(write=True, parent=parent)
            except lmdb.Error as exc:
                acknowledge(self._failed(appends, exc))
                return
            try:
                outcomes, ops, written, rows = apply_batch(
                    self._env, self._dbs, txn, appends, self._runs
                )
                if not written:
                    txn.abort()
                    acknowledge(outcomes)
                    return
                if not journaled:
                    self._commit_txn(txn)
                    self._remember(rows)
                    self._count(written)
                    self._acked += 1
                    self._mark_applied(1)
                    acknowledge(outcomes)
                    return
                assert self._journal is not None
                number = self._next_frame
                value = applied_value(number)
                put(txn, APPLIED_KEY, value, self._dbs.meta)
                ops.append((META_DB, APPLIED_KEY, value))
                frame = encode_frame(number, ops, self._journal.salt)  # type: ignore[arg-type]
                if len(frame) > self._journal.room:
                    txn.commit()  # into the open transaction; all of it is made durable now
                    self._next_frame += 1
                    self._pending.append(ops)
                    if not self._commit_pending():
                        acknowledge(self._failed(appends, "LMDB refused the batch"))
                        return
                    self._remember(rows)
                    self._checkpoint()
                    self._count(written)
                    self._acked += 1
                    acknowledge(outcomes)
                    return
                if not self._journal.fits(frame):
                    txn.abort()
                    self._checkpoint()
                    continue  # the same batch again, its frame now at the journal's start
                # Merged before the frame is written, so that nothing but the acknowledgement
                # is left to do once it is durable (the woken callers need the GIL).
                try:
                    txn.commit()  # into the open transaction: no I/O
                except lmdb.Error as exc:
                    self._drop_unjournaled()  # the open transaction may be half-merged
                    acknowledge(self._failed(appends, exc))
                    return
                try:
                    self._write_journal(frame)
                except OSError as exc:
                    self._drop_unjournaled()
                    acknowledge(self._failed(appends, exc))
                    return
                self._pending.append(ops)
                self._next_frame += 1
                self._remember(rows)
                self._count(written)
                self._note_unapplied(appends, outcomes)
                self._acked += 1
                acknowledge(outcomes)  # durable now; LMDB catches up later
                return
            except lmdb.MapFullError:
                txn.abort()
                if journaled and not self._commit_pending():
                    acknowledge(self._failed(appends, "LMDB refused a journaled batch"))
                    return
                self._grow()
                continue
            except (lmdb.Error, OSError) as exc:
                txn.abort()
                acknowledge(self._failed(appends, exc))
                return
            except BaseException:
                txn.abort()
                raise
        error = StorageError(
            f"the LMDB store at {self._path} cannot grow its map enough for a batch"
        )
        acknowledge([error for _ in appends])

    def _drop_unjournaled(self) -> None:
        """Take a batch whose frame could not be written back out of the open transaction.

        It was merged already, so the open transaction is aborted and the
        journaled batches it held are redone in a transaction of their own.
        """
        txn, pending = self._txn, self._pending
        self._txn, self._pending = None, []
        if txn is not None:
            with suppress(lmdb.Error):
                txn.abort()
        if pending:
            self._redo_pending(pending, "the open transaction had to be dropped")

    def _note_unapplied(
        self, appends: list[PendingAppend], outcomes: list[BaseException | None]
    ) -> None:
        """Remember what a batch going into the open transaction touched (`caught_up`)."""
        runs, keys = self._unapplied_runs, self._unapplied_keys
        for item, outcome in zip(appends, outcomes, strict=True):
            if outcome is None:
                runs.add(item.run_id)
                first = item.events[0]
                if type(first) is RunStarted and first.idempotency_key is not None:
                    keys.add(first.idempotency_key)

    def _applied_all(self, batches: int) -> None:
        """LMDB holds every acknowledged batch now."""
        self._unapplied_runs = set()
        self._unapplied_keys = set()
        self._mark_applied(batches)

    def _failed(self, appends: list[PendingAppend], cause: object) -> list[BaseException | None]:
        free = disk_full(self._path, cause)
        if free is not None:
            error = StorageError(
                f"the disk holding the store at {self._path} is full ({free} bytes free): "
                f"this append was not stored, and nothing acknowledged before is lost. Free "
                f"some space and retry (LMDB said: {cause})"
            )
        else:
            error = StorageError(
                f"commit to the LMDB store at {self._path} failed ({cause}); "
                "nothing of this append was acknowledged"
            )
        return [error for _ in appends]

    def _remember(self, rows: dict[str, RunInfo]) -> None:
        """Cache the runs-index rows of a batch LMDB holds (or will, from the journal)."""
        if len(self._runs) + len(rows) > RUN_CACHE_SIZE:
            self._runs = {}
        self._runs.update(rows)

    def _count(self, written: int) -> None:
        self.appends += written
        self.batches += 1
        self.last_batch_size = written

    # -- the open transaction (journal only) ---------------------------------------------------

    def _open_txn(self) -> lmdb.Transaction[bytes]:
        if self._txn is None:
            self._txn = self._env.begin(write=True)
            self._txn_began = time.monotonic()
        return self._txn

    def _commit_pending(self) -> bool:
        """Commit the open transaction: LMDB catches up with the journal. False if it cannot.

        Its batches are durable in the journal already, so a failed commit is not
        their callers' failure: their changes are applied again in a fresh
        transaction (growing the map if that is what failed). If LMDB still
        refuses, the writer stops taking appends; reopening the store re-applies
        the journal.
        """
        txn, pending = self._txn, self._pending
        if txn is None:
            return True
        self._txn, self._pending = None, []
        try:
            self._commit_txn(txn)
        except lmdb.Error as first:
            with suppress(lmdb.Error):
                txn.abort()
            return self._redo_pending(pending, first)
        self._applied_all(len(pending))
        return True

    def _redo_pending(self, pending: list[list[Op]], cause: object) -> bool:
        """Apply journaled batches again in a fresh transaction; else stop taking appends."""
        if self._redo([op for ops in pending for op in ops]):
            self._applied_all(len(pending))
            return True
        self._break(
            StorageError(
                f"the LMDB store at {self._path} could not take batches that are durable in "
                f"its journal ({cause}); it refuses further appends. Nothing acknowledged is "
                "lost: close and reopen the store (after fixing the cause, e.g. a full disk) "
                "to re-apply the journal"
            )
        )
        return False

    def _redo(self, ops: list[Op]) -> bool:
        for _ in range(MAX_GROWTHS):
            txn = self._env.begin(write=True)
            try:
                apply_ops(txn, self._handles, ops)
                self._commit_txn(txn)
            except lmdb.MapFullError:
                with suppress(lmdb.Error):
                    txn.abort()
                self._grow()
                continue
            except (lmdb.Error, StorageError):
                with suppress(lmdb.Error):
                    txn.abort()
                return False
            return True
        return False

    def _checkpoint(self) -> None:
        """Make LMDB hold everything durably, so the journal can start over."""
        assert self._journal is not None
        if not self._commit_pending():
            raise lmdb.Error("LMDB refused batches of the journal")
        self._env.sync(True)
        self._journal.rewind()

    def _commit_txn(self, txn: lmdb.Transaction[bytes]) -> None:
        """Commit (a seam for fault-injection tests)."""
        txn.commit()

    def _write_journal(self, frame: bytes) -> None:
        """Write a frame durably (a seam for fault-injection tests)."""
        assert self._journal is not None
        self._journal.write(frame)

    def _grow(self) -> None:
        """Double the map size; only between transactions, never beside a read."""
        try:
            with self._guard.resizing():
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        except lmdb.Error:  # the next attempt fails again and reports StorageError
            pass
