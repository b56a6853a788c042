"""Index changes implied by a batch of events; shared by every `EventLog` adapter.

Keeping these rules in one pure function means the in-memory and LMDB logs
cannot disagree about what a batch does to the runs, idempotency and timers
indexes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from perdure.eventlog._events import (
    Event,
    Resumed,
    RunCancelled,
    RunCompleted,
    RunContinued,
    RunFailed,
    RunParked,
    RunStarted,
    TimerCancelled,
    TimerFired,
    TimerSet,
)
from perdure.eventlog._protocol import RunInfo, RunStatus

_STATUS_OF: dict[type[Event], RunStatus] = {
    RunStarted: "running",
    RunContinued: "running",
    Resumed: "running",
    RunCompleted: "completed",
    RunFailed: "failed",
    RunCancelled: "cancelled",
    RunParked: "parked",
}


@attrs.frozen
class IndexChanges:
    """What one batch does to the indexes.

    Apply `timers_removed` before `timers_set`: `timers_removed` names every
    timer id whose pending entry (if any) goes away, including ids the batch
    sets again (a new `TimerSet` replaces the old due time); `timers_set`
    holds the timers still pending at the end of the batch, in order.
    """

    started: RunStarted | None
    status: RunStatus | None
    timers_set: tuple[TimerSet, ...]
    timers_removed: tuple[str, ...]
    last_ts: float


def index_changes(events: Sequence[Event], status: RunStatus | None) -> IndexChanges:
    """Derive the index changes of a batch; an explicit `status` overrides the derived one."""
    started: RunStarted | None = None
    derived: RunStatus | None = None
    timers_set: dict[str, TimerSet] = {}
    removed: dict[str, None] = {}  # insertion-ordered set
    for event in events:
        kind = type(event)
        if kind is TimerSet:
            timer: TimerSet = event  # type: ignore[assignment]
            timers_set.pop(timer.timer_id, None)
            timers_set[timer.timer_id] = timer
            removed[timer.timer_id] = None
        elif kind is TimerFired or kind is TimerCancelled:
            timer_id: str = event.timer_id  # type: ignore[attr-defined]
            timers_set.pop(timer_id, None)
            removed[timer_id] = None
        elif kind is RunStarted:
            started = event  # type: ignore[assignment]
        new = _STATUS_OF.get(kind)
        if new is not None:
            derived = new
    return IndexChanges(
        started=started,
        status=status if status is not None else derived,
        timers_set=tuple(timers_set.values()),
        timers_removed=tuple(removed),
        last_ts=events[-1].ts,
    )


def updated_run(run_id: str, info: RunInfo | None, changes: IndexChanges, next_seq: int) -> RunInfo:
    """The run's index row after a batch; `info` is the row before it (None for a new run).

    A `RunStarted` on an existing run (a new workflow invocation) keeps the
    run's `created_at` and takes the new invocation's target, kind and key.
    """
    started = changes.started
    if started is not None:
        target, kind, key = started.target, started.kind, started.idempotency_key
        created_at = info.created_at if info is not None else started.ts
        status: RunStatus = "running"
    elif info is not None:
        target, kind, key = info.target, info.kind, info.idempotency_key
        created_at = info.created_at
        status = info.status
    else:
        raise ValueError(f"append to unknown run {run_id!r}: its first event must be RunStarted")
    return RunInfo(
        run_id=run_id,
        target=target,
        kind=kind,
        status=changes.status or status,
        created_at=created_at,
        updated_at=changes.last_ts,
        next_seq=next_seq,
        idempotency_key=key,
    )
