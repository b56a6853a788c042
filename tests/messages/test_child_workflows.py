"""Child workflows: a workflow body calling another `@entrypoint` starts a recorded child run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import perdure
from perdure import Command, Runtime, entrypoint, task
from perdure.errors import NotInWorkflowError, TaskFailedError
from perdure.eventlog import MemoryEventLog, TaskCompleted
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.support.waiting import until_state


class Family:
    def __init__(self) -> None:
        self.registry = Registry()
        self.child_bodies = 0
        self.squared: list[int] = []
        family = self

        @task
        async def square(n: int) -> int:
            family.squared.append(n)
            return n * n

        @entrypoint(name="child", registry=self.registry)
        async def child(n: int) -> int:
            family.child_bodies += 1
            if n < 0:
                raise ValueError(f"negative: {n}")
            return await square(n)

        @entrypoint(name="parent", registry=self.registry)
        async def parent(ns: list[int]) -> Any:
            first = await child.ainvoke(ns[0])
            futures = [child(n) for n in ns[1:]]  # children in parallel, like tasks
            rest = [await f for f in futures]
            try:
                await child.ainvoke(-1)
            except TaskFailedError as exc:
                failed = exc.error_message
            else:
                failed = ""
            wait = await perdure.areceive()
            return {"results": [first, *rest], "failed": failed, "then": wait}

        @entrypoint(name="sync_parent", registry=self.registry)
        def sync_parent(n: int) -> int:
            return child.invoke(n) + 1

        @entrypoint(name="asks", registry=self.registry)
        def asks(_: Any) -> Any:
            return perdure.interrupt("ok?")

        @entrypoint(name="waits_on_asks", registry=self.registry)
        async def waits_on_asks(_: Any) -> Any:
            return {"child said": await asks.ainvoke(0)}

        @entrypoint(name="forever", registry=self.registry)
        async def forever(_: Any) -> Any:
            return await perdure.areceive()

        @entrypoint(name="waits_forever", registry=self.registry)
        async def waits_forever(_: Any) -> Any:
            return await forever.ainvoke(0)

        self.child = child


async def test_children_run_once_are_recorded_and_replayed(store: dict[str, Any]) -> None:
    family = Family()
    async with Runtime(**store, registry=family.registry) as rt:
        await rt.start("parent", [2, 3, 4], run_id="p")
        await until_state(rt, "p", lambda s: s.started and s.receiving)
        assert family.child_bodies == 4
        for run_id, result in (("p/0.0", 4), ("p/0.1", 9), ("p/0.2", 16)):
            outcome = await rt.wait(run_id)
            assert (outcome.status, outcome.result) == ("completed", result)
        assert (await rt.wait("p/0.3")).status == "failed"
    # A restart re-executes the parent's body: the children are not started again.
    async with Runtime(**store, registry=family.registry) as rt:
        await rt.send("p", "go")
        outcome = await rt.wait("p", timeout=30)
        assert outcome.status == "completed", outcome
        assert outcome.result["results"] == [4, 9, 16]
        assert "negative: -1" in outcome.result["failed"]
        assert outcome.result["then"] == "go"
        assert family.child_bodies == 4
        assert sorted(family.squared) == [2, 3, 4]
        events = await rt.log.read("p")
        recorded = [e for e in events if type(e) is TaskCompleted]
        assert [e.name for e in recorded] == ["child:child"] * 3
        report = await perdure.Replayer(registry=family.registry).areplay(events)
        assert report.divergence is None, report


async def test_sync_body_invoke_and_a_child_that_pauses() -> None:
    family = Family()
    async with Runtime(log=MemoryEventLog(), registry=family.registry) as rt:
        assert await rt.run("sync_parent", 5) == 26
        await rt.start("waits_on_asks", None, run_id="w")
        await until_state(rt, "w/0.0", lambda s: s.started and s.pending_interrupts())
        await asyncio.sleep(0.05)
        assert await rt.status("w") == "running"  # its child step waits on the child
        await rt.resume("w/0.0", "yes")
        assert (await rt.wait("w", timeout=30)).result == {"child said": "yes"}


async def test_cancelling_the_parent_cancels_its_running_child() -> None:
    family = Family()
    async with Runtime(log=MemoryEventLog(), registry=family.registry) as rt:
        await rt.start("waits_forever", None, run_id="x")
        await until_state(rt, "x/0.0", lambda s: s.started and s.receiving)
        await rt.cancel("x", "user gave up")
        outcome = await rt.wait("x/0.0", timeout=30)
        assert outcome.status == "cancelled"
        assert "x" in outcome.reason and "user gave up" in outcome.reason


async def test_a_parent_s_deadline_cancels_its_running_child() -> None:
    family = Family()
    clock = MockClock(autojump=False)
    async with Runtime(log=MemoryEventLog(), registry=family.registry, clock=clock) as rt:
        await rt.start("waits_forever", None, run_id="y", deadline=clock.now() + 60)
        await until_state(rt, "y/0.0", lambda s: s.started and s.receiving)
        clock.advance(60)
        outcome = await rt.wait("y/0.0", timeout=30)
        assert outcome.status == "cancelled"
        assert "deadline exceeded" in outcome.reason and "'y'" in outcome.reason


async def test_calling_a_workflow_outside_a_body_is_refused() -> None:
    family = Family()
    with pytest.raises(NotInWorkflowError, match="invoke"):
        family.child(3)
    with pytest.raises(TypeError, match="child run"):
        registry = Registry()

        @entrypoint(name="bad_parent", registry=registry)
        async def bad_parent(_: Any) -> Any:
            return await family.child.ainvoke(Command(resume=1))

        async with Runtime(log=MemoryEventLog(), registry=registry) as rt:
            try:
                await rt.run("bad_parent", 1)
            except perdure.errors.RunFailedError as exc:
                raise TypeError(str(exc)) from exc


def test_runs_show_and_events_list_a_parent_s_children(tmp_path: Path) -> None:
    from tests.support.cli import cli

    family = Family()
    path = str(tmp_path / "store")

    async def run() -> None:
        async with Runtime(path, registry=family.registry) as rt:
            assert await rt.run("sync_parent", 3, run_id="sp") == 10

    asyncio.run(run())
    shown = cli("--store", path, "runs", "show", "sp")
    assert shown.code == 0, shown
    assert "children:" in shown.out
    assert "sp/0.0  child  completed  (position 0)" in shown.out
    as_json = cli("--store", path, "runs", "show", "sp", "--json")
    assert '"run_id": "sp/0.0"' in as_json.out
    # `perdure events` ends a parent's events with its children, as `runs show` lists them.
    history = cli("--store", path, "events", "sp")
    assert history.code == 0, history
    lines = history.out.splitlines()
    assert lines[-2:] == ["children:", "  sp/0.0  child  completed  (position 0)"], lines
    assert "children:" not in cli("--store", path, "events", "sp/0.0").out  # a childless run
    assert "children" not in cli("--store", path, "events", "sp", "--json").out
