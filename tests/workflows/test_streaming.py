"""stream / astream: "updates", "values", "custom", several modes at once, interrupts, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from perdure import (
    Command,
    EventLog,
    Interrupt,
    MemoryEventLog,
    RunFailedError,
    Runtime,
    Workflow,
    entrypoint,
    interrupt,
    task,
)
from tests.support import cfg


@task
def stream_square(x: int) -> int:
    return x * x


@task
async def stream_fail(x: int) -> int:
    raise RuntimeError(f"cannot handle {x}")


def make_flow(checkpointer: EventLog | None, name: str) -> Workflow:
    @entrypoint(checkpointer=checkpointer, name=name)
    def flow(n: int, *, writer: Callable[[Any], None]) -> int:
        writer({"step": "start", "n": n})
        total = 0
        for i in range(n):  # sequential: a deterministic order of updates
            total += stream_square(i).result()
        writer({"step": "done", "total": total})
        return total

    return flow


def make_asking(checkpointer: EventLog | None, name: str) -> Workflow:
    @entrypoint(checkpointer=checkpointer, name=name)
    async def asking(n: int) -> dict[str, Any]:
        square = await stream_square(n)
        answer = interrupt({"square": square})
        return {"square": square, "answer": answer}

    return asking


@entrypoint()
async def stream_failing(n: int) -> int:
    first = await stream_square(n)
    return first + await stream_fail(n)


FLOW = make_flow(MemoryEventLog(), "stream_flow")  # sync callers: a background runtime
ASKING = make_asking(MemoryEventLog(), "stream_asking")
LOCAL_FLOW = make_flow(None, "stream_local_flow")  # async callers: the enclosing runtime
LOCAL_ASKING = make_asking(None, "stream_local_asking")

UPDATES = [{"stream_square": 0}, {"stream_square": 1}, {"stream_square": 4}]
CUSTOM = [{"step": "start", "n": 3}, {"step": "done", "total": 5}]
EVERYTHING = [
    ("custom", CUSTOM[0]),
    ("updates", UPDATES[0]),
    ("updates", UPDATES[1]),
    ("updates", UPDATES[2]),
    ("custom", CUSTOM[1]),
    ("updates", {"stream_flow": 5}),
    ("values", 5),
]


def test_updates_is_the_default_mode() -> None:
    chunks = list(FLOW.stream(3, cfg("st-updates")))
    assert chunks == [*UPDATES, {"stream_flow": 5}]


def test_values_mode_yields_the_result() -> None:
    assert list(FLOW.stream(3, cfg("st-values"), stream_mode="values")) == [5]


def test_custom_mode_yields_writer_items() -> None:
    assert list(FLOW.stream(3, cfg("st-custom"), stream_mode="custom")) == CUSTOM


def test_several_modes_yield_mode_chunk_pairs() -> None:
    chunks = list(FLOW.stream(3, cfg("st-all"), stream_mode=["updates", "values", "custom"]))
    assert chunks == EVERYTHING
    single = list(FLOW.stream(2, cfg("st-one-in-list"), stream_mode=["values"]))
    assert single == [("values", 1)]


def test_interrupts_are_streamed_then_the_resumed_run_streams_the_rest() -> None:
    config = cfg("st-interrupt")
    first = list(ASKING.stream(4, config, stream_mode=["updates", "values"]))
    assert first[0] == ("updates", {"stream_square": 16})
    marker = first[1][1]
    assert [mode for mode, _ in first[1:]] == ["updates", "values"]
    (pending,) = marker["__interrupt__"]
    assert isinstance(pending, Interrupt) and pending.value == {"square": 16}
    assert first[2][1] == marker

    rest = list(ASKING.stream(Command(resume="yes"), config))
    assert rest == [{"stream_asking": {"square": 16, "answer": "yes"}}]  # nothing re-streamed


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="stream_mode"):
        list(FLOW.stream(1, cfg("st-bad-mode"), stream_mode="messages"))


async def test_sync_stream_inside_an_event_loop_points_to_astream() -> None:
    with pytest.raises(RuntimeError, match="astream"):
        list(FLOW.stream(1, cfg("st-in-loop")))


async def test_astream_on_the_enclosing_runtime(runtime: Runtime) -> None:
    chunks = [
        c
        async for c in LOCAL_FLOW.astream(
            3, cfg("ast-all"), stream_mode=["updates", "values", "custom"]
        )
    ]
    assert chunks == [
        (mode, {"stream_local_flow": 5} if chunk == {"stream_flow": 5} else chunk)
        for mode, chunk in EVERYTHING
    ]
    config = cfg("ast-interrupt")
    first = [c async for c in LOCAL_ASKING.astream(2, config)]
    assert first[0] == {"stream_square": 4}
    assert first[1]["__interrupt__"][0].value == {"square": 4}
    rest = [
        c async for c in LOCAL_ASKING.astream(Command(resume="no"), config, stream_mode="values")
    ]
    assert rest == [{"square": 4, "answer": "no"}]


async def test_astream_through_a_background_runtime() -> None:
    chunks = [c async for c in FLOW.astream(3, cfg("ast-background"), stream_mode="custom")]
    assert chunks == CUSTOM


async def test_a_failing_run_streams_its_progress_then_raises(runtime: Runtime) -> None:
    seen: list[Any] = []
    with pytest.raises(RunFailedError, match="cannot handle 3"):
        async for chunk in stream_failing.astream(3, cfg("ast-fail")):
            seen.append(chunk)
    assert seen == [{"stream_square": 9}]
