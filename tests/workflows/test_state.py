"""get_state / get_state_history: a thread seen from outside, at each point of its log."""

from __future__ import annotations

from typing import Any

import pytest

from perdure import Command, MemoryEventLog, Runtime, StateSnapshot, entrypoint, interrupt, task
from tests.support import cfg


@task
def state_draft(topic: str) -> str:
    return f"draft on {topic}"


@entrypoint()
async def state_review(topic: str, *, previous: Any = None) -> dict[str, Any]:
    draft = await state_draft(topic)
    verdict = interrupt({"draft": draft})
    return {"draft": draft, "verdict": verdict, "round": (previous or {}).get("round", 0) + 1}


async def test_get_state_follows_a_thread(runtime: Runtime) -> None:
    config = cfg("state-thread")
    fresh = await state_review.aget_state(config)
    assert (fresh.status, fresh.invocation, fresh.tasks, fresh.values) == ("new", -1, (), None)

    paused = await state_review.ainvoke("owls", config)
    state = await state_review.aget_state(config)
    assert isinstance(state, StateSnapshot)
    assert state.thread_id == "state-thread"
    assert state.config == config
    assert state.status == "waiting"
    assert state.input == "owls"
    assert state.invocation == 0
    assert state.values is None  # nothing saved yet
    assert state.interrupts == tuple(paused["__interrupt__"])
    assert [(t.position, t.name, t.result) for t in state.tasks] == [
        ("0", "state_draft", "draft on owls")
    ]
    assert state.created_at <= state.updated_at

    result = await state_review.ainvoke(Command(resume="good"), config)
    done = await state_review.aget_state(config)
    assert (done.status, done.values, done.interrupts) == ("completed", result, ())
    assert done.seq > state.seq

    # the returned snapshot is a copy: mutating it changes nothing stored
    done.values["verdict"] = "tampered"
    assert (await state_review.aget_state(config)).values["verdict"] == "good"


async def test_get_state_history_is_newest_first_across_invocations(runtime: Runtime) -> None:
    config = cfg("state-history")
    await state_review.ainvoke("cats", config)
    await state_review.ainvoke(Command(resume="ok"), config)
    await state_review.ainvoke("dogs", config)

    history = await state_review.aget_state_history(config)
    assert all(isinstance(s, StateSnapshot) for s in history)
    oldest_first = list(reversed(history))
    assert [(s.invocation, s.status, len(s.tasks), len(s.interrupts)) for s in oldest_first] == [
        (0, "running", 0, 0),  # run started
        (0, "running", 1, 0),  # task recorded
        (0, "waiting", 1, 1),  # interrupted
        (0, "running", 1, 0),  # answered
        (0, "completed", 1, 0),  # completed (values = its result)
        (1, "running", 0, 0),  # second invocation started, `previous` saved
        (1, "running", 1, 0),
        (1, "waiting", 1, 1),
    ]
    assert [s.seq for s in oldest_first] == sorted(s.seq for s in oldest_first)
    assert oldest_first[4].values == {"draft": "draft on cats", "verdict": "ok", "round": 1}
    assert oldest_first[5].values == oldest_first[4].values  # the saved value, as `previous`
    assert history[0] == await state_review.aget_state(config)


def test_sync_get_state_and_history() -> None:
    @entrypoint(checkpointer=MemoryEventLog(), name="state_sync_review")
    def state_sync_review(topic: str) -> str:
        return state_draft(topic).result()

    config = cfg("state-sync")
    assert state_sync_review.invoke("bats", config) == "draft on bats"
    state = state_sync_review.get_state(config)
    assert (state.status, state.values) == ("completed", "draft on bats")
    assert [s.status for s in state_sync_review.get_state_history(config)] == [
        "completed",
        "running",
        "running",
    ]
    with pytest.raises(ValueError, match="thread"):
        state_sync_review.get_state({})
