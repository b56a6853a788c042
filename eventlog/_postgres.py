"""`PostgresEventLog`: the `EventLog` on a PostgreSQL database, shared by many processes.

Tables and the server-side ``append`` function: `_postgres_schema`. Events are
stored as the same checksummed JSON envelope as in the LMDB store (``bytea``),
decoded by the same codec; never pickle. One append is one statement (one
round trip, one transaction): the run's ``next_seq`` advances only where it
still equals the expected seq, so concurrent appenders in any number of
processes conflict exactly like they do on the other logs, and an idempotency
key is unique store-wide. Appends of different runs made while a commit is in
flight share the next one (group commit: ``append_many``, each append still
fenced and checked alone), and so do claims of runs made at once.

Connections come from a psycopg pool opened on first use, on the event loop
that first uses the log (like `LmdbEventLog`, one log object serves one loop
at a time). Appends of one run from this process reach the database in the
order they were made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

import psycopg
import psycopg_pool
from psycopg.types.json import Jsonb

from perdure.eventlog._codec import decode, encode_all
from perdure.eventlog._errors import (
    CorruptEventError,
    IdempotencyKeyTakenError,
    LeaseLostError,
    ReadOnlyStoreError,
    SchemaVersionError,
    SequenceConflictError,
    StorageError,
    StoreClosedError,
)
from perdure.eventlog._events import Event, RunStarted
from perdure.eventlog._index import index_changes
from perdure.eventlog._postgres_schema import (
    KEY_TAKEN_SQLSTATE,
    SCHEMA_VERSION,
    check_schema_name,
    is_postgres_url,
    migration_statements,
    redact,
)
from perdure.eventlog._protocol import (
    RUN_STATUSES,
    IdempotencyRecord,
    LogStatistics,
    RunInfo,
    RunStatus,
    TimerEntry,
    check_batch,
)
from perdure.eventlog.tasks import cancel_and_wait

DEFAULT_LEASE_TTL = 10.0
#: `claim_run` reads the events of runs up to this long with the claim (one round trip).
_PREFETCH = 64
#: At most this many appends go in one group commit (the server runs one transaction's
#: appends one after another: more commits in flight spread them over its cores).
_MAX_BATCH = 128
_RUN_COLUMNS = "run_id, target, kind, status, created_at, updated_at, next_seq, idempotency_key"


def _text(value: str | None, what: str) -> None:
    if value is not None and "\x00" in value:
        raise ValueError(f"{what} {value!r} contains a NUL character (PostgreSQL text cannot)")


class PostgresEventLog:
    """The `EventLog` in PostgreSQL at `dsn` (a ``postgresql://`` URL), in schema `schema`.

    The tables are created (or migrated) on first use. Many processes may open
    the same store at once; every append is checked against the run's next
    sequence in its own transaction. ``read_only=True`` refuses appends with
    `ReadOnlyStoreError` and creates nothing: opening a schema that holds no
    store raises `StorageError`. `pool_size` bounds this object's connections.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "perdure",
        read_only: bool = False,
        pool_size: int = 10,
        lease_ttl: float = DEFAULT_LEASE_TTL,
    ) -> None:
        if not is_postgres_url(dsn):
            raise ValueError(f"dsn must be a postgresql:// URL, got {dsn!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an int >= 1, not {pool_size!r}")
        if (
            isinstance(lease_ttl, bool)
            or not isinstance(lease_ttl, int | float)
            or not 0.1 <= lease_ttl <= 3600
        ):
            raise ValueError(
                f"lease_ttl must be a number of seconds in [0.1, 3600], not {lease_ttl!r}"
            )
        self._lease_ttl = float(lease_ttl)
        self._dsn = dsn
        self._schema = check_schema_name(schema)
        self._read_only = read_only
        self._pool_size = pool_size
        self._pool: psycopg_pool.AsyncConnectionPool | None = None
        self._opening: asyncio.Future[psycopg_pool.AsyncConnectionPool] | None = None
        self._closed = False
        #: run id -> (lock, [appends queued, next seq last seen or -1])
        self._run_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._appends = 0
        self._batches = 0
        self._last_batch = 0
        s = self._schema
        self._append_sql = f"SELECT * FROM {s}.append_many(%s::jsonb, %s, %s)"
        call = (
            f"{s}.append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s::bytea[], %s::text[], %s::text[], %s::float8[], %s, %s, %s)"
        )
        self._append_one_sql = f"SELECT {call}"
        #: Runs whose settling committed and whose `settled` notice is not sent yet, and
        #: whether a notice statement is in flight (`_send_settled`).
        self._settled: list[str] = []
        self._notifying = False
        #: Group commit: appends waiting for the next commit, commits in flight, and at
        #: most how many at once (each on its own pooled connection).
        self._queue: list[_Append] = []
        self._flushing = 0
        self._max_flushes = max(1, min(4, pool_size - 1))
        self._flushes: set[asyncio.Task[None]] = set()
        self._commits = 0
        #: Appends under way, and what `close` waits on for them to end.
        self._active = 0
        self._drained: asyncio.Event | None = None
        #: Claims waiting to be sent together (`claim_run`), and claim statements in flight.
        self._claims: list[tuple[str, asyncio.Future[tuple[Any, ...]]]] = []
        self._claims_flushing = 0
        #: run id -> the run's event bodies read by `claim_run`, for the `read` after it.
        self._prefetched: dict[str, list[bytes]] = {}
        #: This log object's lease owner id (host:pid:random): what the runs it drives name.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        #: run id -> the epoch of the lease this log holds on it.
        self._leases: dict[str, int] = {}
        #: runs whose lease this log held and lost (a renewal did not find it).
        self._lost: set[str] = set()
        #: run id -> how many times this log lost the run's lease (see `lease_losses`).
        self._losses: dict[str, int] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        #: Serialises `claim_due_timers` with `release_run` (see there); created lazily,
        #: on the loop that uses the log.
        self._claiming: asyncio.Lock | None = None
        #: The runs the latest `claim_due_timers` returned timers of.
        self._claimed: set[str] = set()
        #: Whether this log recorded itself as a worker process (`register_worker`).
        self._worker = False
        #: Per-run requests made at once go together, one statement per batch (like
        #: claims): reads of logs and of runs' rows, lease releases, hand-overs.
        self._reads: _Batches[tuple[str, int], list[tuple[int, bytes]]] = _Batches(
            self, self._read_many
        )
        self._releases: _Batches[tuple[str, int], bool] = _Batches(self, self._release_many)
        self._lookups: _Batches[str, RunInfo | None] = _Batches(self, self._get_runs)
        self._handovers: _Batches[tuple[str, int | None, str], None] = _Batches(
            self, self._hand_over_many
        )
        #: Runs claimed here whose inbox held no message when claimed, and no inbox
        #: notice came since: `take_messages` answers them without a round trip.
        self._no_messages: set[str] = set()
        #: Inbox notices seen (a claim made before one may have missed its message).
        self._inbox_notices = 0
        #: target -> (its kind as the workers serve it, when asked): `served_kind`'s cache.
        self._served: dict[str, tuple[asyncio.Task[str | None], float]] = {}

    def __repr__(self) -> str:
        mode = ", read-only" if self._read_only else ""
        state = ", closed" if self._closed else ""
        return f"PostgresEventLog({redact(self._dsn)!r}, schema={self._schema!r}{mode}{state})"

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def commits(self) -> int:
        """Transactions this log committed appends in: fewer than its appends when
        appends of several runs went together (group commit)."""
        return self._commits

    # -- connections -------------------------------------------------------------------------

    async def _connections(self) -> psycopg_pool.AsyncConnectionPool:
        if self._closed:
            raise StoreClosedError(f"this PostgresEventLog ({redact(self._dsn)}) is closed")
        pool = self._pool
        if pool is not None:
            return pool
        opening = self._opening
        if opening is None:
            opening = self._opening = asyncio.get_running_loop().create_future()
            try:
                pool = await self._open()
            except BaseException as exc:
                self._opening = None
                opening.set_exception(exc)
                opening.exception()  # retrieved: only the waiters below re-raise it
                raise
            self._pool = pool
            opening.set_result(pool)
            return pool
        return await asyncio.shield(opening)

    async def _open(self) -> psycopg_pool.AsyncConnectionPool:
        pool = psycopg_pool.AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            open=False,
            name=f"perdure-{self._schema}",
        )
        where = redact(self._dsn)
        try:
            # One direct connection first: an unreachable server fails at once, not after
            # the pool's retries.
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            async with conn:
                await self._migrate(conn)
            await pool.open(wait=True, timeout=30)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error | psycopg_pool.PoolTimeout):
                raise StorageError(f"cannot open the PostgreSQL store at {where}: {exc}") from exc
            raise
        return pool

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        s = self._schema
        where = f"{redact(self._dsn)} (schema {s})"
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"perdure:{s}",))
            cur = await conn.execute(
                "SELECT 1 FROM information_schema.tables "
                "WHERE table_schema = %s AND table_name = 'schema_version'",
                (s,),
            )
            if await cur.fetchone() is None:
                if self._read_only:
                    raise StorageError(f"no perdure store at {where}")
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
                await conn.execute(f"CREATE TABLE {s}.schema_version (version integer NOT NULL)")
                await conn.execute(f"INSERT INTO {s}.schema_version VALUES (0)")
            row = await (await conn.execute(f"SELECT version FROM {s}.schema_version")).fetchone()
            version = int(row[0]) if row is not None else 0
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the store at {where} has layout version {version}, newer than this "
                    f"perdure knows ({SCHEMA_VERSION}); upgrade perdure to open it"
                )
            if version < SCHEMA_VERSION and self._read_only:
                raise StorageError(
                    f"the store at {where} has layout version {version}; open it for writing "
                    f"once to migrate it to {SCHEMA_VERSION}"
                )
            if version == SCHEMA_VERSION:
                if not self._read_only:
                    await _ensure_text_index(conn, s)
                return
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in migration_statements(s, step):
                    await conn.execute(statement)
            await conn.execute(f"UPDATE {s}.schema_version SET version = %s", (SCHEMA_VERSION,))
            await _ensure_text_index(conn, s)

    async def _query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        pool = await self._connections()
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL store {redact(self._dsn)}: {exc}") from exc

    # -- writes ------------------------------------------------------------------------------

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
        as soon as the batch is committed, before this coroutine resumes. Not called if
        the append fails; if it raises, `append` raises that although the batch is
        stored.
        """
        if self._closed:
            raise StoreClosedError(f"this PostgreSQL event log ({redact(self._dsn)}) is closed")
        self._active += 1  # `close` waits for these
        try:
            await self._append(run_id, expected_seq, events, status, on_durable)
        finally:
            self._active -= 1
            if not self._active and self._drained is not None:
                self._drained.set()

    async def _append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        status: RunStatus | None,
        on_durable: Callable[[], None] | None,
    ) -> None:
        if self._read_only:
            raise ReadOnlyStoreError(f"the store at {redact(self._dsn)} is open read-only")
        check_batch(run_id, expected_seq, events, status)
        self._prefetched.pop(run_id, None)
        if run_id in self._lost:
            raise _lease_lost(run_id)
        changes = index_changes(events, status)
        started = changes.started
        if started is not None:
            _text(started.idempotency_key, "idempotency key")
            _text(started.target, "target")
        for timer in changes.timers_set:
            _text(timer.timer_id, "timer id")
        try:
            bodies = encode_all(run_id, events)
        except Exception:
            # A stale seq is reported before an unencodable value, as on the other logs.
            info = await self.get_run(run_id)
            actual = info.next_seq if info is not None else 0
            if actual != expected_seq:
                raise _conflict(run_id, expected_seq, actual) from None
            raise
        new_status = changes.status or ("running" if started is not None else None)
        # A settled run's waiters in other processes look at it again: the notice goes
        # out once the commit is done (best effort: `wait`'s poll covers a lost one).
        notify = new_status is not None and new_status != "running"
        pool = await self._connections()
        # Appends of one run leave this process in the order they were made. While
        # several are queued, the run's next seq seen by the last one is kept: seqs only
        # grow, so a queued append below it conflicts without a round trip.
        entry = self._run_locks.get(run_id)
        if entry is None:
            entry = self._run_locks[run_id] = (asyncio.Lock(), [0, -1])
        lock, state = entry
        state[0] += 1
        try:
            async with lock:
                if expected_seq < state[1]:
                    raise _conflict(run_id, expected_seq, state[1])
                if run_id in self._lost:
                    raise _lease_lost(run_id)
                epoch = self._leases.get(run_id)
                outcome = await self._commit(
                    pool,
                    _Append(
                        run_id=run_id,
                        expected=expected_seq,
                        status=new_status,
                        started=started,
                        first_started=isinstance(events[0], RunStarted),
                        updated=changes.last_ts,
                        bodies=bodies,
                        removed=list(changes.timers_removed),
                        timer_ids=[t.timer_id for t in changes.timers_set],
                        dues=[t.due_at for t in changes.timers_set],
                        epoch=epoch,
                        notify=notify,
                    ),
                )
                kind, _, number = outcome.partition(" ")
                if kind == "ok":
                    state[1] = expected_seq + len(events)
                    if epoch is None:
                        self._leases[run_id] = int(number)
                        self._start_renewing()
                elif kind == "conflict":
                    state[1] = int(number)
        finally:
            state[0] -= 1
            if state[0] == 0:
                del self._run_locks[run_id]
        if kind != "ok":
            if kind == "not-started":
                raise ValueError(
                    f"append to unknown run {run_id!r}: its first event must be RunStarted"
                )
            if kind == "fenced":
                self._mark_lost(run_id)
                raise _lease_lost(run_id)
            if outcome.startswith("key-taken\n") and started is not None:
                rest = outcome[len("key-taken\n") :]
                holder, _, digest = rest.rpartition("\n")
                key = started.idempotency_key or ""
                raise IdempotencyKeyTakenError(
                    f"idempotency key {key!r} is held by run {holder!r}",
                    key=key,
                    existing_run_id=holder,
                    existing_digest=digest,
                )
            raise _conflict(run_id, expected_seq, int(number))
        self._appends += len(events)
        self._batches += 1
        self._last_batch = len(events)
        if on_durable is not None:
            on_durable()

    # -- group commit ------------------------------------------------------------------------

    async def _commit(self, pool: psycopg_pool.AsyncConnectionPool, entry: _Append) -> str:
        """`append`'s answer for `entry`, committed together with the appends of other
        runs made meanwhile (group commit: one statement, one transaction, one synced
        commit for all of them). While fewer than `_max_flushes` commits are in flight,
        the appender sends what is queued itself (a lone append waits for nobody);
        otherwise its append goes with the next commit, sent when one finishes."""
        self._queue.append(entry)
        if self._flushing < self._max_flushes:
            await self._flush(pool)
        return await entry.future

    async def _flush(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Commit every queued append in one `append_many` statement; settle their
        futures. Never raises for an append's failure: each future carries its own."""
        queue = self._queue
        if not queue:
            return
        batch, self._queue = queue[:_MAX_BATCH], queue[_MAX_BATCH:]
        if self._queue and self._flushing + 1 < self._max_flushes:
            # More than one commit's worth waits: the server works on them in parallel.
            self._spawn_flush(pool)
        # Rows are locked in run id order, like `renew_leases` does: two transactions
        # that lock some of the same runs' rows never wait for each other in a cycle.
        batch.sort(key=_by_run)
        self._flushing += 1
        try:
            try:
                answers = await self._append_many(pool, batch)
            except psycopg.Error as exc:
                if len(batch) == 1 or exc.sqlstate is None:
                    for entry in batch:
                        _settle_failed(entry, self._append_failed(entry, exc))
                    return
                # The server refused the statement (nothing of it committed): one bad
                # append must not fail the others, so each is tried alone.
                await self._one_by_one(pool, batch)
                return
            except ValueError:
                # A number JSON cannot carry (inf, nan), found before anything was sent:
                # each alone, with scalar parameters.
                await self._one_by_one(pool, batch)
                return
            for entry, answer in zip(batch, answers, strict=True):
                if not entry.future.done():
                    entry.future.set_result(answer)
            self._announce(batch, answers)
        except BaseException as exc:
            # Cancelled (or the pool gave out) with the statement maybe sent: whether
            # it committed is unknown, which the appenders are told.
            error = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(
                    f"append to the PostgreSQL store {redact(self._dsn)} interrupted "
                    f"(it may or may not have committed; read the run back to know): {exc!r}"
                )
            )
            for entry in batch:
                _settle_failed(entry, error)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flushing -= 1
            if self._queue and self._flushing < self._max_flushes:
                self._spawn_flush(pool)

    def _spawn_flush(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        self._spawn(self._flush(pool))

    async def _one_by_one(
        self, pool: psycopg_pool.AsyncConnectionPool, batch: Sequence[_Append]
    ) -> None:
        for entry in batch:
            try:
                answer = await self._append_one(pool, entry)
            except psycopg.Error as alone:
                _settle_failed(entry, self._append_failed(entry, alone))
            else:
                if not entry.future.done():
                    entry.future.set_result(answer)
                self._announce([entry], [answer])

    def _announce(self, batch: Sequence[_Append], answers: Sequence[str]) -> None:
        """Queue the `settled` notices of the runs these committed appends settled."""
        for entry, answer in zip(batch, answers, strict=True):
            if entry.notify and answer.startswith("ok"):
                self._settled.append(entry.run_id)
        if self._settled and not self._notifying:
            self._notifying = True
            self._spawn(self._send_settled())

    async def _send_settled(self) -> None:
        """Send the queued `settled` notices, one statement for all queued meanwhile, after
        their runs' commits (not inside them: a transaction that notifies holds the
        server's one notice lock until its commit is flushed, so commits that notify,
        of every process, would wait for each other). The notice statement's own commit
        is not waited for on disk (``synchronous_commit`` off for it alone): it writes
        no data."""
        try:
            while self._settled:
                runs, self._settled = self._settled, []
                with contextlib.suppress(StorageError, psycopg_pool.PoolTimeout):
                    await self._query(
                        "SELECT set_config('synchronous_commit', 'off', true), "
                        "pg_notify(%s, r) FROM unnest(%s::text[]) AS r",
                        (self._channel("settled"), runs),
                    )
        finally:
            self._notifying = False

    async def _append_many(
        self, pool: psycopg_pool.AsyncConnectionPool, batch: Sequence[_Append]
    ) -> list[str]:
        if len(batch) == 1:
            return [await self._append_one(pool, batch[0])]
        meta = [
            (
                *_run_fields(entry),
                [body.hex() for body in entry.bodies],
                entry.removed,
                entry.timer_ids,
                entry.dues,
                entry.epoch,
                None,  # (the notice channel: settled notices go after the commit)
            )
            for entry in batch
        ]
        params = (json.dumps(meta, allow_nan=False), self.owner, self._lease_ttl)
        async with pool.connection() as conn:
            cur = await conn.execute(self._append_sql, params)
            rows = await cur.fetchall()
        self._commits += 1
        return [row[0] for row in rows]

    async def _append_one(self, pool: psycopg_pool.AsyncConnectionPool, entry: _Append) -> str:
        """A lone append: `append` itself, with scalar parameters (what dumping
        `append_many`'s arrays costs in Python is most of a lone append's CPU)."""
        params = (
            *_run_fields(entry),
            entry.bodies,
            entry.removed,
            entry.timer_ids,
            entry.dues,
            self.owner,
            entry.epoch,
            self._lease_ttl,
        )
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(self._append_one_sql, params)
                row = await cur.fetchone()
            self._commits += 1
        except psycopg.Error as exc:
            if exc.sqlstate != KEY_TAKEN_SQLSTATE:
                raise
            # Nothing written: the key's holder and its digest, as `append_many` says it.
            holder = exc.diag.message_primary or ""
            return f"key-taken\n{holder}\n{exc.diag.message_detail or ''}"
        assert row is not None
        answer: str = row[0]
        return answer

    def _append_failed(self, entry: _Append, exc: BaseException) -> StorageError:
        return StorageError(
            f"append to run {entry.run_id!r} in the PostgreSQL store {redact(self._dsn)} "
            f"failed (it may or may not have committed; read the run back to know): {exc}"
        )

    # -- leases ------------------------------------------------------------------------------

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    async def claim_run(self, run_id: str) -> None:
        """Take the run's lease before driving it (before reading its log to rebuild it).

        Succeeds if nobody holds the lease, it expired (by the database's clock), or this
        log holds it; the epoch goes up by one, which fences every append made under an
        earlier lease. Raises `LeaseLostError` while another process holds it. A run that
        does not exist yet needs no claim: its first append takes the lease.
        """
        pool = await self._connections()
        if self._read_only:
            raise ReadOnlyStoreError(f"the store at {redact(self._dsn)} is open read-only")
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        notices = self._inbox_notices
        self._claims.append((run_id, future))
        if self._claims_flushing < self._max_flushes:
            await self._flush_claims(pool)
        epoch, exists, owner, until, next_seq, bodies, waiting = await future
        if not exists:
            self._prefetched[run_id] = []
        elif bodies is not None and len(bodies) == next_seq:
            self._prefetched[run_id] = bodies
        if epoch is not None:
            self._leases[run_id] = int(epoch)
            self._lost.discard(run_id)
            # No message waited when the run was claimed, and none was announced since
            # the claim was asked for (one sent meanwhile is announced: its notice finds
            # the run held here): `take_messages` need not ask.
            if not waiting and notices == self._inbox_notices:
                self._no_messages.add(run_id)
            else:
                self._no_messages.discard(run_id)
            self._start_renewing()
            return
        if exists:
            raise LeaseLostError(
                f"run {run_id!r} is driven by another process ({owner}, lease until "
                f"{until or '?'} UTC)",
                run_id=run_id,
            )

    async def _flush_claims(self, pool: psycopg_pool.AsyncConnectionPool) -> None:
        """Claim every queued run in one statement (like appends, claims made meanwhile go
        together: a thousand runs starting at once cost a few round trips, not a thousand).
        Never raises for a claim's failure: each future carries its own answer."""
        queue = self._claims
        if not queue:
            return
        batch, self._claims = queue[:_MAX_BATCH], queue[_MAX_BATCH:]
        if self._claims and self._claims_flushing + 1 < self._max_flushes:
            self._spawn(self._flush_claims(pool))
        self._claims_flushing += 1
        try:
            try:
                answers = await self._claim_many(pool, sorted({run_id for run_id, _ in batch}))
            except BaseException as exc:
                error = StorageError(f"PostgreSQL store {redact(self._dsn)}: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                        future.exception()  # retrieved: its claimer re-raises it
                if not isinstance(exc, Exception):
                    raise
                return
            for run_id, future in batch:
                if not future.done():
                    future.set_result(answers[run_id])
        finally:
            self._claims_flushing -= 1
            if self._claims and self._claims_flushing < self._max_flushes:
                self._spawn(self._flush_claims(pool))

    async def _claim_many(
        self, pool: psycopg_pool.AsyncConnectionPool, run_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """For each run: the epoch of the lease taken (None if none was: another process
        holds it, or the run does not exist), whether the run exists, its holder and
        lease end (text), its next seq, and (a run of at most `_PREFETCH` events) its
        event bodies, for the rebuild's `read` that follows, and whether messages wait
        in its inbox. The rows are locked in run id order, like group commits and
        renewals lock them. The events are seen as of
        the statement's start: they are the whole log only if as many as the run's next
        seq once its row was locked (the caller checks)."""
        s = self._schema
        async with pool.connection() as conn:
            cur = await conn.execute(
                f"""WITH want AS (SELECT DISTINCT w AS run_id FROM unnest(%(ids)s::text[]) AS w),
                locked AS (
                    SELECT r.run_id FROM {s}.runs AS r JOIN want ON want.run_id = r.run_id
                    WHERE r.owner IS NULL OR r.owner = %(me)s OR r.lease_until < now()
                    ORDER BY r.run_id FOR UPDATE OF r),
                taken AS (
                    UPDATE {s}.runs AS r SET owner = %(me)s, epoch = r.epoch + 1,
                        lease_until = now() + %(ttl)s * interval '1 second'
                    FROM locked WHERE r.run_id = locked.run_id
                    RETURNING r.run_id, r.epoch, r.next_seq)
                SELECT w.run_id, t.epoch, r.run_id IS NOT NULL, r.owner,
                    to_char(r.lease_until AT TIME ZONE 'UTC', 'HH24:MI:SS.US'), t.next_seq,
                    CASE WHEN t.next_seq <= {_PREFETCH} THEN ARRAY(
                        SELECT e.body FROM {s}.events AS e WHERE e.run_id = w.run_id
                        ORDER BY e.seq) END,
                    EXISTS (SELECT 1 FROM {s}.inbox AS i WHERE i.run_id = w.run_id)
                FROM want AS w LEFT JOIN taken AS t ON t.run_id = w.run_id
                    LEFT JOIN {s}.runs AS r ON r.run_id = w.run_id""",
                {"ids": run_ids, "me": self.owner, "ttl": self._lease_ttl},
            )
            rows = await cur.fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def release_run(self, run_id: str) -> bool:
        """Give the run's lease back (its actor stopped here); best effort: a lease that
        is not released expires. Returns False, keeping the lease, while messages from
        other processes wait for the run in the inbox (see `take_messages`)."""
        self._prefetched.pop(run_id, None)
        if self._claiming is None:
            return await self._release(run_id)
        async with self._claiming:
            # A timer of the run was just claimed here, and delivered to an actor that
            # must now start: keep the lease for it (released, another process could
            # take the run first, and the delivered timer would be lost here).
            if run_id in self._claimed and run_id in self._leases:
                self._claimed.discard(run_id)
                return False
            return await self._release(run_id)

    async def _release(self, run_id: str) -> bool:
        epoch = self._leases.get(run_id)
        pool = self._pool
        self._no_messages.discard(run_id)
        if epoch is None or pool is None or self._closed:
            self._leases.pop(run_id, None)
            return True
        # Releases made at once go in one statement (`_release_many`).
        with contextlib.suppress(StorageError):
            if not await self._releases.ask((run_id, epoch)):
                return False  # still ours, and messages wait for it
        if self._leases.get(run_id) == epoch:  # (not a lease taken again meanwhile)
            del self._leases[run_id]
        return True

    async def _release_many(self, leases: list[tuple[str, int]]) -> list[bool]:
        """Release each (run, epoch) held here unless messages from other processes wait
        in its inbox; for each, False if it stays held here because of them. Rows are
        locked in run id order, like group commits lock them."""
        s = self._schema
        rows = await self._query(
            f"""WITH h AS (SELECT * FROM unnest(%(ids)s::text[], %(epochs)s::bigint[])
                    AS h(run_id, epoch)),
                mine AS (SELECT r.run_id, EXISTS (SELECT 1 FROM {s}.inbox AS i
                        WHERE i.run_id = r.run_id AND (i.taken_by IS NULL
                            OR i.taken_by <> %(me)s)) AS waiting
                    FROM {s}.runs AS r JOIN h ON r.run_id = h.run_id AND r.epoch = h.epoch
                    WHERE r.owner = %(me)s ORDER BY r.run_id FOR UPDATE OF r),
                freed AS (UPDATE {s}.runs AS r SET owner = NULL, lease_until = NULL
                    FROM mine WHERE r.run_id = mine.run_id AND NOT mine.waiting
                    RETURNING r.run_id)
            SELECT run_id FROM mine WHERE waiting""",
            {"ids": [r for r, _ in leases], "epochs": [e for _, e in leases], "me": self.owner},
        )
        kept = {row[0] for row in rows}
        return [run_id not in kept for run_id, _ in leases]

    # -- messages between processes -------------------------------------------------------

    def _channel(self, kind: str) -> str:
        return f"{self._schema}_{kind}"

    async def send_to_owner(self, run_id: str, message: dict[str, Any]) -> bool:
        """Queue `message` for the run if another live process holds its lease, and wake
        that process; False (nothing written) if nobody else drives the run.

        The run's row is locked while the lease is checked, so the owner cannot let the
        run go in between: `release_run` keeps a run whose inbox is not empty.
        """
        pool = await self._connections()
        s = self._schema
        try:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"SELECT 1 FROM {s}.runs WHERE run_id = %s AND owner IS NOT NULL "
                    "AND owner <> %s AND lease_until > now() FOR UPDATE",
                    (run_id, self.owner),
                )
                if await cur.fetchone() is None:
                    return False
                await conn.execute(
                    f"INSERT INTO {s}.inbox (run_id, message) VALUES (%s, %s)",
                    (run_id, Jsonb(message)),
                )
                await conn.execute("SELECT pg_notify(%s, %s)", (self._channel("inbox"), run_id))
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL store {redact(self._dsn)}: {exc}") from exc
        return True

    async def take_messages(self, run_id: str) -> list[dict[str, Any]]:
        """Return, oldest first, the messages queued for a run this log holds that no live
        holder took: new ones, and those a former holder took but never answered (it
        died or lost the run before `ack_message`). Each carries its ``inbox_id``."""
        if run_id not in self._leases:
            return []
        if run_id in self._no_messages:
            self._no_messages.discard(run_id)
            return []
        s = self._schema
        rows = await self._query(
            f"UPDATE {s}.inbox AS i SET taken_by = %s FROM {s}.runs AS r "
            "WHERE i.run_id = %s AND r.run_id = i.run_id AND r.owner = %s "
            "AND (i.taken_by IS NULL OR i.taken_by <> %s) "
            "RETURNING i.id, i.message",
            (self.owner, run_id, self.owner, self.owner),
        )
        return [
            {**message, "inbox_id": int(id_)}
            for id_, message in sorted(rows, key=lambda row: int(row[0]))
        ]

    async def ack_message(self, inbox_id: int) -> None:
        """Remove a message `take_messages` gave this log: it was applied and answered."""
        await self._query(
            f"DELETE FROM {self._schema}.inbox WHERE id = %s AND taken_by = %s RETURNING 1",
            (inbox_id, self.owner),
        )

    async def withdraw_message(self, run_id: str, token: str) -> bool:
        """Remove a queued message nobody took yet (by its token); False if it was taken."""
        rows = await self._query(
            f"DELETE FROM {self._schema}.inbox WHERE run_id = %s AND message->>'token' = %s "
            "AND taken_by IS NULL RETURNING 1",
            (run_id, token),
        )
        return bool(rows)

    async def notify(self, kind: str, payload: str) -> None:
        """Send a notice (`listen`'s kinds: inbox, settled, reply, work) to every process."""
        await self._query("SELECT pg_notify(%s, %s)", (self._channel(kind), payload))

    async def listen(self, callback: Callable[[str, str], None]) -> None:
        """Call `callback(kind, payload)` on this loop for every notice; returns once
        listening. A dropped connection is reopened (notices sent meanwhile are lost:
        the inbox keeps the messages)."""
        if self._listener is not None:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener = asyncio.get_running_loop().create_task(
            self._listen_forever(callback, ready), name=f"perdure-listen-{self._schema}"
        )
        await ready

    async def _listen_forever(
        self, callback: Callable[[str, str], None], ready: asyncio.Future[None]
    ) -> None:
        kinds = {self._channel(kind): kind for kind in ("inbox", "settled", "reply", "work")}
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                async with conn:
                    for channel in kinds:
                        await conn.execute(f'LISTEN "{channel}"')
                    if not ready.done():
                        ready.set_result(None)
                    async for notice in conn.notifies():
                        kind = kinds.get(notice.channel)
                        if kind == "inbox":
                            self._inbox_notices += 1
                            self._no_messages.discard(notice.payload)
                        if kind is not None:
                            callback(kind, notice.payload)
            except psycopg.Error as exc:
                if not ready.done():
                    ready.set_exception(
                        StorageError(f"PostgreSQL store {redact(self._dsn)}: {exc}")
                    )
                    return
                await asyncio.sleep(min(self._lease_ttl / 3, 1.0))

    async def orphaned_runs(
        self,
        *,
        include_released: bool = False,
        limit: int = 256,
        targets: Sequence[str] | None = None,
    ) -> list[RunInfo]:
        """Running runs (and runs with messages waiting in the inbox) whose lease expired
        (their process died, paused or closed, or a client handed the run to the
        workers), oldest update first; with
        `include_released`, also those nobody holds (whose process let them go while they
        waited: at start-up, a process looks at those too). With `targets`, only runs of
        those targets (the ones this process can drive)."""
        released = "OR owner IS NULL" if include_released else ""
        s = self._schema
        rows = await self._query(
            f"SELECT {_RUN_COLUMNS} FROM {s}.runs AS r "
            f"WHERE (status = 'running' OR EXISTS (SELECT 1 FROM {s}.inbox AS i "
            "WHERE i.run_id = r.run_id)) "
            f"AND (lease_until < now() {released}) "
            "AND (%s::text[] IS NULL OR target = ANY(%s::text[])) "
            "ORDER BY updated_at, run_id LIMIT %s",
            (targets, targets, limit),
        )
        return [_run_info(row) for row in rows]

    # -- worker processes ------------------------------------------------------------------

    async def claim_handed_over(
        self, targets: Sequence[str], limit: int = 64, runs: Sequence[str] | None = None
    ) -> list[str]:
        """Lease to this log up to `limit` runs of `targets` whose lease ended (handed
        over by a client, or left by a dead process) and that need a driver (running, or
        with messages waiting), locked with ``FOR UPDATE SKIP LOCKED``: processes that
        look at once each get different runs, and none starts an actor for a run another
        one got (its waiters there would be told the run was lost). The runs that need a
        driver are found through the status index and the inbox (a store of many settled
        runs is not read through: that made each claim cost a scan of every run)."""
        if self._read_only or not targets:
            return []
        s = self._schema
        # With `runs` (the ids a `work` notice named), only those are looked at, by key.
        wanting = (
            "SELECT run_id FROM unnest(%s::text[]) AS w(run_id)"
            if runs is not None
            else f"SELECT run_id FROM {s}.runs WHERE status = 'running' "
            f"UNION SELECT run_id FROM {s}.inbox"
        )
        params: tuple[Any, ...] = (list(targets), limit, self.owner, self._lease_ttl)
        if runs is not None:
            params = (list(runs), *params)
        rows = await self._query(
            f"""WITH wanting AS ({wanting}), free AS (
                SELECT r.run_id FROM {s}.runs AS r JOIN wanting ON wanting.run_id = r.run_id
                WHERE r.lease_until < now() AND r.target = ANY(%s::text[])
                  AND (r.status = 'running' OR EXISTS (SELECT 1 FROM {s}.inbox AS i
                    WHERE i.run_id = r.run_id))
                ORDER BY r.updated_at, r.run_id LIMIT %s
                FOR UPDATE OF r SKIP LOCKED
            )
            UPDATE {s}.runs AS r SET owner = %s, epoch = r.epoch + 1,
                lease_until = now() + %s * interval '1 second'
            FROM free WHERE r.run_id = free.run_id
            RETURNING r.run_id, r.epoch""",
            params,
        )
        for run_id, epoch in rows:
            if run_id in self._leases:  # held here, expired: others may have driven it since
                self._mark_lost(run_id)
            self._leases[run_id] = int(epoch)
            self._lost.discard(run_id)
        if rows:
            self._start_renewing()
        return [run_id for run_id, _ in rows]

    async def register_worker(self, targets: dict[str, str]) -> None:
        """Record that this process drives runs of `targets` ({name: kind}); the record
        is kept fresh with the leases, and removed on `close`."""
        if self._read_only:
            raise ReadOnlyStoreError(f"the store at {redact(self._dsn)} is open read-only")
        await self._query(
            f"INSERT INTO {self._schema}.workers (owner, targets, seen) VALUES (%s, %s, now()) "
            "ON CONFLICT (owner) DO UPDATE SET targets = excluded.targets, seen = now() "
            "RETURNING 1",
            (self.owner, Jsonb(dict(targets))),
        )
        self._worker = True
        self._start_renewing()

    async def served_kind(self, target: str) -> str | None:
        """The kind (function or workflow) of `target` as the worker processes that serve
        it recorded it, the most recently seen first; None if no worker ever served it."""
        if "\x00" in target:
            return None
        # A client starting many runs (at once, or one after another) asks once per lease
        # period, not once per run: the answer, or the question in flight, is shared.
        loop = asyncio.get_running_loop()
        cached = self._served.get(target)
        if (
            cached is not None
            and loop.time() - cached[1] < self._lease_ttl
            and not (cached[0].done() and (cached[0].cancelled() or cached[0].exception()))
        ):
            return await asyncio.shield(cached[0])
        asked = loop.create_task(self._served_kind(target))
        self._served[target] = (asked, loop.time())
        try:
            return await asyncio.shield(asked)
        except BaseException:
            if self._served.get(target, (None,))[0] is asked:
                del self._served[target]  # (a failure is not kept)
            raise

    async def _served_kind(self, target: str) -> str | None:
        rows = await self._query(
            f"SELECT targets->>%s FROM {self._schema}.workers WHERE targets ? %s "
            "ORDER BY seen DESC LIMIT 1",
            (target, target),
        )
        if not rows:
            self._served.pop(target, None)  # a worker may come: ask again next time
            return None
        return str(rows[0][0])

    async def workers(self) -> list[tuple[str, dict[str, str], float]]:
        """(owner, {target: kind}, seconds since last seen) of every recorded worker."""
        rows = await self._query(
            f"SELECT owner, targets, extract(epoch FROM now() - seen) "
            f"FROM {self._schema}.workers ORDER BY owner"
        )
        return [(owner, dict(targets), float(age)) for owner, targets, age in rows]

    async def hand_over(self, run_id: str, target: str) -> None:
        """Give a run this log started (and holds) to the workers: its lease ends at once
        (expired: a worker's watch takes it over) and the workers are told now."""
        epoch = self._leases.pop(run_id, None)
        # Hand-overs made at once go in one statement, with one notice per target.
        await self._handovers.ask((run_id, epoch, target))

    async def _hand_over_many(self, runs: list[tuple[str, int | None, str]]) -> list[None]:
        """End the leases of (run, epoch, target) held here, and tell the workers (a
        notice per target naming its runs, see `_work_notices`: the workers claim those
        by key). The rows are locked in run id order, like group commits and claims."""
        s = self._schema
        await self._query(
            f"""WITH h AS (SELECT * FROM unnest(%(ids)s::text[], %(epochs)s::bigint[],
                    %(targets)s::text[]) AS h(run_id, epoch, target)),
                mine AS (SELECT r.run_id FROM {s}.runs AS r JOIN h ON r.run_id = h.run_id
                    AND r.epoch = h.epoch WHERE r.owner = %(me)s
                    ORDER BY r.run_id FOR UPDATE OF r),
                done AS (UPDATE {s}.runs AS r SET lease_until = '-infinity' FROM mine
                    WHERE r.run_id = mine.run_id RETURNING r.run_id)
            SELECT pg_notify(%(channel)s, n) FROM unnest(%(notices)s::text[]) AS n""",
            {
                "ids": [r for r, _, _ in runs],
                "epochs": [e for _, e, _ in runs],
                "targets": [t for _, _, t in runs],
                "me": self.owner,
                "channel": self._channel("work"),
                "notices": _work_notices(runs),
            },
        )
        return [None] * len(runs)

    def held_leases(self) -> dict[str, int]:
        """The runs this log holds a lease on, with the lease's epoch."""
        return dict(self._leases)

    def lease_losses(self, run_id: str) -> int:
        """How many times this log lost the run's lease (a renewal or an append found
        another epoch, or a claim took back a lease it held that had expired). An actor
        started before a loss is stale: the run may have been driven elsewhere since."""
        return self._losses.get(run_id, 0)

    def _mark_lost(self, run_id: str) -> None:
        self._leases.pop(run_id, None)
        self._lost.add(run_id)
        self._losses[run_id] = self._losses.get(run_id, 0) + 1

    def _start_renewing(self) -> None:
        if self._renewer is None and not self._closed:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name=f"perdure-leases-{self._schema}"
            )

    async def _renew_forever(self) -> None:
        # On a connection of its own: renewals must not queue behind a busy pool's
        # appends (1,000 runs in flight would let their own leases expire).
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await asyncio.sleep(self._lease_ttl / 3)
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
                    await self.renew_leases(conn)
                except (psycopg.Error, psycopg_pool.PoolTimeout, StorageError):
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def renew_leases(self, conn: psycopg.AsyncConnection[Any] | None = None) -> None:
        """Extend every lease this log holds, in one UPDATE (on `conn`, else a pooled
        connection); a run missing from its answer (another process took it over: its
        epoch changed) is lost at once (its next append raises `LeaseLostError` without
        asking). A lease that expired but that nobody took over is extended. A worker's
        record (`register_worker`) is refreshed too."""
        if conn is None:
            pool = await self._connections()
            async with pool.connection() as pooled:
                await self.renew_leases(pooled)
            return
        if self._worker:
            await conn.execute(
                f"UPDATE {self._schema}.workers SET seen = now() WHERE owner = %s",
                (self.owner,),
            )
        if not self._leases:
            return
        held = dict(self._leases)
        s = self._schema
        # The rows are locked in run id order first, like a group commit locks them:
        # renewing while appends of many runs commit cannot deadlock with them.
        cur = await conn.execute(
            f"WITH mine AS (SELECT r.run_id FROM {s}.runs AS r "
            "JOIN unnest(%s::text[], %s::bigint[]) AS h(run_id, epoch) "
            "ON r.run_id = h.run_id AND r.epoch = h.epoch WHERE r.owner = %s "
            "ORDER BY r.run_id FOR UPDATE OF r) "
            f"UPDATE {s}.runs AS r SET lease_until = now() + %s * interval '1 second' "
            "FROM mine WHERE r.run_id = mine.run_id RETURNING r.run_id",
            (list(held), list(held.values()), self.owner, self._lease_ttl),
        )
        renewed = {row[0] for row in await cur.fetchall()}
        for run_id, epoch in held.items():
            if run_id not in renewed and self._leases.get(run_id) == epoch:
                self._mark_lost(run_id)

    async def close(self) -> None:
        """Wait for the appends in flight, then close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        pool = self._pool
        opening = self._opening
        if pool is None and opening is not None and not opening.done():
            try:
                pool = await asyncio.shield(opening)
            except BaseException:
                pool = None
        # Appends begun before the close (queued for a group commit, or waiting for an
        # earlier append of their run) land before the leases are handed back.
        deadline = asyncio.get_running_loop().time() + 30
        while self._active:
            self._drained = asyncio.Event()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break  # a stuck append does not keep the log open: it fails below
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), left)
        while self._flushes and asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(
                    set(self._flushes), timeout=deadline - asyncio.get_running_loop().time()
                )
        self._pool = None
        renewer, self._renewer = self._renewer, None
        listener, self._listener = self._listener, None
        for task in (listener, renewer):
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        if pool is not None:
            if self._worker:
                with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                    async with pool.connection() as conn:
                        await conn.execute(
                            f"DELETE FROM {self._schema}.workers WHERE owner = %s", (self.owner,)
                        )
            if self._leases:
                # Hand the runs back at once rather than after the leases expire.
                with contextlib.suppress(psycopg.Error, psycopg_pool.PoolTimeout):
                    async with pool.connection() as conn:
                        # Expired, not released: another process's watch takes these
                        # runs over at once (a released lease waits for a message).
                        await conn.execute(
                            f"UPDATE {self._schema}.runs SET lease_until = '-infinity' "
                            "WHERE owner = %s",
                            (self.owner,),
                        )
            self._leases.clear()
            self._prefetched.clear()
            self._no_messages.clear()
            await pool.close(timeout=30)

    # -- reads -------------------------------------------------------------------------------

    async def read(self, run_id: str, from_seq: int = 0) -> list[Event]:
        if from_seq < 0:
            raise ValueError(f"read of run {run_id!r}: from_seq {from_seq} must be >= 0")
        if "\x00" in run_id:
            await self._connections()
            return []
        bodies = self._prefetched.pop(run_id, None)
        if bodies is not None and from_seq == 0:
            return [decode(run_id, seq, body) for seq, body in enumerate(bodies)]
        # Reads made at once (a client waiting on many runs) go in one statement.
        rows = await self._reads.ask((run_id, from_seq))
        events: list[Event] = []
        for expected, (seq, body) in enumerate(rows, start=from_seq):
            if seq != expected:
                raise CorruptEventError(
                    f"event {run_id}#{expected} is missing from the store",
                    run_id=run_id,
                    seq=expected,
                )
            events.append(decode(run_id, seq, body))
        return events

    async def _read_many(self, wanted: list[tuple[str, int]]) -> list[list[tuple[int, bytes]]]:
        """The (seq, body) rows of each (run, from seq), in seq order."""
        rows = await self._query(
            f"SELECT w.n, e.seq, e.body FROM unnest(%s::text[], %s::bigint[]) "
            f"WITH ORDINALITY AS w(run_id, from_seq, n) JOIN {self._schema}.events AS e "
            "ON e.run_id = w.run_id AND e.seq >= w.from_seq ORDER BY w.n, e.seq",
            ([r for r, _ in wanted], [f for _, f in wanted]),
        )
        out: list[list[tuple[int, bytes]]] = [[] for _ in wanted]
        for n, seq, body in rows:
            out[int(n) - 1].append((seq, body))
        return out

    async def get_run(self, run_id: str) -> RunInfo | None:
        if "\x00" in run_id:
            await self._connections()
            return None
        # Lookups made at once (clients waiting on many runs) go in one statement.
        return await self._lookups.ask(run_id)

    async def _get_runs(self, run_ids: list[str]) -> list[RunInfo | None]:
        rows = await self._query(
            f"SELECT {_RUN_COLUMNS} FROM {self._schema}.runs WHERE run_id = ANY(%s)",
            (run_ids,),
        )
        found = {row[0]: _run_info(row) for row in rows}
        return [found.get(run_id) for run_id in run_ids]

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        await self._connections()
        if limit is not None and limit < 0:
            raise ValueError(f"list_runs: limit {limit} must be >= 0")
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"list_runs: unknown status {status!r}")
        if target is not None and "\x00" in target:
            return []
        rows = await self._query(
            f"SELECT {_RUN_COLUMNS} FROM {self._schema}.runs "
            "WHERE (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR target = %s) "
            "ORDER BY created_at, run_id LIMIT %s",
            (status, status, target, target, limit),
        )
        return [_run_info(row) for row in rows]

    async def page_runs(
        self,
        *,
        status: RunStatus | None,
        target: str | None,
        contains: str | None,
        before: tuple[float, str] | None,
        since: float | None,
        limit: int,
    ) -> list[RunInfo]:
        """Up to `limit` runs, newest first, created before `before` (created, run id) and at
        or after `since`, whose run id, target or idempotency key contains `contains` (any
        case). A keyset walk down ``runs_by_status``/``runs_by_created``: it stops once
        `limit` rows match instead of reading every run; a text that few runs contain is
        looked up in the ``runs_text`` trigram index where the server has ``pg_trgm``."""
        await self._connections()
        if status is not None and status not in RUN_STATUSES:
            raise ValueError(f"page_runs: unknown status {status!r}")
        if any(v is not None and "\x00" in v for v in (target, contains)):
            return []
        pattern = None
        if contains is not None:
            low = contains.lower()
            escaped = low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
        created, run_id = before if before is not None else (None, None)
        bounds = (status, status, target, target, created, created, run_id, since, since)
        rows = await self._query(
            f"SELECT {_RUN_COLUMNS} FROM {self._schema}.runs "
            "WHERE (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR target = %s) "
            "AND (%s::float8 IS NULL OR (created_at, run_id) < (%s, %s)) "
            "AND (%s::float8 IS NULL OR created_at >= %s) "
            f"AND (%s::text IS NULL OR {_RUN_TEXT} LIKE %s) "
            "ORDER BY created_at DESC, run_id DESC LIMIT %s",
            (*bounds, pattern, pattern, limit),
        )
        return [_run_info(row) for row in rows]

    async def lookup_idempotency(self, key: str) -> IdempotencyRecord | None:
        if "\x00" in key:
            await self._connections()
            return None
        rows = await self._query(
            f"SELECT run_id, input_digest FROM {self._schema}.idempotency WHERE key = %s", (key,)
        )
        if not rows:
            return None
        return IdempotencyRecord(key=key, run_id=rows[0][0], input_digest=rows[0][1])

    async def due_timers(self, now: float, limit: int = 256) -> list[TimerEntry]:
        await self._connections()
        if limit < 0:
            raise ValueError(f"due_timers: limit {limit} must be >= 0")
        rows = await self._query(
            f"SELECT due_at, run_id, timer_id FROM {self._schema}.timers "
            "WHERE due_at <= %s ORDER BY due_at, run_id, timer_id LIMIT %s",
            (now, limit),
        )
        return [TimerEntry(due_at=d, run_id=r, timer_id=t) for d, r, t in rows]

    async def claim_due_timers(
        self,
        now: float,
        limit: int = 256,
        *,
        targets: Sequence[str] | None = None,
        runs: Sequence[str] | None = None,
    ) -> list[TimerEntry]:
        """The timers due at `now` of runs this process may drive, their leases taken.

        A run qualifies if this log holds its lease, or nobody holds it (released, or
        expired: its process died or stopped renewing); with `targets`, only runs of those
        targets, with `runs`, only those runs. Qualifying runs are locked with ``FOR UPDATE
        SKIP LOCKED`` and leased to this log in the same statement, so two processes
        polling at once never both get a run: each due timer goes to one process, which
        drives its run (a run another process holds keeps its timers there).
        """
        if limit < 0:
            raise ValueError(f"claim_due_timers: limit {limit} must be >= 0")
        if self._read_only:
            raise ReadOnlyStoreError(f"the store at {redact(self._dsn)} is open read-only")
        if self._claiming is None:
            self._claiming = asyncio.Lock()
        async with self._claiming:
            return await self._claim_due(now, limit, targets, runs)

    async def _claim_due(
        self, now: float, limit: int, targets: Sequence[str] | None, runs: Sequence[str] | None
    ) -> list[TimerEntry]:
        s = self._schema
        rows = await self._query(
            f"""WITH free AS (
                SELECT r.run_id, (r.owner = %(me)s AND r.lease_until > now()) AS mine
                FROM {s}.runs AS r
                WHERE r.run_id IN (SELECT t.run_id FROM {s}.timers AS t WHERE t.due_at <= %(now)s)
                  AND (r.owner IS NULL OR r.owner = %(me)s OR r.lease_until < now())
                  AND (%(targets)s::text[] IS NULL OR r.target = ANY(%(targets)s::text[]))
                  AND (%(runs)s::text[] IS NULL OR r.run_id = ANY(%(runs)s::text[]))
                ORDER BY r.updated_at, r.run_id
                LIMIT %(limit)s
                FOR UPDATE OF r SKIP LOCKED
            ), taken AS (
                UPDATE {s}.runs AS r SET owner = %(me)s,
                    epoch = CASE WHEN f.mine THEN r.epoch ELSE r.epoch + 1 END,
                    lease_until = now() + %(ttl)s * interval '1 second'
                FROM free AS f WHERE r.run_id = f.run_id
                RETURNING r.run_id, r.epoch
            )
            SELECT t.due_at, t.run_id, t.timer_id, k.epoch
            FROM {s}.timers AS t JOIN taken AS k ON k.run_id = t.run_id
            WHERE t.due_at <= %(now)s
            ORDER BY t.due_at, t.run_id, t.timer_id""",
            {
                "me": self.owner,
                "now": now,
                "targets": None if targets is None else list(targets),
                "runs": None if runs is None else list(runs),
                "limit": limit,
                "ttl": self._lease_ttl,
            },
        )
        entries: list[TimerEntry] = []
        for due_at, run_id, timer_id, epoch in rows:
            held = self._leases.get(run_id)
            if held is not None and held != int(epoch):  # lost unnoticed, and taken back
                self._mark_lost(run_id)
            self._leases[run_id] = int(epoch)
            self._lost.discard(run_id)
            entries.append(TimerEntry(due_at=due_at, run_id=run_id, timer_id=timer_id))
        self._claimed = {entry.run_id for entry in entries}
        if entries:
            self._start_renewing()
        return entries

    async def next_timer_after(self, now: float) -> float | None:
        """When the first timer due after `now` is due (any run's), or None."""
        rows = await self._query(
            f"SELECT min(due_at) FROM {self._schema}.timers WHERE due_at > %s", (now,)
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def next_timer(self) -> TimerEntry | None:
        rows = await self._query(
            f"SELECT due_at, run_id, timer_id FROM {self._schema}.timers "
            "ORDER BY due_at, run_id, timer_id LIMIT 1"
        )
        if not rows:
            return None
        due_at, run_id, timer_id = rows[0]
        return TimerEntry(due_at=due_at, run_id=run_id, timer_id=timer_id)

    async def statistics(self) -> LogStatistics:
        s = self._schema
        rows = await self._query(
            f"SELECT status, count(*) FROM {s}.runs GROUP BY status ORDER BY status"
        )
        totals = await self._query(
            f"SELECT (SELECT count(*) FROM {s}.events), (SELECT count(*) FROM {s}.timers), "
            f"(SELECT count(*) FROM {s}.idempotency), "
            "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r')",
            (s,),
        )
        events, timers, keys, size = totals[0]
        return LogStatistics(
            runs_by_status={status: int(count) for status, count in rows},
            events=int(events),
            timers=int(timers),
            idempotency_keys=int(keys),
            size_bytes=int(size),
            appends=self._appends,
            batches=self._batches,
            last_batch_size=self._last_batch,
        )


_K = TypeVar("_K")
_R = TypeVar("_R")


class _Batches(Generic[_K, _R]):
    """Requests of one kind made while a statement of that kind is in flight go together
    in the next one (as appends and claims do): `send` answers a list of requests with a
    list of answers, in order. A request of an idle kind is sent at once. Statements run
    in tasks of their own: an asker cancelled meanwhile fails nobody else's request."""

    def __init__(
        self, log: PostgresEventLog, send: Callable[[list[_K]], Awaitable[list[_R]]]
    ) -> None:
        self._log = log
        self._send = send
        self._queue: list[tuple[_K, asyncio.Future[_R]]] = []
        self._flushing = 0

    async def ask(self, request: _K) -> _R:
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._flushing < self._log._max_flushes:
            self._start()
        return await future

    def _start(self) -> None:
        """A statement for what is queued, in a task (counted from now: requests made
        until it starts go with it)."""
        self._flushing += 1
        self._log._spawn(self._flush())

    async def _flush(self) -> None:
        limit = self._log._max_flushes
        queue = self._queue
        batch, self._queue = queue[:_MAX_BATCH], queue[_MAX_BATCH:]
        try:
            if not batch:
                return
            if self._queue and self._flushing < limit:
                self._start()
            try:
                answers = await self._send([request for request, _ in batch])
            except BaseException as exc:
                error = (
                    exc
                    if isinstance(exc, StorageError)
                    else StorageError(f"PostgreSQL store {redact(self._log.dsn)}: {exc!r}")
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                        future.exception()  # retrieved: its asker re-raises it
                if not isinstance(exc, Exception):
                    raise
                return
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        finally:
            self._flushing -= 1
            if self._queue and self._flushing < limit:
                self._start()


@dataclasses.dataclass(slots=True, kw_only=True)
class _Append:
    """One append waiting for the group commit (`PostgresEventLog._commit`)."""

    run_id: str
    expected: int
    status: str | None
    started: RunStarted | None
    first_started: bool
    updated: float
    bodies: list[bytes]
    removed: list[str]
    timer_ids: list[str]
    dues: list[float]
    epoch: int | None
    #: Whether the append settles the run (its waiters elsewhere get a notice).
    notify: bool
    future: asyncio.Future[str] = dataclasses.field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _by_run(entry: _Append) -> str:
    return entry.run_id


#: A notice's payload is at most 8,000 bytes; `work` notices stay below this.
_NOTICE_BYTES = 7000


def _work_notices(runs: Sequence[tuple[str, int | None, str]]) -> list[str]:
    """The payloads of the `work` notices telling the workers of these runs: per target,
    a JSON array of the target then run ids, as many as fit one notice (a notice of
    an older perdure is the target, a newline and one run id)."""
    by_target: dict[str, list[str]] = {}
    for run_id, _, target in runs:
        by_target.setdefault(target, []).append(run_id)
    notices = []
    for target, ids in by_target.items():
        chunk = [target]
        size = len(json.dumps(target))
        for run_id in ids:
            more = len(json.dumps(run_id)) + 2
            if size + more > _NOTICE_BYTES and len(chunk) > 1:
                notices.append(json.dumps(chunk))
                chunk, size = [target], len(json.dumps(target))
            chunk.append(run_id)
            size += more
        notices.append(json.dumps(chunk))
    return notices


def _run_fields(entry: _Append) -> tuple[Any, ...]:
    """The run-level parameters `append` and `append_many` take first, in their order:
    run id, expected seq, status, started, first event is RunStarted, and the start's
    target, kind, idempotency key, input digest and time (None without a start), then
    the update time."""
    started = entry.started
    if started is None:
        return (
            entry.run_id,
            entry.expected,
            entry.status,
            False,
            entry.first_started,
            None,
            None,
            None,
            None,
            None,
            entry.updated,
        )
    return (
        entry.run_id,
        entry.expected,
        entry.status,
        True,
        entry.first_started,
        started.target,
        started.kind,
        started.idempotency_key,
        started.input_digest,
        started.ts,
        entry.updated,
    )


def _settle_failed(entry: _Append, error: BaseException) -> None:
    if not entry.future.done():
        entry.future.set_exception(error)
        entry.future.exception()  # retrieved: its appender re-raises it


def _lease_lost(run_id: str) -> LeaseLostError:
    return LeaseLostError(
        f"run {run_id!r}: this process no longer holds the run's lease (another process "
        "took it over, or may: the lease expired); nothing more it appends to the run lands",
        run_id=run_id,
    )


def _conflict(run_id: str, expected: int, actual: int) -> SequenceConflictError:
    return SequenceConflictError(
        f"append to run {run_id!r} expected next seq {expected}, but the run is at {actual}",
        run_id=run_id,
        expected=expected,
        actual=actual,
    )


#: The searchable text of a run, lower-cased: the expression the ``runs_text`` index holds.
_RUN_TEXT = "lower(run_id || ' ' || target || ' ' || coalesce(idempotency_key, ''))"


async def _ensure_text_index(conn: Any, schema: str) -> None:
    """The trigram index of the runs' searchable text (`page_runs`), where the server has the
    ``pg_trgm`` extension (trusted: a database owner may create it). Without it the text
    filter still works, by reading the runs in order. Inside the open's transaction, in a
    savepoint: a server without the extension leaves the store as it was."""
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS runs_text ON {schema}.runs "
                f"USING gin (({_RUN_TEXT}) gin_trgm_ops)"
            )
    except psycopg.Error:
        return


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    run_id, target, kind, status, created_at, updated_at, next_seq, key = row
    return RunInfo(
        run_id=run_id,
        target=target,
        kind=kind,
        status=status,
        created_at=created_at,
        updated_at=updated_at,
        next_seq=next_seq,
        idempotency_key=key,
    )
