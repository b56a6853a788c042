"""Applying one batch of appends to an LMDB write transaction (the writer's CPU work).

Each append is validated against what the transaction already holds - the
runs index's next seq, the idempotency index - in the in-memory log's order,
so both logs raise the same error for the same bad append. It is applied in
its own child transaction, so a failing append is rolled back alone. Every
change is also recorded as an operation, the journal frame's content.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import lmdb

from perdure.eventlog._codec import encode_all
from perdure.eventlog._errors import IdempotencyKeyTakenError, SequenceConflictError, StorageError
from perdure.eventlog._events import RunStarted
from perdure.eventlog._index import updated_run
from perdure.eventlog._lmdb_journal import Op
from perdure.eventlog._lmdb_keys import (
    DB_NAMES,
    EVENTS,
    IDEMPOTENCY,
    META,
    RUN_ORDER,
    RUNS,
    SEARCH,
    SEP,
    TIMER_IDS,
    TIMERS,
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
from perdure.eventlog._lmdb_search import index_append
from perdure.eventlog._lmdb_tickets import PendingAppend
from perdure.eventlog._protocol import RunInfo

if TYPE_CHECKING:
    from lmdb import _Database

#: Seconds of CPU spent on a batch before other threads may take the GIL. Without
#: it, an event loop waiting for the GIL waits for the interpreter's switch
#: interval (5 ms) while a big batch is applied.
YIELD_AFTER = 0.0005
#: Indexes of the databases in `DB_NAMES` order, as journal operations name them.
EVENTS_DB, RUNS_DB, RUN_ORDER_DB, IDEMPOTENCY_DB, TIMERS_DB, TIMER_IDS_DB, META_DB = (
    DB_NAMES.index(name) for name in (EVENTS, RUNS, RUN_ORDER, IDEMPOTENCY, TIMERS, TIMER_IDS, META)
)
SEARCH_DB = DB_NAMES.index(SEARCH)


def apply_batch(
    env: lmdb.Environment,
    dbs: Databases,
    txn: lmdb.Transaction[bytes],
    appends: list[PendingAppend],
    known: Mapping[str, RunInfo],
) -> tuple[list[BaseException | None], list[Op], int, dict[str, RunInfo]]:
    """Apply each append in its own child of `txn`.

    `known` holds runs-index rows as `txn` has them (the writer's cache, which
    saves reading and parsing the row of a busy run). Returns the outcomes, the
    changes, the events written, and the rows the batch updated: the caller
    adds those to its cache only once the batch is durable.
    """
    single = len(appends) == 1
    outcomes: list[BaseException | None] = [None] * len(appends)
    ops: list[Op] = []
    staged: dict[str, RunInfo] = {}
    next_yield = time.perf_counter() + YIELD_AFTER
    written = 0
    for index, item in enumerate(appends):
        if index & 15 == 15 and time.perf_counter() >= next_yield:
            time.sleep(0)  # hands the GIL to a waiting event loop
            next_yield = time.perf_counter() + YIELD_AFTER
        child = txn if single else env.begin(write=True, parent=txn)
        mark = len(ops)
        try:
            info = staged.get(item.run_id) or known.get(item.run_id)
            row = apply_append(dbs, child, item, ops, info)
        except lmdb.Error:
            if not single:
                child.abort()
            raise
        except Exception as exc:  # this append's own failure only
            if not single:
                child.abort()
            del ops[mark:]
            outcomes[index] = exc
            continue
        if not single:
            child.commit()
        staged[item.run_id] = row
        written += len(item.events)
    return outcomes, ops, written, staged


def apply_append(
    dbs: Databases,
    txn: lmdb.Transaction[bytes],
    item: PendingAppend,
    ops: list[Op],
    info: RunInfo | None = None,
) -> RunInfo:
    """Validate one append against `txn` (which sees earlier appends), then write it.

    The checks run in the in-memory log's order, so both raise the same error
    for the same bad append. Every change is also recorded in `ops` (the
    journal frame's operations). `info` is the run's index row if the caller
    knows it (else it is read from `txn`); the row after the append is returned.
    """
    keys = plan(item.run_id, item.events, item.status)
    run = keys.run
    if info is None:
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
    records = encode_all(item.run_id, item.events)
    updated = updated_run(item.run_id, info, keys.changes, actual + len(records))
    for offset, record in enumerate(records):
        key = event_key(run, actual + offset)
        ops.append((EVENTS_DB, key, record))
        if not txn.put(key, record, db=dbs.events, overwrite=False):
            raise StorageError(
                f"event {item.run_id}#{actual + offset} is already stored although the runs "
                f"index puts run {item.run_id!r} at seq {actual}: the store is inconsistent; "
                "nothing of this append was written"
            )
    record_run = dump_run(updated)
    put(txn, run, record_run, dbs.runs)
    ops.append((RUNS_DB, run, record_run))
    if info is None or (info.status, info.created_at) != (updated.status, updated.created_at):
        if info is not None:
            old = order_key(info.status, info.created_at, run)
            txn.delete(old, db=dbs.run_order)
            ops.append((RUN_ORDER_DB, old, None))
        new = order_key(updated.status, updated.created_at, run)
        put(txn, new, b"", dbs.run_order)
        ops.append((RUN_ORDER_DB, new, b""))
        if dbs.search is not None:
            index_append((txn, dbs.search, ops, SEARCH_DB), info, updated, item.events)
    elif started is not None and dbs.search is not None:  # a new invocation: new target or key
        index_append((txn, dbs.search, ops, SEARCH_DB), info, updated, item.events)
    if keys.claim is not None and started is not None:
        claim = dump_claim(item.run_id, started.input_digest)
        put(txn, keys.claim, claim, dbs.idempotency)
        ops.append((IDEMPOTENCY_DB, keys.claim, claim))
    prefix = len(run) + len(SEP)
    for lookup in keys.timers_removed:
        due = txn.pop(lookup, db=dbs.timer_ids)
        if due is not None:
            timer = timer_key(due, run, lookup[prefix:])
            txn.delete(timer, db=dbs.timers)
            ops.append((TIMER_IDS_DB, lookup, None))
            ops.append((TIMERS_DB, timer, None))
    for lookup, due, key in keys.timers_set:
        put(txn, lookup, due, dbs.timer_ids)
        put(txn, key, b"", dbs.timers)
        ops.append((TIMER_IDS_DB, lookup, due))
        ops.append((TIMERS_DB, key, b""))
    return updated


def put(txn: lmdb.Transaction[bytes], key: bytes, value: bytes, db: _Database) -> None:
    if not txn.put(key, value, db=db):
        raise StorageError(f"LMDB refused to store key {key!r}")
