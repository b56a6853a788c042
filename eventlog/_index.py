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
from perdure.eventlog._protocol import RunStatus

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
    """What one batch does to the indexes."""

    started: RunStarted | None
    status: RunStatus | None
    timers_set: tuple[TimerSet, ...]
    timers_removed: tuple[str, ...]
    last_ts: float


def index_changes(events: Sequence[Event], status: RunStatus | None) -> IndexChanges:
    """Derive the index changes of a batch; an explicit `status` overrides the derived one."""
    started: RunStarted | None = None
    derived: RunStatus | None = None
    timers_set: list[TimerSet] = []
    removed: list[str] = []
    for event in events:
        kind = type(event)
        if kind is TimerSet:
            timers_set.append(event)  # type: ignore[arg-type]
        elif kind is TimerFired or kind is TimerCancelled:
            removed.append(event.timer_id)  # type: ignore[attr-defined]
        elif kind is RunStarted:
            started = event  # type: ignore[assignment]
        new = _STATUS_OF.get(kind)
        if new is not None:
            derived = new
    return IndexChanges(
        started=started,
        status=status if status is not None else derived,
        timers_set=tuple(timers_set),
        timers_removed=tuple(removed),
        last_ts=events[-1].ts,
    )
