"""Values that cannot be stored fail with the path of the bad value, before anything is committed.

Each case then "fixes the code" (a flag the workflow reads) and continues the
run with ``invoke(None, config)``: the run finishes, completed tasks do not run again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perdure import (
    Command,
    RetryPolicy,
    RunFailedError,
    Runtime,
    SerializationError,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.eventlog import TaskAttemptStarted, TaskCompleted, TaskFailed
from perdure.eventlog._json import MAX_DEPTH
from tests.support import Calls, cfg, events_of, names, of_type

CALLS = Calls()
FIXED: set[str] = set()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()
    FIXED.clear()


class Report:
    """Not JSON: an arbitrary object."""

    def __init__(self, text: str) -> None:
        self.text = text


@task
def ser_fetch(name: str) -> str:
    CALLS.hit("fetch")
    return f"<{name}>"


@task(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=1))
def ser_tags(name: str) -> dict[str, Any]:
    CALLS.hit("tags")
    tags = ["a", "b"] if "tags" in FIXED else {"a", "b"}  # a set is not JSON
    return {"name": name, "tags": tags}


@entrypoint()
def ser_bad_result(name: str) -> dict[str, Any]:
    page = ser_fetch(name).result()
    return {"page": page, "meta": ser_tags(name).result()}


@entrypoint()
def ser_bad_return(name: str) -> Any:
    page = ser_fetch(name).result()
    return {"page": page} if "return" in FIXED else {"page": page, "report": Report(page)}


@entrypoint()
def ser_bad_save(name: str) -> Any:
    page = ser_fetch(name).result()
    return entrypoint.final(value=page, save=page if "save" in FIXED else {page: {1, 2}})


@entrypoint()
def ser_bad_question(name: str) -> Any:
    page = ser_fetch(name).result()
    when: Any = "2024-01-01" if "question" in FIXED else b"2024-01-01"  # bytes: not storable
    return {"page": page, "answer": interrupt({"page": page, "when": when})}


@entrypoint()
def ser_bad_argument(name: str) -> Any:
    page = ser_fetch(name).result()
    arg: Any = [1.5] if "argument" in FIXED else [1.5, float("nan")]
    meta = ser_tags(name=f"{page}{arg}" if "argument" in FIXED else arg).result()
    return {"page": page, "tags": meta["tags"]}


async def _failed_with(workflow: Any, thread: str, needle: str) -> RunFailedError:
    with pytest.raises(RunFailedError) as info:
        await workflow.ainvoke("doc", cfg(thread))
    assert info.value.error_type in ("SerializationError", "TaskFailedError")
    assert needle in info.value.error_message
    assert (await workflow.aget_state(cfg(thread))).status == "failed"
    return info.value


async def test_a_task_result_that_is_not_json(runtime: Runtime) -> None:
    error = await _failed_with(ser_bad_result, "ser-result", "result['tags']")
    assert "set" in error.error_message
    assert CALLS["tags"] == 1  # not retried: retrying cannot make a set serialisable
    events = await events_of(runtime.log, "ser-result")
    assert [e.position for e in of_type(events, TaskCompleted)] == ["0"]  # no result for "1"
    [failed] = of_type(events, TaskFailed)
    assert failed.error_type == "SerializationError"

    FIXED.add("tags")
    assert await ser_bad_result.ainvoke(None, cfg("ser-result")) == {
        "page": "<doc>",
        "meta": {"name": "doc", "tags": ["a", "b"]},
    }
    assert dict(CALLS.counts) == {"fetch": 1, "tags": 2}


async def test_an_entrypoint_return_value_that_is_not_json(runtime: Runtime) -> None:
    error = await _failed_with(ser_bad_return, "ser-return", "return value['report']")
    assert error.error_type == "SerializationError"
    assert "Report" in error.error_message
    events = await events_of(runtime.log, "ser-return")
    assert "run_completed" not in names(events)

    FIXED.add("return")
    assert await ser_bad_return.ainvoke(None, cfg("ser-return")) == {"page": "<doc>"}
    assert CALLS["fetch"] == 1


async def test_a_saved_value_that_is_not_json(runtime: Runtime) -> None:
    await _failed_with(ser_bad_save, "ser-save", "saved value['<doc>']")
    FIXED.add("save")
    assert await ser_bad_save.ainvoke(None, cfg("ser-save")) == "<doc>"
    assert (await ser_bad_save.aget_state(cfg("ser-save"))).values == "<doc>"


async def test_an_interrupt_value_that_is_not_json(runtime: Runtime) -> None:
    error = await _failed_with(ser_bad_question, "ser-question", "value['when']")
    assert "interrupt()" in error.error_message and "bytes" in error.error_message
    events = await events_of(runtime.log, "ser-question")
    assert "interrupted" not in names(events)

    FIXED.add("question")
    paused = await ser_bad_question.ainvoke(None, cfg("ser-question"))
    assert paused["__interrupt__"][0].value == {"page": "<doc>", "when": "2024-01-01"}
    result = await ser_bad_question.ainvoke(Command(resume="fine"), cfg("ser-question"))
    assert result == {"page": "<doc>", "answer": "fine"}
    assert CALLS["fetch"] == 1


async def test_a_task_argument_that_is_not_json(runtime: Runtime) -> None:
    error = await _failed_with(ser_bad_argument, "ser-argument", "kwargs['name'][1]")
    assert "ser_tags" in error.error_message and "nan" in error.error_message
    events = await events_of(runtime.log, "ser-argument")
    assert [e.position for e in of_type(events, TaskAttemptStarted)] == ["0"]
    assert CALLS["tags"] == 0

    FIXED.add("argument")
    FIXED.add("tags")
    result = await ser_bad_argument.ainvoke(None, cfg("ser-argument"))
    assert result == {"page": "<doc>", "tags": ["a", "b"]}
    assert CALLS["fetch"] == 1


async def test_bad_input_and_bad_resume_values_are_refused_before_recording(
    runtime: Runtime,
) -> None:
    with pytest.raises(SerializationError, match=r"input\[0\]") as info:
        await ser_bad_question.ainvoke([Report("x")], cfg("ser-input"))
    assert info.value.path == "input[0]"
    assert await runtime.get_run("ser-input") is None

    FIXED.add("question")
    config = cfg("ser-resume")
    (pending,) = (await ser_bad_question.ainvoke("doc", config))["__interrupt__"]
    with pytest.raises(SerializationError, match="resume") as bad:
        await ser_bad_question.ainvoke(Command(resume={"ok": {1, 2}}), config)
    assert bad.value.path is not None and "['ok']" in bad.value.path
    state = await ser_bad_question.aget_state(config)
    assert state.status == "waiting" and state.interrupts == (pending,)
    assert (await ser_bad_question.ainvoke(Command(resume="yes"), config))["answer"] == "yes"


# --- values too deep to store, or containing themselves ------------------------------------------
# 256 to ~1,000 levels once passed the check and then broke the encoder; deeper ones and
# cycles raised RecursionError. As a result, the write failed after the body ran: the
# actor crash-looped, re-running the body, until the run was parked with no trace.


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"next": value} if levels % 2 else [value]
    return value


def _too_big(kind: str) -> Any:
    if kind == "cycle":
        value: dict[str, Any] = {"items": []}
        value["items"].append(value)
        return value
    return _nested(int(kind))


@task
def ser_deep(kind: str) -> Any:
    CALLS.hit("deep")
    return _too_big(kind)


@task
async def ser_adeep(kind: str) -> Any:
    CALLS.hit("deep")
    return _too_big(kind)


@entrypoint()
def ser_deep_result(kind: str) -> Any:
    return ser_deep(kind).result()


@entrypoint()
async def ser_adeep_result(kind: str) -> Any:
    return await ser_adeep(kind)


@entrypoint()
def ser_deep_return(kind: str) -> Any:
    CALLS.hit("body")
    return _too_big(kind)


@entrypoint()
async def ser_adeep_question(kind: str) -> Any:
    CALLS.hit("body")
    return interrupt(_too_big(kind))


@function(name="ser_deep_fn", retries=3)
def ser_deep_fn(shape: str) -> Any:
    CALLS.hit("deep")
    return _too_big(shape)


@function(name="ser_adeep_fn", retries=3)
async def ser_adeep_fn(shape: str) -> Any:
    CALLS.hit("deep")
    return _too_big(shape)


KINDS = ["300", "301", "1000", "5000", "cycle"]
TOO_BIG = "nested more than 200 levels|contains a cycle"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flow", [ser_deep_result, ser_adeep_result], ids=["sync", "async"])
async def test_a_task_result_too_deep_is_one_recorded_failed_attempt(
    runtime: Runtime, flow: Any, kind: str
) -> None:
    thread = f"ser-deep-{flow.name}-{kind}"
    with pytest.raises(RunFailedError, match=TOO_BIG) as info:
        await asyncio.wait_for(flow.ainvoke(kind, cfg(thread)), 30)
    assert "result" in info.value.error_message
    assert CALLS["deep"] == 1  # the body ran once: no crash loop
    events = await events_of(runtime.log, thread)
    assert len(of_type(events, TaskAttemptStarted)) == 1
    [failed] = of_type(events, TaskFailed)
    assert failed.error_type == "SerializationError"
    assert "run_parked" not in names(events)
    assert (await flow.aget_state(cfg(thread))).status == "failed"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flow", [ser_deep_return, ser_adeep_question], ids=["return", "ask"])
async def test_a_return_value_or_question_too_deep_fails_the_run_once(
    runtime: Runtime, flow: Any, kind: str
) -> None:
    thread = f"ser-deep-{flow.name}-{kind}"
    with pytest.raises(RunFailedError, match=TOO_BIG):
        await asyncio.wait_for(flow.ainvoke(kind, cfg(thread)), 30)
    assert CALLS["body"] == 1
    events = await events_of(runtime.log, thread)
    assert names(events)[-1] == "run_failed" and "run_parked" not in names(events)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fn", [ser_deep_fn, ser_adeep_fn], ids=["sync", "async"])
async def test_a_function_result_too_deep_is_one_recorded_failed_attempt(
    runtime: Runtime, fn: Any, kind: str
) -> None:
    run_id = f"ser-deep-{fn.name}-{kind}"
    with pytest.raises(RunFailedError, match=TOO_BIG):
        await asyncio.wait_for(runtime.run(fn, {"shape": kind}, run_id=run_id), 30)
    assert CALLS["deep"] == 1  # not retried: the same code returns the same value
    events = await events_of(runtime.log, run_id)
    [failed] = of_type(events, TaskFailed)
    assert failed.error_type == "SerializationError"
    assert names(events)[-1] == "run_failed" and "run_parked" not in names(events)


async def test_values_at_the_depth_limit_are_stored_everywhere(runtime: Runtime) -> None:
    deepest = _nested(MAX_DEPTH - 1)  # the limit counts the outer container too
    assert await ser_deep_echo.ainvoke(deepest, cfg("ser-deepest")) is not None
    paused = await ser_deep_echo.ainvoke(None, cfg("ser-deepest"))
    assert paused["__interrupt__"][0].value == deepest
    assert await ser_deep_echo.ainvoke(Command(resume=deepest), cfg("ser-deepest")) == deepest
    with pytest.raises(SerializationError, match="nested more than 200 levels"):
        await ser_deep_echo.ainvoke(_nested(MAX_DEPTH + 1), cfg("ser-deeper"))
    assert await runtime.get_run("ser-deeper") is None


@task
def ser_deep_copy(value: Any) -> Any:
    return value


@entrypoint()
def ser_deep_echo(value: Any) -> Any:
    copy = ser_deep_copy(value).result()
    return interrupt(copy)
