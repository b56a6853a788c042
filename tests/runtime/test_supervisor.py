"""Supervisor: a crashed actor is rebuilt from the log; past the restart intensity, the run parks.

Crashes are injected by a log wrapper whose `append` raises `StorageError` for
one run a given number of times (after that run's first event, so the run
exists). The rest of the runtime, other runs included, must not notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from perdure import (
    FunctionContext,
    PolicyError,
    RetryPolicy,
    RunFailedError,
    RunParkedError,
    Runtime,
    StorageError,
    function,
)
from perdure.eventlog import (
    Event,
    RunParked,
    RunStarted,
    TaskAttemptFailed,
    TaskAttemptStarted,
    TaskCompleted,
)
from perdure.testing import MemoryEventLog, MockClock


class CrashingLog:
    """An `EventLog` that fails the next `failures[run_id]` appends of a run with StorageError.

    The run's first append (RunStarted) always lands, so the run exists. The
    supervisor's own RunParked append lands too unless `fail_parking` is set.
    With `fail_only` set, only appends holding one of those event types fail.
    """

    def __init__(self, inner: MemoryEventLog) -> None:
        self.inner = inner
        self.failures: dict[str, int] = {}
        self.injected = 0
        self.fail_parking = False
        self.fail_only: tuple[type[Event], ...] = ()

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: Any = None,
        on_durable: Any = None,
    ) -> None:
        spared = any(isinstance(e, RunStarted) for e in events) or (
            not self.fail_parking and any(isinstance(e, RunParked) for e in events)
        )
        if self.fail_only and not any(isinstance(e, self.fail_only) for e in events):
            spared = True
        if not spared and self.failures.get(run_id, 0) > 0:
            self.failures[run_id] -= 1
            self.injected += 1
            raise StorageError(f"injected I/O error #{self.injected} for {run_id}")
        await self.inner.append(run_id, expected_seq, events, status=status, on_durable=on_durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


executions: list[str] = []


@function(name="sup_work")
async def sup_work(ctx: FunctionContext, item: str) -> str:
    executions.append(item)
    await asyncio.sleep(0)
    return f"done {item}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    executions.clear()


@pytest.fixture
def crashing(memlog: MemoryEventLog) -> CrashingLog:
    return CrashingLog(memlog)


async def test_a_crashed_actor_is_rebuilt_from_the_log_and_the_run_completes(
    crashing: CrashingLog, memlog: MemoryEventLog
) -> None:
    crashing.failures["sup-1"] = 2
    async with Runtime(log=crashing, clock=MockClock(), max_restarts=5) as runtime:  # type: ignore[arg-type]
        handle = await runtime.start(sup_work, {"item": "a"}, run_id="sup-1")
        assert await handle.result() == "done a"
        stats = runtime.statistics()
        assert stats.restarts == 2
        assert stats.parked == 0
    assert crashing.injected == 2
    events = await memlog.read("sup-1")
    # The result was recorded once. The attempt's start went out with the run's (it is
    # durable before the body runs), so the attempt whose result could not be committed
    # is in the log as lost, and the body ran again as attempt 1 (at-least-once).
    assert len([e for e in events if isinstance(e, TaskCompleted)]) == 1
    assert executions == ["a", "a"]
    failed = [e for e in events if isinstance(e, TaskAttemptFailed)]
    assert [(e.attempt, e.error_type) for e in failed] == [(0, "AttemptLost")]
    assert [e.attempt for e in events if isinstance(e, TaskAttemptStarted)] == [0, 1]
    assert (await memlog.get_run("sup-1")).status == "completed"  # type: ignore[union-attr]


async def test_restart_logs_the_crash(crashing: CrashingLog, logs: Any) -> None:
    crashing.failures["sup-log"] = 1
    async with Runtime(log=crashing, clock=MockClock()) as runtime:  # type: ignore[arg-type]
        handle = await runtime.start(sup_work, {"item": "b"}, run_id="sup-log")
        await handle.result()
    (crash,) = logs.find("run actor crashed")
    assert crash["run_id"] == "sup-log"
    assert "StorageError: injected I/O error #1" in crash["error"]
    assert crash["log_level"] == "error"


async def test_past_the_restart_intensity_the_run_is_parked_and_others_go_on(
    crashing: CrashingLog, memlog: MemoryEventLog, logs: Any
) -> None:
    crashing.failures["sup-doomed"] = 1000
    async with Runtime(log=crashing, clock=MockClock(), max_restarts=2) as runtime:  # type: ignore[arg-type]
        doomed = await runtime.start(sup_work, {"item": "x"}, run_id="sup-doomed")
        healthy = await runtime.start(sup_work, {"item": "y"}, run_id="sup-healthy")

        with pytest.raises(RunParkedError) as info:
            await doomed.result()
        error = info.value
        assert error.run_id == "sup-doomed"
        assert "3 times" in error.reason  # the first crash plus two restarts
        assert "StorageError: injected I/O error" in error.reason
        assert error.reason in str(error)
        assert await doomed.status() == "parked"
        assert [r.run_id for r in await runtime.list_runs(status="parked")] == ["sup-doomed"]

        assert await healthy.result() == "done y"
        assert await runtime.run(sup_work, {"item": "z"}) == "done z"  # still taking work
        stats = runtime.statistics()
        assert (stats.restarts, stats.parked) == (2, 1)

        # The parked run stays parked: asking again reads the reason from the log.
        with pytest.raises(RunParkedError) as again:
            await doomed.result()
        assert again.value.reason == error.reason

    (parked,) = [e for e in await memlog.read("sup-doomed") if isinstance(e, RunParked)]
    assert parked.reason == error.reason
    assert [e["run_id"] for e in logs.find("run parked")] == ["sup-doomed"]


async def test_a_parked_run_can_be_continued_once_the_fault_is_gone(
    crashing: CrashingLog,
) -> None:
    crashing.failures["sup-continue"] = 1000
    async with Runtime(log=crashing, clock=MockClock(), max_restarts=2) as runtime:  # type: ignore[arg-type]
        handle = await runtime.start(sup_work, {"item": "c"}, run_id="sup-continue")
        with pytest.raises(RunParkedError):
            await handle.result()
        crashing.failures["sup-continue"] = 0  # the disk is fixed
        await runtime.continue_run("sup-continue")
        assert await handle.result() == "done c"
        assert await handle.status() == "completed"


async def test_restarts_outside_the_window_do_not_add_up(crashing: CrashingLog) -> None:
    crashing.failures["sup-window"] = 3
    runtime = Runtime(log=crashing, clock=MockClock(), max_restarts=1, restart_window=0.0)  # type: ignore[arg-type]
    async with runtime:
        # With a zero-length window every crash is the first in its window: never parked.
        handle = await runtime.start(sup_work, {"item": "w"}, run_id="sup-window")
        assert await handle.result() == "done w"
        assert runtime.statistics().parked == 0
        assert runtime.statistics().restarts == 3


async def test_a_storage_error_on_the_first_event_is_the_callers_error(
    memlog: MemoryEventLog,
) -> None:
    class RefusingLog(CrashingLog):
        async def append(
            self,
            run_id: str,
            expected_seq: int,
            events: Sequence[Event],
            *,
            status: Any = None,
            on_durable: Any = None,
        ) -> None:
            raise StorageError("disk full")

    async with Runtime(log=RefusingLog(memlog), clock=MockClock()) as runtime:  # type: ignore[arg-type]
        with pytest.raises(StorageError, match="disk full"):
            await runtime.start(sup_work, {"item": "never"})
    assert await memlog.list_runs() == []
    assert executions == []


async def test_a_run_that_cannot_even_be_parked_does_not_leave_callers_hanging(
    crashing: CrashingLog,
) -> None:
    crashing.failures["sup-hopeless"] = 1000
    crashing.fail_parking = True
    async with Runtime(log=crashing, clock=MockClock(), max_restarts=1) as runtime:  # type: ignore[arg-type]
        handle = await runtime.start(sup_work, {"item": "h"}, run_id="sup-hopeless")
        with pytest.raises((RunParkedError, StorageError)):
            await asyncio.wait_for(handle.result(), 0.5)


class FailFirstCommit:
    """Fails the first append of every run once (with StorageError), then behaves."""

    def __init__(self, inner: MemoryEventLog) -> None:
        self.inner = inner
        self.failed: set[str] = set()

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: Any = None,
        on_durable: Any = None,
    ) -> None:
        if run_id not in self.failed:
            self.failed.add(run_id)
            raise StorageError(f"injected I/O error for the first commit of {run_id}")
        await self.inner.append(run_id, expected_seq, events, status=status, on_durable=on_durable)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_run_whose_start_goes_out_with_its_result_reports_a_failed_commit(
    memlog: MemoryEventLog,
) -> None:
    """`run()` commits its start with the first result; if that commit fails the caller
    gets the storage error (not a hang, not another invocation's result) and the log
    has no trace of the run."""
    failing = FailFirstCommit(memlog)
    async with Runtime(log=failing, clock=MockClock()) as runtime:  # type: ignore[arg-type]
        with pytest.raises(StorageError, match="injected I/O error"):
            await runtime.run(sup_work, {"item": "c"}, run_id="soft-1")
        assert await memlog.read("soft-1") == []
        assert await runtime.run(sup_work, {"item": "c"}, run_id="soft-1") == "done c"
    assert executions == ["c", "c"]  # the body ran before the commit that failed


lost_runs: list[int] = []


@function(name="sup_lost", retries=RetryPolicy(max_attempts=1, max_lost_attempts=1))
async def sup_lost(ctx: FunctionContext) -> str:
    lost_runs.append(ctx.attempt)
    await asyncio.sleep(0)
    return "done"


async def test_past_max_lost_attempts_the_step_fails_with_a_clear_message(
    crashing: CrashingLog, memlog: MemoryEventLog
) -> None:
    """Each crash loses the running attempt; the policy allows one lost attempt, not two."""
    lost_runs.clear()
    crashing.failures["sup-lost"] = 5
    crashing.fail_only = (TaskCompleted,)  # every attempt's result: each crash loses one
    async with Runtime(log=crashing, clock=MockClock(), max_restarts=10) as runtime:  # type: ignore[arg-type]
        handle = await runtime.start(sup_lost, {}, run_id="sup-lost")
        with pytest.raises(RunFailedError, match="max_lost_attempts=1"):
            await handle.result()
    events = await memlog.read("sup-lost")
    lost = [e for e in events if isinstance(e, TaskAttemptFailed)]
    assert [e.error_type for e in lost] == ["AttemptLost", "AttemptLost"]
    assert lost_runs == [0, 1]


def test_max_lost_attempts_must_be_a_non_negative_int() -> None:
    with pytest.raises(PolicyError, match="max_lost_attempts"):
        RetryPolicy(max_lost_attempts=-1)
