"""The public `Replayer`: re-executes workflow code against recorded runs, with no side effects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import perdure
from perdure import (
    Command,
    MemoryEventLog,
    NonDeterminismError,
    Replayer,
    RunNotFoundError,
    Runtime,
    RunTimeoutError,
    TaskFailedError,
    UnknownTargetError,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support import Calls, cfg

CALLS = Calls()
OUTSIDE = {"bonus": 0}


@task
def rp_fetch(n: int) -> int:
    CALLS.hit("fetch")
    return n * 10


@task
async def rp_store(value: int) -> str:
    CALLS.hit("store")
    return f"stored {value}"


@task(retry_policy=2)
async def rp_explode(n: int) -> int:
    CALLS.hit("explode")
    raise RuntimeError(f"explode {n}")


@entrypoint()
def rp_flow(n: int) -> dict[str, Any]:
    fetched = rp_fetch(n).result()
    perdure.sleep(3600)
    answer = interrupt({"fetched": fetched})
    stored = rp_store(fetched + OUTSIDE["bonus"]).result()
    return {"answer": answer, "stored": stored}


@entrypoint()
async def rp_failing(n: int) -> int:
    return await rp_explode(n)


@entrypoint()
async def rp_total(step: int, *, previous: Any = None) -> int:
    return (previous or 0) + await rp_fetch(step)


@function(retries=2)
async def rp_double(n: int) -> int:
    CALLS.hit("double")
    return 2 * n


def other() -> Registry:
    """A registry for a changed version of a workflow (same name, new code)."""
    return Registry()


async def finished_flow(runtime: Runtime, thread: str) -> None:
    await rp_flow.ainvoke(4, cfg(thread))
    await rp_flow.ainvoke(Command(resume="yes"), cfg(thread))


# -- the code still fits -------------------------------------------------------------------------


async def test_completed_run_replays_without_running_tasks_or_waiting(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-done")
    before = CALLS.total()
    started = time.monotonic()

    result = await Replayer(workflows=[rp_flow]).areplay("rp-done", log=memlog)

    assert result.ok and result.divergence is None
    assert (result.run_id, result.target, result.kind, result.invocation) == (
        "rp-done",
        "rp_flow",
        "workflow",
        0,
    )
    assert result.recorded_end == "completed"
    assert result.matched == 4  # fetch, sleep, interrupt, store
    assert result.replayed == "returned"
    assert CALLS.total() == before  # no task ran
    assert time.monotonic() - started < 5  # the hour-long sleep did not wait


async def test_waiting_run_replays_up_to_its_pending_interrupt(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    paused = await rp_flow.ainvoke(1, cfg("rp-wait"))
    pending = paused["__interrupt__"][0]

    result = await Replayer(workflows=[rp_flow]).areplay("rp-wait", log=memlog)

    assert result.ok
    assert result.recorded_end == "waiting"
    assert result.waiting_on == (pending.id,)
    assert result.stopped_at == "2"
    assert result.matched == 3
    assert result.replayed == "reached the end of the log"


async def test_replay_takes_events_as_well_as_a_run_id(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-events")
    events = await memlog.read("rp-events")
    assert (await Replayer(workflows=[rp_flow]).areplay(events)).ok


async def test_failed_run_replays_to_the_same_failure(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    with pytest.raises(perdure.RunFailedError):
        await rp_failing.ainvoke(3, cfg("rp-fail"))
    calls = CALLS["explode"]

    result = await Replayer(workflows=[rp_failing]).areplay(
        "rp-fail", log=memlog, raise_on_failure=True
    )

    assert result.ok and result.recorded_end == "failed"
    assert result.replayed.startswith("raised TaskFailedError")
    assert CALLS["explode"] == calls


async def test_latest_invocation_replays_with_the_previous_it_saw(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    assert await rp_total.ainvoke(1, cfg("rp-total")) == 10
    assert await rp_total.ainvoke(2, cfg("rp-total")) == 30  # previous 10 + 20

    result = await Replayer(workflows=[rp_total]).areplay(
        "rp-total", log=memlog, raise_on_failure=True
    )
    assert result.ok and result.invocation == 1 and result.matched == 1


async def test_function_runs_have_nothing_to_replay(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    handle = await runtime.start(rp_double, {"n": 2})
    await handle.result()
    result = await Replayer().areplay(handle.run_id, log=memlog)
    assert result.ok and result.kind == "function" and result.replayed == "not re-executed"
    assert "function" in result.notes[0]


def test_sync_replay_works_outside_an_event_loop() -> None:
    async def record() -> list[Any]:
        log = MemoryEventLog()
        async with Runtime(log=log, clock=MockClock()):
            await rp_total.ainvoke(5, cfg("rp-sync"))
        return await log.read("rp-sync")

    events = asyncio.run(record())
    assert Replayer(workflows=[rp_total]).replay(events).ok


async def test_sync_replay_inside_a_loop_says_to_await() -> None:
    with pytest.raises(RuntimeError, match="areplay"):
        Replayer(workflows=[rp_total]).replay("x", log=MemoryEventLog())


# -- the code no longer fits ------------------------------------------------------------------


async def test_renamed_task_is_the_first_divergence(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-renamed")

    @task
    def rp_fetch_v2(n: int) -> int:
        return n

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        return rp_fetch_v2(n).result()

    replayer = Replayer(workflows=[flow_v2])
    result = await replayer.areplay("rp-renamed", log=memlog)
    assert not result.ok and result.matched == 0
    div = result.divergence
    assert div is not None
    assert (div.run_id, div.position) == ("rp-renamed", "0")
    assert "rp_fetch" in div.recorded and "rp_fetch_v2" in div.requested
    assert result.recorded_input == [[4], {}]
    assert result.location is not None and "test_replayer.py" in result.location
    with pytest.raises(NonDeterminismError) as caught:
        await replayer.areplay("rp-renamed", log=memlog, raise_on_failure=True)
    assert caught.value.position == "0"


async def test_a_step_added_after_the_end_of_a_completed_run_diverges(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-added")

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        fetched = rp_fetch(n).result()
        perdure.sleep(3600)
        answer = interrupt({"fetched": fetched})
        rp_store(fetched).result()
        return rp_store(answer).result()  # new step at position 4

    result = await Replayer(workflows=[flow_v2]).areplay("rp-added", log=memlog)
    assert result.divergence is not None
    assert result.divergence.position == "4"
    assert "nothing" in result.divergence.recorded and "rp_store" in result.divergence.requested
    assert result.matched == 4


async def test_a_recorded_step_the_code_skips_diverges(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-skipped")

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        return rp_fetch(n).result()  # returns before the sleep the log recorded at 1

    result = await Replayer(workflows=[flow_v2]).areplay("rp-skipped", log=memlog)
    assert result.divergence is not None
    assert result.divergence.position == "1"
    assert "durable sleep" in result.divergence.recorded
    assert result.divergence.requested.startswith("did not ask for it")


async def test_a_different_result_from_the_same_steps_diverges(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-result")
    OUTSIDE["bonus"] = 1  # the body reads a global: not deterministic
    try:
        result = await Replayer(workflows=[rp_flow]).areplay("rp-result", log=memlog)
    finally:
        OUTSIDE["bonus"] = 0
    # the store task's input changed (40 -> 41): the matcher catches it at position 3
    assert result.divergence is not None and result.divergence.position == "3"


async def test_a_changed_return_value_diverges_at_return(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-return")

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        fetched = rp_fetch(n).result()
        perdure.sleep(3600)
        answer = interrupt({"fetched": fetched})
        stored = rp_store(fetched).result()
        return {"answer": answer, "stored": stored, "extra": True}

    result = await Replayer(workflows=[flow_v2]).areplay("rp-return", log=memlog)
    assert result.divergence is not None
    assert result.divergence.position == "return"
    assert "extra" in result.divergence.requested and result.matched == 4


async def test_code_that_now_swallows_a_failure_diverges(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    with pytest.raises(perdure.RunFailedError):
        await rp_failing.ainvoke(1, cfg("rp-swallow"))

    @entrypoint(registry=other(), name="rp_failing")
    async def failing_v2(n: int) -> int:
        try:
            return await rp_explode(n)
        except TaskFailedError:
            return -1

    result = await Replayer(workflows=[failing_v2]).areplay("rp-swallow", log=memlog)
    assert result.divergence is not None and result.divergence.position == "return"
    assert "TaskFailedError" in result.divergence.recorded


async def test_divergence_wrapped_by_user_code_is_still_found(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-wrapped")

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        try:
            return rp_store(n).result()
        except Exception as exc:
            raise ValueError("wrapped") from exc

    result = await Replayer(workflows=[flow_v2]).areplay("rp-wrapped", log=memlog)
    assert result.divergence is not None and result.divergence.position == "0"


# -- errors ---------------------------------------------------------------------------------------


async def test_unknown_run_and_unknown_workflow_are_clear_errors(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    with pytest.raises(RunNotFoundError):
        await Replayer(workflows=[rp_flow]).areplay("no-such-run", log=memlog)
    await finished_flow(runtime, "rp-unknown")
    with pytest.raises(UnknownTargetError, match="rp_flow"):
        await Replayer(workflows=[rp_total]).areplay("rp-unknown", log=memlog)
    with pytest.raises(TypeError, match="@entrypoint"):
        Replayer(workflows=[rp_double])
    with pytest.raises(TypeError, match="log="):
        await Replayer().areplay("rp-unknown")
    await rp_total.ainvoke(1, cfg("rp-unknown-2"))
    one, two = await memlog.read("rp-unknown"), await memlog.read("rp-unknown-2")
    with pytest.raises(ValueError, match="one run"):
        await Replayer().areplay([one[0], two[1]])
    with pytest.raises(ValueError, match="in order"):
        await Replayer().areplay([one[0], one[2]])


async def test_a_body_waiting_outside_perdure_times_out(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await finished_flow(runtime, "rp-hang")
    never = asyncio.Event()

    @entrypoint(registry=other(), name="rp_flow")
    async def flow_v2(n: int) -> Any:
        await never.wait()

    replayer = Replayer(workflows=[flow_v2], timeout=0.05)
    result = await replayer.areplay("rp-hang", log=memlog)
    assert not result.ok and result.replayed == "timed out" and result.divergence is None
    with pytest.raises(RunTimeoutError):
        await replayer.areplay("rp-hang", log=memlog, raise_on_failure=True)


# -- many runs ------------------------------------------------------------------------------------


async def test_replay_all_summarises_and_filters(runtime: Runtime, memlog: MemoryEventLog) -> None:
    await finished_flow(runtime, "rp-all-1")
    await rp_flow.ainvoke(2, cfg("rp-all-2"))  # waiting
    await rp_total.ainvoke(1, cfg("rp-all-3"))  # not known to the replayer below
    seen: list[tuple[int, int]] = []

    replayer = Replayer(workflows=[rp_flow])
    summary = await replayer.areplay_all(
        memlog, progress=lambda done, total: seen.append((done, total))
    )
    assert summary.ok and not summary.failures and not summary.errors
    assert {r.run_id for r in summary.results} == {"rp-all-1", "rp-all-2"}
    assert summary.skipped == (("rp-all-3", "rp_total"),)
    assert seen == [(1, 3), (2, 3), (3, 3)]

    in_flight = await replayer.areplay_all(memlog, status=("running", "waiting"))
    assert [r.run_id for r in in_flight.results] == ["rp-all-2"]
    assert not (
        await replayer.areplay_all(memlog, target="rp_flow", since=time.time() + 1e9)
    ).results

    @entrypoint(registry=other(), name="rp_flow")
    def flow_v2(n: int) -> Any:
        return rp_store(n).result()

    broken = await Replayer(workflows=[flow_v2]).areplay_all(memlog, target="rp_flow")
    assert not broken.ok and len(broken.failures) == 2


async def test_a_run_cut_off_mid_task_replays_up_to_that_task() -> None:
    """The log of a process that died while a task ran: replay stops where the run stands."""
    from perdure.eventlog import RunStarted, TaskAttemptStarted, digest

    events = [
        RunStarted(run_id="rp-cut", seq=0, ts=1.0, target="rp_total", kind="workflow",
                   input=3, input_digest=digest(3)),
        TaskAttemptStarted(run_id="rp-cut", seq=1, ts=2.0, position="0", name="rp_fetch",
                           input_digest=digest([[3], {}]), attempt=0, input=[[3], {}]),
    ]  # fmt: skip
    result = await Replayer(workflows=[rp_total]).areplay(events, raise_on_failure=True)
    assert result.ok and result.recorded_end == "running"
    assert result.stopped_at == "0" and result.matched == 1
    assert result.replayed == "reached the end of the log"
