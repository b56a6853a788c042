"""`FaultyEventLog`: an `EventLog` wrapper that fails chosen operations, for fault-injection tests.

It wraps any log (usually `MemoryEventLog` or `LmdbEventLog`) and, following
the `Fault`s given to it, raises `InjectedStorageError` on the n-th matching
operation: once or from then on ("sticky"), before the operation reaches the
store (nothing written) or after it (the write landed, but the caller sees an
error, as when an fsync fails after the data reached the page cache). Reads of
a chosen run can be made to fail with `CorruptEventError`, as a damaged record
would. Counters say what was done and what was injected, so a test can report
how many faults it tried.

This is how SQLite tests its error paths: fail the first I/O, then the
second, ... until the operation completes, and check each time that the
failure was reported and nothing half-done was acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import attrs

from perdure.eventlog import (
    CorruptEventError,
    Event,
    EventLog,
    IdempotencyRecord,
    LogStatistics,
    RunInfo,
    RunStatus,
    StorageError,
    TimerEntry,
)

FaultKind = Literal["write", "map_full", "fsync"]
FaultWhen = Literal["before", "after"]
#: Every operation a `Fault` may target.
OPERATIONS: frozenset[str] = frozenset(
    {
        "append",
        "read",
        "get_run",
        "list_runs",
        "lookup_idempotency",
        "due_timers",
        "next_timer",
        "statistics",
    }
)

_MESSAGES: dict[str, str] = {
    "write": "write failed (EIO: input/output error)",
    "map_full": "the store's map is full (MDB_MAP_FULL) and could not grow",
    "fsync": "fsync failed after the write (EIO); durability of the batch is unknown",
}
_READ_MESSAGE = "read failed (EIO: input/output error)"


class InjectedStorageError(StorageError):
    """A storage failure injected by `FaultyEventLog` (a `StorageError`, like a real one).

    `kind` is "write", "map_full" or "fsync"; `operation` and `number` name the
    failed call (its 1-based count among the calls the fault watches);
    `applied` is True when the operation took effect before the error was
    raised ("after" faults on appends).
    """

    def __init__(
        self,
        message: str,
        *,
        kind: FaultKind,
        operation: str,
        number: int,
        run_id: str | None,
        applied: bool,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.operation = operation
        self.number = number
        self.run_id = run_id
        self.applied = applied


def _check_ops(_: object, __: object, value: frozenset[str]) -> None:
    unknown = set(value) - OPERATIONS
    if not value or unknown:
        raise ValueError(
            f"Fault.ops must be a non-empty subset of {sorted(OPERATIONS)}, got {value!r}"
        )


def _check_nth(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Fault.{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """Fail the `nth` call (1-based) among the operations in `ops` (on `run_id` only, if given).

    times: how many matching calls fail in a row, from the `nth` on.
    sticky: fail every matching call from the `nth` on (until `FaultyEventLog.heal()`).
    when: "before" fails without touching the store; "after" lets an append
        land first (reads and lookups fail before, whatever `when` says).
    """

    nth: int = attrs.field(validator=_check_nth)
    ops: frozenset[str] = attrs.field(
        default=frozenset({"append"}), converter=frozenset, validator=_check_ops
    )
    kind: FaultKind = "write"
    when: FaultWhen = "before"
    times: int = attrs.field(default=1, validator=_check_nth)
    sticky: bool = False
    run_id: str | None = None


@attrs.define
class _Armed:
    fault: Fault
    seen: int = 0


@attrs.frozen(kw_only=True)
class InjectedRecord:
    """One fault that fired: which operation, its number, the run, the kind, before/after."""

    operation: str
    number: int
    run_id: str | None
    kind: FaultKind
    applied: bool


class FaultyEventLog:
    """An `EventLog` that delegates to `inner` and injects the faults it is given.

    ``log = FaultyEventLog(MemoryEventLog()); log.inject(Fault(nth=3, kind="fsync",
    when="after"))`` makes the third append land and then raise an
    `InjectedStorageError`. `corrupt(run_id, seq)` makes reads of that run
    raise `CorruptEventError` from `seq` on. `heal()` removes every fault.
    """

    def __init__(self, inner: EventLog) -> None:
        self.inner = inner
        self._armed: list[_Armed] = []
        self._corrupt: dict[str, int] = {}
        #: calls per operation name, faulted or not
        self.calls: dict[str, int] = dict.fromkeys(sorted(OPERATIONS), 0)
        #: every fault that fired, in order
        self.injected: list[InjectedRecord] = []

    def __repr__(self) -> str:
        return f"FaultyEventLog({self.inner!r}, faults={len(self._armed)})"

    # -- configuring ------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        """Arm `fault`; counting of its `nth` call starts now."""
        self._armed.append(_Armed(fault))
        return fault

    def corrupt(self, run_id: str, seq: int = 0) -> None:
        """Make reads of `run_id` fail as if its record `seq` were damaged."""
        self._corrupt[run_id] = seq

    def heal(self) -> None:
        """Remove every armed fault and corruption (the store "recovers")."""
        self._armed.clear()
        self._corrupt.clear()

    # -- injection --------------------------------------------------------------------

    def _fault_for(self, operation: str, run_id: str | None) -> tuple[Fault, int] | None:
        self.calls[operation] += 1
        hit: tuple[Fault, int] | None = None
        for armed in self._armed:
            fault = armed.fault
            if operation not in fault.ops or (fault.run_id is not None and fault.run_id != run_id):
                continue
            armed.seen += 1
            fires = armed.seen >= fault.nth and (
                fault.sticky or armed.seen < fault.nth + fault.times
            )
            if fires and hit is None:
                hit = (fault, armed.seen)
        return hit

    def _error(
        self, fault: Fault, number: int, operation: str, run_id: str | None, applied: bool
    ) -> InjectedStorageError:
        self.injected.append(
            InjectedRecord(
                operation=operation, number=number, run_id=run_id, kind=fault.kind, applied=applied
            )
        )
        where = f" on run {run_id!r}" if run_id is not None else ""
        state = "the write landed, but " if applied else ""
        what = _MESSAGES[fault.kind] if operation == "append" else _READ_MESSAGE
        return InjectedStorageError(
            f"injected fault in {operation} #{number}{where}: {state}{what}",
            kind=fault.kind,
            operation=operation,
            number=number,
            run_id=run_id,
            applied=applied,
        )

    def _before(self, operation: str, run_id: str | None = None) -> None:
        hit = self._fault_for(operation, run_id)
        if hit is not None:
            raise self._error(hit[0], hit[1], operation, run_id, applied=False)

    # -- the EventLog protocol ----------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self.inner.read_only

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: RunStatus | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        hit = self._fault_for("append", run_id)
        if hit is not None and hit[0].when == "before":
            raise self._error(hit[0], hit[1], "append", run_id, applied=False)
        if hit is not None:
            # The batch lands but the caller only sees an error: it never learns the
            # batch is durable, so `on_durable` is not called (as with a failed fsync).
            await self.inner.append(run_id, expected_seq, events, status=status)
            raise self._error(hit[0], hit[1], "append", run_id, applied=True)
        await self.inner.append(run_id, expected_seq, events, status=status, on_durable=on_durable)

    async def read(self, run_id: str, from_seq: int = 0) -> list[Event]:
        self._before("read", run_id)
        events = await self.inner.read(run_id, from_seq)
        bad = self._corrupt.get(run_id)
        if bad is not None and bad >= from_seq and events and events[-1].seq >= bad:
            raise CorruptEventError(
                f"event {run_id}#{bad} failed its checksum: the record is corrupt (injected)",
                run_id=run_id,
                seq=bad,
            )
        return events

    async def get_run(self, run_id: str) -> RunInfo | None:
        self._before("get_run", run_id)
        return await self.inner.get_run(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[RunInfo]:
        self._before("list_runs")
        return await self.inner.list_runs(status=status, target=target, limit=limit)

    async def lookup_idempotency(self, key: str) -> IdempotencyRecord | None:
        self._before("lookup_idempotency")
        return await self.inner.lookup_idempotency(key)

    async def due_timers(self, now: float, limit: int = 256) -> list[TimerEntry]:
        self._before("due_timers")
        return await self.inner.due_timers(now, limit)

    async def next_timer(self) -> TimerEntry | None:
        self._before("next_timer")
        return await self.inner.next_timer()

    async def statistics(self) -> LogStatistics:
        self._before("statistics")
        return await self.inner.statistics()

    async def close(self) -> None:
        await self.inner.close()


__all__ = [
    "OPERATIONS",
    "Fault",
    "FaultKind",
    "FaultWhen",
    "FaultyEventLog",
    "InjectedRecord",
    "InjectedStorageError",
]
