"""interrupt() and Command(resume=...): single, sequential and parallel interrupts, bad resumes."""

from __future__ import annotations

from typing import Any

import pytest

from perdure import (
    Command,
    Interrupt,
    InvalidResumeError,
    RunFailedError,
    RunNotFoundError,
    RunSettledError,
    Runtime,
    entrypoint,
    interrupt,
    task,
)
from perdure.eventlog import Interrupted, TaskCompleted
from tests.support import Calls, cfg, events_of, of_type

CALLS = Calls()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()


@entrypoint()
def intr_two_questions(name: str) -> dict[str, Any]:
    age = interrupt(f"how old is {name}?")
    city = interrupt(f"where does {name} live?")
    return {"name": name, "age": age, "city": city}


@task
def intr_review(section: str) -> dict[str, Any]:
    CALLS.hit(section)
    verdict = interrupt({"review": section})
    return {"section": section, "verdict": verdict}


@entrypoint()
def intr_parallel(sections: list[str]) -> list[dict[str, Any]]:
    futures = [intr_review(s) for s in sections]  # all three ask at once
    return [future.result() for future in futures]


@entrypoint()
def intr_fails(x: int) -> int:
    raise ValueError("boom")


def _by_value(interrupts: list[Interrupt]) -> dict[str, str]:
    return {i.value["review"]: i.id for i in interrupts}


async def test_invoke_returns_the_pending_interrupt_and_each_resume_answers_the_next(
    runtime: Runtime,
) -> None:
    config = cfg("two-questions")
    first = await intr_two_questions.ainvoke("ada", config)
    assert first == {"__interrupt__": [Interrupt("how old is ada?", first["__interrupt__"][0].id)]}
    second = await intr_two_questions.ainvoke(Command(resume=36), config)
    [pending] = second["__interrupt__"]
    assert pending.value == "where does ada live?"
    assert pending.id != first["__interrupt__"][0].id
    assert await intr_two_questions.ainvoke(Command(resume="London"), config) == {
        "name": "ada",
        "age": 36,
        "city": "London",
    }


async def test_parallel_interrupts_surface_together_with_stable_ids(runtime: Runtime) -> None:
    config = cfg("parallel-reviews")
    paused = await intr_parallel.ainvoke(["a", "b", "c"], config)
    pending = paused["__interrupt__"]
    ids = _by_value(pending)
    assert sorted(ids) == ["a", "b", "c"]
    assert len(set(ids.values())) == 3
    state = await intr_parallel.aget_state(config)
    assert state.status == "waiting"
    assert _by_value(list(state.interrupts)) == ids  # the same ids, read back from the log

    # A bare value cannot say which question it answers.
    with pytest.raises(InvalidResumeError, match="pending interrupts") as info:
        await intr_parallel.ainvoke(Command(resume="yes"), config)
    assert sorted(info.value.pending) == sorted(ids.values())

    # Answer a subset: the others stay pending under the same ids.
    paused = await intr_parallel.ainvoke(Command(resume={ids["a"]: "approved"}), config)
    assert _by_value(paused["__interrupt__"]) == {"b": ids["b"], "c": ids["c"]}

    # An interrupt already answered cannot be answered again.
    with pytest.raises(InvalidResumeError, match="already answered"):
        await intr_parallel.ainvoke(Command(resume={ids["a"]: "changed my mind"}), config)

    result = await intr_parallel.ainvoke(
        Command(resume={ids["b"]: "rejected", ids["c"]: "approved"}), config
    )
    assert result == [
        {"section": "a", "verdict": "approved"},
        {"section": "b", "verdict": "rejected"},
        {"section": "c", "verdict": "approved"},
    ]
    # An interrupted task re-runs on resume and then gets its answer; "a" ran twice
    # (ask, answered), "b" and "c" three times (ask, still pending, answered).
    assert dict(CALLS.counts) == {"a": 2, "b": 3, "c": 3}
    events = await events_of(runtime.log, "parallel-reviews")
    assert len(of_type(events, Interrupted)) == 3  # asked once each, however often re-run
    assert len(of_type(events, TaskCompleted)) == 3


async def test_resume_with_nothing_pending_is_an_error(runtime: Runtime) -> None:
    config = cfg("nothing-pending")
    await intr_two_questions.ainvoke("bob", config)
    await intr_two_questions.ainvoke(Command(resume=1), config)
    assert (await intr_two_questions.ainvoke(Command(resume="Paris"), config))["city"] == "Paris"
    with pytest.raises(InvalidResumeError, match="no pending interrupt"):
        await intr_two_questions.ainvoke(Command(resume="again"), config)

    with pytest.raises(RunFailedError):
        await intr_fails.ainvoke(1, cfg("failed-run"))
    with pytest.raises(InvalidResumeError, match="status: failed"):
        await intr_fails.ainvoke(Command(resume="x"), cfg("failed-run"))

    with pytest.raises(RunNotFoundError):
        await intr_two_questions.ainvoke(Command(resume="x"), cfg("never-started"))
    with pytest.raises(ValueError, match="thread"):
        await intr_two_questions.ainvoke(Command(resume="x"))


async def test_runtime_send_resumes_a_paused_thread(runtime: Runtime) -> None:
    handle = await runtime.start(intr_two_questions, "cy", run_id="send-thread")
    assert (await handle.result())["__interrupt__"][0].value == "how old is cy?"
    await runtime.send("send-thread", Command(resume=40))
    assert (await handle.result())["__interrupt__"][0].value == "where does cy live?"
    await runtime.send("send-thread", Command(resume="Oslo"))
    assert await handle.result() == {"name": "cy", "age": 40, "city": "Oslo"}
    assert await runtime.status("send-thread") == "completed"
    # Anything else is a message (see tests/messages/test_messages.py); a settled run takes none.
    with pytest.raises(RunSettledError, match="settled"):
        await runtime.send("send-thread", "not a command")


async def test_a_dict_answer_that_names_no_interrupt_is_an_answer(runtime: Runtime) -> None:
    config = cfg("dict-answer")
    await intr_two_questions.ainvoke("di", config)
    paused = await intr_two_questions.ainvoke(Command(resume={"years": 3}), config)
    assert paused["__interrupt__"][0].value == "where does di live?"
    result = await intr_two_questions.ainvoke(Command(resume="Rome"), config)
    assert result["age"] == {"years": 3}


@task
def intr_two_step_review(section: str) -> list[Any]:
    first = interrupt(f"{section}: first?")
    if section == "a":
        return [first, interrupt("a: follow-up?")]
    return [first]


@entrypoint()
def intr_follow_up(sections: list[str]) -> list[list[Any]]:
    futures = [intr_two_step_review(s) for s in sections]
    return [future.result() for future in futures]


async def test_a_partial_resume_returns_only_once_the_run_has_paused_again(
    runtime: Runtime,
) -> None:
    """Answering "a" re-runs its task, which asks a follow-up: the caller must get it too."""
    config = cfg("follow-up")
    paused = await intr_follow_up.ainvoke(["a", "b"], config)
    ids = {i.value: i.id for i in paused["__interrupt__"]}
    assert sorted(ids) == ["a: first?", "b: first?"]

    paused = await intr_follow_up.ainvoke(Command(resume={ids["a: first?"]: 1}), config)
    assert sorted(i.value for i in paused["__interrupt__"]) == ["a: follow-up?", "b: first?"]

    chunks = [
        chunk
        async for chunk in intr_follow_up.astream(Command(resume={ids["b: first?"]: 2}), config)
    ]
    update, marker = chunks  # b's task finished; the body still waits on a's follow-up
    assert update == {"intr_two_step_review": [2]}
    assert [i.value for i in marker["__interrupt__"]] == ["a: follow-up?"]
    follow_up = marker["__interrupt__"][0].id
    assert await intr_follow_up.ainvoke(Command(resume={follow_up: 3}), config) == [[1, 3], [2]]
