"""The `EventLog` port: what the actors and the runtime need from storage.

Two adapters implement it, `MemoryEventLog` (tests, ephemeral workflows) and
`LmdbEventLog` (the embedded default); both pass one contract suite
(tests/eventlog/test_contract.py).

Index maintenance is derived from the appended events (see `_index.py`), in
the same atomic write: a `RunStarted` creates the run's index entry and claims
its idempotency key; `TimerSet`/`TimerFired`/`TimerCancelled` maintain the
timers index; the run's status comes from the caller (the actor's fold knows
it) or from the terminal events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

from perdure.eventlog._events import Event, RunKind

RunStatus = Literal["running", "waiting", "completed", "failed", "cancelled", "parked"]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "running",
    "waiting",
    "completed",
    "failed",
    "cancelled",
    "parked",
)
#: Statuses after which a run does nothing until someone sends it a message.
SETTLED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "parked"})

Durability = Literal["fsync", "process"]


@attrs.frozen(kw_only=True)
class RunInfo:
    """One row of the runs index."""

    run_id: str
    target: str
    kind: RunKind
    status: RunStatus
    created_at: float
    updated_at: float
    next_seq: int
    idempotency_key: str | None = None


@attrs.frozen(kw_only=True)
class IdempotencyRecord:
    """Which run holds an idempotency key, and the digest of the input it was claimed with."""

    key: str
    run_id: str
    input_digest: str


@attrs.frozen(kw_only=True, order=True)
class TimerEntry:
    """A pending durable timer; entries order by due time."""

    due_at: float
    run_id: str
    timer_id: str


@attrs.frozen(kw_only=True)
class LogStatistics:
    """A snapshot of a log's size and activity, for `perdure stats` and monitoring.

    `events`, `timers` and `idempotency_keys` count what is stored;
    `appends` counts events appended since this process opened the store,
    `batches` the commits that wrote them, and `last_batch_size` the events
    in the latest commit (group commit puts many appends in one).
    """

    runs_by_status: dict[str, int]
    events: int
    timers: int
    idempotency_keys: int
    size_bytes: int
    appends: int
    batches: int
    last_batch_size: int


@runtime_checkable
class EventLog(Protocol):
    """Durable, per-run append-only event streams plus the indexes the runtime needs."""

    @property
    def read_only(self) -> bool: ...

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: RunStatus | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        """Append `events` (seq expected_seq, expected_seq+1, ...) to `run_id`, atomically.

        Returns once the events and their index changes are durable. Raises
        `SequenceConflictError` if the run's next sequence is not
        `expected_seq`, `IdempotencyKeyTakenError` if a `RunStarted` claims a
        key held by another run; in both cases nothing is written.

        `on_durable`, if given, is called once, on the caller's event loop, as
        soon as the batch is durable and before this coroutine resumes (the
        actors wake code waiting on the outcome one loop iteration sooner). It
        is not called if the append fails, nor when the log cannot know whether
        the batch landed; if it raises, `append` raises that although the batch
        is stored. A wrapper around a log forwards it (or calls it itself once
        the inner append has returned).
        """
        ...

    async def read(self, run_id: str, from_seq: int = 0) -> list[Event]:
        """The run's events from `from_seq` on, in order ([] for an unknown run)."""
        ...

    async def get_run(self, run_id: str) -> RunInfo | None: ...

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        """Runs matching the filters, oldest first."""
        ...

    async def lookup_idempotency(self, key: str) -> IdempotencyRecord | None: ...

    async def due_timers(self, now: float, limit: int = 256) -> list[TimerEntry]:
        """Pending timers with `due_at <= now`, earliest first."""
        ...

    async def next_timer(self) -> TimerEntry | None:
        """The earliest pending timer, if any."""
        ...

    async def statistics(self) -> LogStatistics: ...

    async def close(self) -> None:
        """Finish in-flight appends, then release the store. Idempotent."""
        ...


def check_batch(
    run_id: str, expected_seq: int, events: Sequence[Event], status: RunStatus | None = None
) -> None:
    """Reject a malformed batch (bad run id or status, wrong run id or non-contiguous seq).

    Called by every adapter before touching storage, so all of them refuse the
    same inputs. Run ids are non-empty strings without NUL (the LMDB keys use
    NUL as a separator).
    """
    if not isinstance(run_id, str) or not run_id or "\x00" in run_id:
        raise ValueError(f"run id {run_id!r} must be a non-empty string without NUL characters")
    if isinstance(expected_seq, bool) or not isinstance(expected_seq, int) or expected_seq < 0:
        raise ValueError(
            f"append to run {run_id!r}: expected_seq {expected_seq!r} must be an int >= 0"
        )
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(f"append to run {run_id!r}: unknown status {status!r}")
    if not events:
        raise ValueError(f"append to run {run_id!r}: the batch is empty")
    for offset, event in enumerate(events):
        # JSON has no NaN/inf: encoded as null they would make the event unreadable.
        if not math.isfinite(event.ts) or not math.isfinite(getattr(event, "due_at", 0.0)):
            raise ValueError(
                f"append to run {run_id!r}: event {offset} has a non-finite time "
                f"(ts={event.ts!r}, due_at={getattr(event, 'due_at', None)!r})"
            )
        if event.run_id != run_id:
            raise ValueError(
                f"append to run {run_id!r}: event {offset} belongs to run {event.run_id!r}"
            )
        if event.seq != expected_seq + offset:
            raise ValueError(
                f"append to run {run_id!r}: event {offset} has seq {event.seq}, "
                f"expected {expected_seq + offset}"
            )
