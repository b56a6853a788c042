"""The seed's essay example (task + interrupt + resume), in the Python spelling, run as users do.

The same workflow runs with every kind of checkpointer (in-memory, an LMDB
store, the default embedded store), through `invoke` and `stream`, and is
resumed from a different runtime and from a different process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import (
    Client,
    Command,
    EventLog,
    Interrupt,
    LmdbEventLog,
    MemoryEventLog,
    Runtime,
    Workflow,
    entrypoint,
    interrupt,
    task,
)
from perdure.runtime import close_background_runtimes
from tests.support import Calls, cfg

CALLS = Calls()
QUESTION = {"essay": "An essay about topic: cat", "action": "Please approve/reject the essay"}
ANSWER = {"essay": "An essay about topic: cat", "is_approved": True}


@task
def write_essay(topic: str) -> str:
    """Write an essay about the given topic."""
    CALLS.hit(topic)
    return f"An essay about topic: {topic}"


def essay_workflow_on(checkpointer: EventLog | None) -> Workflow:
    """The seed's workflow, verbatim but for the import line and the checkpointer."""

    @entrypoint(checkpointer=checkpointer)
    def essay_workflow(topic: str) -> dict[str, Any]:
        """A simple workflow that writes an essay and asks for a review."""
        essay = write_essay("cat").result()
        is_approved = interrupt(
            {
                # Any json-serializable payload provided to interrupt as argument.
                "essay": essay,  # The essay we want reviewed.
                "action": "Please approve/reject the essay",
            }
        )
        return {
            "essay": essay,  # The essay that was generated
            "is_approved": is_approved,  # Response from HIL
        }

    return essay_workflow


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.counts.clear()
    CALLS.order.clear()


@pytest.fixture
def lmdb_log(tmp_path: Path) -> Iterator[LmdbEventLog]:
    log = LmdbEventLog(tmp_path / "essays")
    yield log
    close_background_runtimes()  # the background runtime does not close a log it was given
    asyncio.run(log.close())


@pytest.fixture(params=["memory", "lmdb", "default"])
def checkpointer(request: pytest.FixtureRequest) -> EventLog | None:
    if request.param == "memory":
        return MemoryEventLog()
    if request.param == "lmdb":
        log: LmdbEventLog = request.getfixturevalue("lmdb_log")
        return log
    return None  # the default embedded store (PERDURE_PATH, isolated per test)


def test_invoke_pauses_on_the_interrupt_and_resumes_with_a_command(
    checkpointer: EventLog | None,
) -> None:
    workflow = essay_workflow_on(checkpointer)
    config = cfg(str(uuid.uuid4()))

    paused = workflow.invoke("cat", config)
    assert list(paused) == ["__interrupt__"]
    [pending] = paused["__interrupt__"]
    assert isinstance(pending, Interrupt)
    assert pending.value == QUESTION
    assert isinstance(pending.id, str) and pending.id

    assert workflow.invoke(Command(resume=True), config) == ANSWER
    assert CALLS["cat"] == 1  # the resumed run loaded the essay instead of rewriting it
    state = workflow.get_state(config)
    assert state.status == "completed"
    assert state.values == ANSWER


def test_stream_yields_the_task_update_the_interrupt_then_the_result(
    checkpointer: EventLog | None,
) -> None:
    workflow = essay_workflow_on(checkpointer)
    config = cfg(str(uuid.uuid4()))

    first = list(workflow.stream("cat", config))
    assert len(first) == 2
    assert first[0] == {"write_essay": "An essay about topic: cat"}
    (pending,) = first[1]["__interrupt__"]
    assert isinstance(first[1]["__interrupt__"], tuple)
    assert pending.value == QUESTION

    second = list(workflow.stream(Command(resume=True), config))
    assert second == [{"essay_workflow": ANSWER}]
    assert CALLS["cat"] == 1


async def test_astream_and_ainvoke_on_an_embedding_runtime(runtime: Runtime) -> None:
    workflow = essay_workflow_on(None)  # no checkpointer: the enclosing runtime's log is used
    config = cfg("essay-async")
    chunks = [chunk async for chunk in workflow.astream("cat", config)]
    assert chunks[0] == {"write_essay": "An essay about topic: cat"}
    assert chunks[1]["__interrupt__"][0].value == QUESTION
    assert await workflow.ainvoke(Command(resume=True), config) == ANSWER
    assert (await runtime.get_run("essay-async")) is not None  # it really ran on this runtime
    assert CALLS["cat"] == 1


async def test_resumed_by_a_new_runtime_on_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    thread = "essay-new-runtime"
    workflow = essay_workflow_on(None)
    async with Runtime(path) as first:
        handle = await first.start(workflow, "cat", run_id=thread)
        paused = await handle.result()
        assert paused["__interrupt__"][0].value == QUESTION
    assert CALLS["cat"] == 1

    async with Runtime(path) as second:  # e.g. a new deployment, days later
        await second.send(thread, Command(resume=True))
        assert (await second.wait(thread)).unwrap() == ANSWER
    assert CALLS["cat"] == 1


_CHILD = textwrap.dedent(
    """
    import json, sys
    from perdure import entrypoint, interrupt, task

    @task
    def write_essay(topic):
        print("BODY", flush=True)
        return f"An essay about topic: {topic}"

    @entrypoint()
    def essay_workflow(topic):
        essay = write_essay("cat").result()
        is_approved = interrupt({"essay": essay, "action": "Please approve/reject the essay"})
        return {"essay": essay, "is_approved": is_approved}

    out = essay_workflow.invoke("cat", {"configurable": {"thread_id": sys.argv[1]}})
    print(json.dumps([[i.value, i.id] for i in out["__interrupt__"]]), flush=True)
    """
)


def test_resumed_from_another_process(_isolated_store: Path) -> None:
    """A process starts the essay and exits at the interrupt; this process answers it."""
    thread = f"essay-{uuid.uuid4().hex}"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, thread],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PERDURE_PATH": os.fspath(_isolated_store)},
        check=False,
    )
    assert child.returncode == 0, child.stderr
    lines = child.stdout.strip().splitlines()
    assert lines.count("BODY") == 1
    [[question, interrupt_id]] = json.loads(lines[-1])
    assert question == QUESTION

    workflow = essay_workflow_on(None)  # default store = the child's store
    config = cfg(thread)
    assert workflow.get_state(config).interrupts == (Interrupt(QUESTION, interrupt_id),)
    assert workflow.invoke(Command(resume=True), config) == ANSWER
    assert CALLS["cat"] == 0  # the essay written by the other process was loaded from the log


def test_client_runs_a_workflow_by_name() -> None:
    """`Client().run(name, input)`: the input is the entrypoint's single positional argument."""
    essay_workflow_on(None)  # registered under "essay_workflow", on the default store
    paused = Client().run("essay_workflow", "cat")
    [pending] = paused["__interrupt__"]
    assert pending.value == QUESTION
    assert CALLS["cat"] == 1
