"""`MemoryEventLog`: the `EventLog` contract held in process memory.

For tests and for workflows that need no durability across processes. Events
are still encoded and decoded through the codec, so a value that would not
survive the LMDB log does not survive this one either.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from perdure.eventlog._codec import decode, encode_all
from perdure.eventlog._errors import (
    IdempotencyKeyTakenError,
    SequenceConflictError,
    StoreClosedError,
)
from perdure.eventlog._events import Event, RunStarted
from perdure.eventlog._index import index_changes, updated_run
from perdure.eventlog._protocol import (
    IdempotencyRecord,
    LogStatistics,
    RunInfo,
    RunStatus,
    TimerEntry,
    check_batch,
)


class MemoryEventLog:
    """An in-memory event log with the same semantics as `LmdbEventLog`, minus durability."""

    def __init__(self) -> None:
        self._streams: dict[str, list[bytes]] = {}
        self._runs: dict[str, RunInfo] = {}
        self._keys: dict[str, IdempotencyRecord] = {}
        self._timers: list[TimerEntry] = []
        self._timer_index: dict[tuple[str, str], TimerEntry] = {}
        self._closed = False
        self._appends = 0
        self._last_batch = 0
        self._batches = 0

    def __repr__(self) -> str:
        return f"MemoryEventLog(runs={len(self._runs)})"

    @property
    def read_only(self) -> bool:
        return False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this MemoryEventLog is closed")

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
        self._check_open()
        check_batch(run_id, expected_seq, events, status)
        stream = self._streams.get(run_id, [])
        if len(stream) != expected_seq:
            raise SequenceConflictError(
                f"append to run {run_id!r} expected next seq {expected_seq}, "
                f"but the run is at {len(stream)}",
                run_id=run_id,
                expected=expected_seq,
                actual=len(stream),
            )
        changes = index_changes(events, status)
        info = self._runs.get(run_id)
        started = changes.started
        if started is not None and started.idempotency_key is not None:
            held = self._keys.get(started.idempotency_key)
            if held is not None and held.run_id != run_id:
                raise IdempotencyKeyTakenError(
                    f"idempotency key {started.idempotency_key!r} is held by run {held.run_id!r}",
                    key=started.idempotency_key,
                    existing_run_id=held.run_id,
                    existing_digest=held.input_digest,
                )
        if info is None and not isinstance(events[0], RunStarted):
            raise ValueError(
                f"append to unknown run {run_id!r}: its first event must be RunStarted"
            )
        records = encode_all(run_id, events)
        updated = updated_run(run_id, info, changes, expected_seq + len(events))
        # Validation is over; apply every change (nothing above mutated state).
        self._streams.setdefault(run_id, stream).extend(records)
        if started is not None and started.idempotency_key is not None:
            self._keys[started.idempotency_key] = IdempotencyRecord(
                key=started.idempotency_key, run_id=run_id, input_digest=started.input_digest
            )
        self._runs[run_id] = updated
        for timer_id in changes.timers_removed:
            removed = self._timer_index.pop((run_id, timer_id), None)
            if removed is not None:
                self._timers.remove(removed)
        for timer in changes.timers_set:
            entry = TimerEntry(due_at=timer.due_at, run_id=run_id, timer_id=timer.timer_id)
            bisect.insort(self._timers, entry)
            self._timer_index[(run_id, timer.timer_id)] = entry
        self._appends += len(events)
        self._last_batch = len(events)
        self._batches += 1
        if on_durable is not None:
            on_durable()

    async def read(self, run_id: str, from_seq: int = 0) -> list[Event]:
        self._check_open()
        if from_seq < 0:
            raise ValueError(f"read of run {run_id!r}: from_seq {from_seq} must be >= 0")
        stream = self._streams.get(run_id, ())
        return [decode(run_id, seq, stream[seq]) for seq in range(from_seq, len(stream))]

    async def get_run(self, run_id: str) -> RunInfo | None:
        self._check_open()
        return self._runs.get(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        self._check_open()
        if limit is not None and limit < 0:
            raise ValueError(f"list_runs: limit {limit} must be >= 0")
        found = [
            info
            for info in self._runs.values()
            if (status is None or info.status == status)
            and (target is None or info.target == target)
        ]
        found.sort(key=lambda info: (info.created_at, info.run_id))
        return found if limit is None else found[:limit]

    async def lookup_idempotency(self, key: str) -> IdempotencyRecord | None:
        self._check_open()
        return self._keys.get(key)

    async def due_timers(self, now: float, limit: int = 256) -> list[TimerEntry]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"due_timers: limit {limit} must be >= 0")
        end = bisect.bisect_right(self._timers, now, key=lambda entry: entry.due_at)
        return self._timers[: min(end, limit)]

    async def next_timer(self) -> TimerEntry | None:
        self._check_open()
        return self._timers[0] if self._timers else None

    async def statistics(self) -> LogStatistics:
        self._check_open()
        counts: dict[str, int] = {}
        for info in self._runs.values():
            counts[info.status] = counts.get(info.status, 0) + 1
        return LogStatistics(
            runs_by_status=counts,
            events=sum(len(stream) for stream in self._streams.values()),
            timers=len(self._timers),
            idempotency_keys=len(self._keys),
            size_bytes=sum(len(r) for stream in self._streams.values() for r in stream),
            appends=self._appends,
            batches=self._batches,
            last_batch_size=self._last_batch,
        )

    async def close(self) -> None:
        self._closed = True
