"""Fault injection: a store that fails writes, fsyncs and reads, at chosen moments.

The runtime must report the failure, never hand user code a result that is
not committed, rebuild the crashed actor from the log (supervisor restart),
keep other runs going, and name the run and sequence of a corrupt record.
The sweep at the end fails the 1st, 2nd, 3rd, ... storage operation of a
small workflow until it completes without a fault (as SQLite tests its I/O
error paths): every n ends with the right result once the store heals.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import perdure
from perdure import (
    CorruptEventError,
    MemoryEventLog,
    PerdureError,
    RunParkedError,
    Runtime,
    RunTimeoutError,
    StorageError,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.eventlog import RunCompleted, TaskCompleted
from perdure.testing import Fault, FaultyEventLog, InjectedStorageError, MockClock
from tests.crash._crash_harness import strip

#: Every task/function result a body received in this test (value, with its token).
SEEN: list[Any] = []
FIGURES = {"faults_injected": 0, "sweep_cases": 0}


@pytest.fixture(autouse=True, scope="module")
def _report() -> Iterator[None]:
    yield
    print(f"\nfault injection figures: {FIGURES}")


@pytest.fixture(autouse=True)
def _seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


def _tok() -> str:
    return uuid.uuid4().hex


@function(name="faults_add", retries=3)
def faults_add(a: int, b: int) -> dict[str, Any]:
    return {"sum": a + b, "tok": _tok()}


@task(name="faults_step", retry_policy=3)
def faults_step(x: int) -> dict[str, Any]:
    return {"v": x * 2, "tok": _tok()}


@entrypoint(name="faults_flow")
def faults_flow(x: int) -> dict[str, Any]:
    first = faults_step(x).result()
    SEEN.append(first)
    pair = [faults_step(first["v"]), faults_step(first["v"] + 1)]
    values = [f.result() for f in pair]
    SEEN.extend(values)
    perdure.sleep(30)
    answer = interrupt({"first": first["v"]})
    return {"first": first["v"], "pair": [v["v"] for v in values], "answer": answer}


FLOW_RESULT = {"first": 2, "pair": [4, 6], "answer": "yes"}


async def _within(awaitable: Any, seconds: float = 10.0) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


async def _committed_results(log: FaultyEventLog, run_id: str) -> list[Any]:
    return [e.result for e in await log.inner.read(run_id) if isinstance(e, TaskCompleted)]


def _faulty(*faults: Fault) -> FaultyEventLog:
    log = FaultyEventLog(MemoryEventLog())
    for fault in faults:
        log.inject(fault)
    return log


# -- the wrapper itself -------------------------------------------------------------------------


async def test_the_wrapper_fails_exactly_the_calls_it_was_told_to() -> None:
    from perdure.eventlog import RunStarted, TimerCancelled

    log = _faulty(
        Fault(nth=2, times=2, kind="map_full"),  # appends 2 and 3, before
        Fault(nth=5, kind="fsync", when="after"),  # append 5 lands, then fails
        Fault(nth=1, ops={"get_run"}, sticky=True, run_id="other"),
    )
    start = RunStarted(
        run_id="w", seq=0, ts=0.0, target="t", kind="workflow", input=1, input_digest="d"
    )
    await log.append("w", 0, [start])
    seq, outcomes = 1, []
    for _ in range(5):
        event = TimerCancelled(run_id="w", seq=seq, ts=0.0, timer_id="x")
        try:
            await log.append("w", seq, [event])
            outcomes.append("ok")
        except InjectedStorageError as exc:
            outcomes.append(f"{exc.kind}:{'landed' if exc.applied else 'not written'}")
        seq = (await log.inner.get_run("w")).next_seq  # type: ignore[union-attr]
    assert outcomes == ["map_full:not written", "map_full:not written", "ok", "fsync:landed", "ok"]
    assert await log.get_run("w") is not None  # other runs' reads are untouched
    for _ in range(3):
        with pytest.raises(InjectedStorageError, match="get_run #"):
            await log.get_run("other")
    log.corrupt("w", 2)
    with pytest.raises(CorruptEventError) as caught:
        await log.read("w")
    assert (caught.value.run_id, caught.value.seq) == ("w", 2)
    assert len(await log.read("w", 3)) == 1  # past the damaged record
    log.heal()
    assert len(await log.read("w")) == 4 and await log.get_run("other") is None
    assert log.calls["append"] == 6 and len(log.injected) == 6
    with pytest.raises(ValueError, match="nth"):
        Fault(nth=0)
    with pytest.raises(ValueError, match="ops"):
        Fault(nth=1, ops={"write"})


# -- single faults, one at a time ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["write", "map_full", "fsync"])
async def test_a_start_that_did_not_commit_is_reported_and_leaves_no_run(kind: str) -> None:
    log = _faulty(Fault(nth=1, kind=kind))
    async with Runtime(log=log, clock=MockClock()) as rt:
        with pytest.raises(InjectedStorageError) as caught:
            await _within(rt.start(faults_add, {"a": 1, "b": 2}, run_id="f-1"))
        assert isinstance(caught.value, StorageError) and caught.value.kind == kind
        assert "append #1" in str(caught.value) and "f-1" in str(caught.value)
        assert await rt.get_run("f-1") is None
        assert (await _within(rt.run(faults_add, {"a": 1, "b": 2}, run_id="f-1")))["sum"] == 3
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_start_whose_fsync_failed_after_the_write_is_safe_to_retry_with_its_key() -> None:
    """'After' faults: the caller cannot know the write landed; the key makes the retry safe."""
    log = _faulty(Fault(nth=1, kind="fsync", when="after"))
    async with Runtime(log=log, clock=MockClock()) as rt:
        with pytest.raises(InjectedStorageError, match="the write landed"):
            await _within(rt.run(faults_add, {"a": 2, "b": 3}, idempotency_key="k-1"))
        again = await _within(rt.run(faults_add, {"a": 2, "b": 3}, idempotency_key="k-1"))
        runs = await rt.list_runs()
        assert again["sum"] == 5 and len(runs) == 1
        assert await _committed_results(log, runs[0].run_id) == [again]
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_waiting_caller_never_gets_a_result_before_it_commits() -> None:
    """Found by the crash matrix: `wait()` answered from state whose commit was in flight."""
    gate, blocked = asyncio.Event(), asyncio.Event()

    class GatedLog(FaultyEventLog):
        """Holds the batch that completes the run until the test opens the gate."""

        async def append(
            self,
            run_id: str,
            expected_seq: int,
            events: Any,
            *,
            status: Any = None,
            on_durable: Any = None,
        ) -> None:
            if any(isinstance(e, RunCompleted) for e in events) and not gate.is_set():
                blocked.set()
                await gate.wait()
            await super().append(run_id, expected_seq, events, status=status, on_durable=on_durable)

    log = GatedLog(MemoryEventLog())
    async with Runtime(log=log, clock=MockClock()) as rt:
        await rt.start(faults_add, {"a": 1, "b": 2}, run_id="gated")
        await _within(blocked.wait())
        early = asyncio.ensure_future(rt.wait("gated"))
        await asyncio.sleep(0.05)
        assert not early.done(), "a caller got a result whose commit had not finished"
        log.inject(Fault(nth=1, run_id="gated"))  # and that commit fails
        gate.set()
        outcome = await _within(early)
        committed = await _committed_results(log, "gated")
        assert len(committed) == 1 and outcome.result == committed[0]
    FIGURES["faults_injected"] += len(log.injected)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_failed_result_commit_restarts_the_actor_and_user_code_sees_only_committed_results(
    when: str, logs: Any
) -> None:
    # Appends: 1 RunStarted, 2 attempt+result of step 0 (fails here), ...
    log = _faulty(Fault(nth=2, kind="write", when=when, run_id="wf"))
    async with Runtime(log=log, clock=MockClock()) as rt:
        await _within(rt.start(faults_flow, 1, run_id="wf"))
        paused = await _within(rt.wait("wf"))
        assert paused.status == "waiting"
        await rt.resume("wf", "yes")
        assert (await _within(rt.wait("wf"))).result == FLOW_RESULT
        assert rt.statistics().restarts == 1
        committed = await _committed_results(log, "wf")
        assert all(value in committed for value in SEEN), (SEEN, committed)
        assert len(committed) == 3
    crashed = logs.find("run actor crashed")
    assert len(crashed) == 1 and crashed[0]["run_id"] == "wf"
    assert "injected fault in append #2 on run 'wf'" in crashed[0]["error"]
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_sticky_fault_on_one_run_leaves_other_runs_working_and_heals() -> None:
    log = _faulty(Fault(nth=2, sticky=True, run_id="sick"))
    async with Runtime(log=log, clock=MockClock(), max_restarts=3) as rt:
        sick = await _within(rt.start(faults_add, {"a": 1, "b": 1}, run_id="sick"))
        waiting = asyncio.ensure_future(sick.result())
        others = [rt.run(faults_add, {"a": i, "b": 10}, run_id=f"well-{i}") for i in range(5)]
        for i, out in enumerate(await _within(asyncio.gather(*others))):
            assert out["sum"] == i + 10
        # The store refuses even the RunParked record: the waiting caller is told so.
        with pytest.raises(RunParkedError, match="could not be parked either"):
            await _within(waiting)
        with pytest.raises(RunTimeoutError):  # a caller who comes later just waits
            await sick.result(timeout=0.2)
        assert rt.statistics().restarts == 3
        assert await rt.status("sick") == "running"  # nothing false was recorded
        assert await _committed_results(log, "sick") == []
        log.heal()  # the disk recovers: the run is parked, and an operator continues it
        await rt.continue_run("sick")
        assert (await _within(sick.result()))["sum"] == 2
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_run_that_could_not_be_parked_is_parked_once_the_store_heals() -> None:
    # Issue 12 item 9: the RunParked write failed too, so the run stayed "running" for
    # good and statistics said parked=0. Parking is retried (by the sweeper, or by the
    # next message to the run) until the store takes it; then waiters are told.
    log = _faulty(Fault(nth=2, sticky=True, run_id="sick"))
    async with Runtime(log=log, clock=MockClock(), max_restarts=3, idle_timeout=0.02) as rt:
        sick = await _within(rt.start(faults_add, {"a": 1, "b": 1}, run_id="sick"))
        with pytest.raises(RunParkedError, match="could not be parked either"):
            await _within(sick.result())
        assert await rt.status("sick") == "running"  # nothing false was recorded
        assert rt.statistics().parked == 0 and rt.statistics().parking == 1
        later = asyncio.ensure_future(sick.result())  # a caller who comes later waits
        await asyncio.sleep(0.05)  # sweeps: the store still refuses the write
        assert not later.done() and await rt.status("sick") == "running"
        log.heal()
        with pytest.raises(RunParkedError, match="crashed 4 times") as caught:
            await _within(later)
        assert "could not" not in str(caught.value)
        assert await rt.status("sick") == "parked"
        assert rt.statistics().parked == 1 and rt.statistics().parking == 0
        await rt.continue_run("sick")  # an operator reopens it
        assert (await _within(sick.result()))["sum"] == 2
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_message_to_a_run_that_could_not_be_parked_parks_it_first() -> None:
    log = _faulty(Fault(nth=2, sticky=True, run_id="sick"))
    async with Runtime(log=log, clock=MockClock(), max_restarts=2, idle_timeout=3600) as rt:
        sick = await _within(rt.start(faults_add, {"a": 1, "b": 1}, run_id="sick"))
        with pytest.raises(RunParkedError, match="could not be parked either"):
            await _within(sick.result())
        log.heal()  # no sweep comes before the operator's message
        await rt.continue_run("sick")
        assert (await _within(sick.result()))["sum"] == 2
        assert rt.statistics().parked == 1
    kinds = [type(e).__name__ for e in await log.read("sick")]
    assert kinds.index("RunParked") < kinds.index("RunContinued")
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_run_whose_actor_keeps_crashing_is_parked_with_the_reason() -> None:
    log = _faulty()
    async with Runtime(log=log, clock=MockClock(), idle_timeout=0.01, max_restarts=2) as rt:
        await _within(rt.start(faults_flow, 1, run_id="doomed"))
        assert (await _within(rt.wait("doomed"))).status == "waiting"
        await asyncio.sleep(0.05)  # evicted: the next message rebuilds the actor from the store
        # Three rebuilds fail (1 start + 2 restarts); the supervisor's own read then works.
        log.inject(Fault(nth=1, times=3, ops={"read"}, run_id="doomed"))
        with pytest.raises(RunParkedError, match="crashed 3 times") as caught:
            await _within(rt.resume("doomed", "yes"))
        assert "injected fault in read #3 on run 'doomed'" in caught.value.reason
        assert await rt.status("doomed") == "parked"
        assert rt.statistics().parked == 1 and rt.statistics().restarts == 2
        assert (await _within(rt.run(faults_add, {"a": 4, "b": 4})))["sum"] == 8
        await rt.continue_run("doomed")  # an operator reopens it once the cause is fixed
        assert (await _within(rt.wait("doomed"))).status == "waiting"
        await rt.resume("doomed", "yes")
        assert (await _within(rt.wait("doomed"))).result == FLOW_RESULT
    FIGURES["faults_injected"] += len(log.injected)


async def test_a_corrupt_record_is_reported_with_run_and_seq_and_the_store_stays_usable() -> None:
    log = _faulty()
    async with Runtime(log=log, clock=MockClock(), idle_timeout=0.01, max_restarts=1) as rt:
        for i in range(3):
            await _within(rt.run(faults_add, {"a": i, "b": 0}, run_id=f"c-{i}"))
        log.corrupt("c-1", 2)
        await asyncio.sleep(0.05)  # let idle actors go: the next read comes from the store
        with pytest.raises(CorruptEventError, match="c-1#2") as caught:
            await rt.wait("c-1")
        assert (caught.value.run_id, caught.value.seq) == ("c-1", 2)
        with pytest.raises(RunParkedError, match="CorruptEventError: event c-1#2"):
            await _within(rt.cancel("c-1"))
        assert (await rt.wait("c-0")).result["sum"] == 0
        assert (await rt.wait("c-2")).result["sum"] == 2
        assert [info.run_id for info in await rt.list_runs()] == ["c-0", "c-1", "c-2"]
        assert (await _within(rt.run(faults_add, {"a": 9, "b": 9})))["sum"] == 18
    FIGURES["faults_injected"] += 2


# -- the sweep: fail the n-th operation, n = 1, 2, 3, ... ----------------------------------------


async def _drive_flow(rt: Runtime, log: FaultyEventLog) -> tuple[Any, list[str]]:
    """Start, wait, answer, wait; on a storage error heal the store and carry on from the log."""
    errors: list[str] = []
    for _ in range(8):
        try:
            if await _within(rt.get_run("sweep")) is None:
                await _within(rt.start(faults_flow, 1, run_id="sweep"))
            outcome = await _within(rt.wait("sweep"))
            if outcome.status == "waiting":
                await _within(rt.resume("sweep", "yes"))
                outcome = await _within(rt.wait("sweep"))
            if outcome.status in ("failed", "parked"):
                await _within(rt.continue_run("sweep"))
                outcome = await _within(rt.wait("sweep"))
            return outcome.unwrap(), errors
        except PerdureError as exc:
            assert isinstance(exc, StorageError), f"not a storage error: {exc!r}"
            errors.append(str(exc))
            log.heal()
    raise AssertionError(f"the workflow did not finish: {errors}")


@pytest.mark.parametrize(
    ("ops", "when"),
    [
        ({"append"}, "before"),
        ({"append"}, "after"),
        ({"append", "read", "get_run", "lookup_idempotency", "list_runs"}, "before"),
        ({"append", "read", "get_run", "lookup_idempotency", "list_runs"}, "after"),
        ({"due_timers", "next_timer"}, "before"),
    ],
    ids=["append-before", "append-after", "io-before", "io-after", "scheduler"],
)
async def test_failing_the_nth_operation_never_gives_a_wrong_result(
    ops: set[str], when: str
) -> None:
    kinds = ("write", "map_full", "fsync")
    n = 0
    while True:
        n += 1
        SEEN.clear()
        log = _faulty(Fault(nth=n, ops=ops, when=when, kind=kinds[n % 3]))  # type: ignore[arg-type]
        async with Runtime(log=log, clock=MockClock()) as rt:
            result, errors = await _drive_flow(rt, log)
            assert result == FLOW_RESULT, (n, result, errors)
            committed = await _committed_results(log, "sweep")
            assert all(value in committed for value in SEEN), (n, SEEN, committed)
            assert sorted(strip(v)["v"] for v in committed) == [2, 4, 6], n
            events = await log.inner.read("sweep")
            assert [e.seq for e in events] == list(range(len(events)))
        FIGURES["sweep_cases"] += 1
        FIGURES["faults_injected"] += len(log.injected)
        if not log.injected:
            break
    assert n > 3, "the sweep must have failed several operations"
