"""Messages to workflows (`Runtime.send` / `receive`) and events (`set_event` / `get_event`)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import perdure
from perdure import Replayer, Runtime, entrypoint
from perdure.errors import RunNotFoundError, RunSettledError
from perdure.eventlog import MemoryEventLog, MessageDelivered, MessageReceived
from perdure.runtime import Registry
from perdure.testing import MockClock


def _workflows(registry: Registry) -> tuple[Any, Any]:
    @entrypoint(name="collect", registry=registry)
    async def collect(n: int) -> list[Any]:
        got = []
        for i in range(n):
            got.append(await perdure.areceive())
            perdure.set_event("progress", i + 1)
        return got

    @entrypoint(name="waits", registry=registry)
    def waits(_: Any) -> Any:
        return ["got", perdure.receive("t", timeout=5)]

    return collect, waits


@pytest.fixture(params=["memory", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Runtime keyword arguments for a store that outlives one runtime."""
    if request.param == "memory":
        return {"log": MemoryEventLog()}
    return {"path": str(tmp_path / "store")}


async def test_send_receive_in_order_and_events(store: dict[str, Any]) -> None:
    registry = Registry()
    _workflows(registry)
    async with Runtime(**store, registry=registry) as rt:
        handle = await rt.start("collect", 3, run_id="r1")
        await rt.send("r1", {"a": 1})
        await rt.send("r1", "two", idempotency_key="k")
        await rt.send("r1", "two", idempotency_key="k")  # no-op
        await rt.send("r1", 3)
        outcome = await rt.wait(handle.run_id, timeout=30)
        assert outcome.status == "completed", outcome
        assert outcome.result == [{"a": 1}, "two", 3]
        assert await rt.get_event("r1", "progress") == 3
        assert await rt.get_event("r1", "missing") is None
        with pytest.raises(RunSettledError):
            await rt.send("r1", "late")
        with pytest.raises(RunNotFoundError):
            await rt.send("nope", 1)
        events = await rt.log.read("r1")
        assert sum(type(e) is MessageReceived for e in events) == 3
        assert sum(type(e) is MessageDelivered for e in events) == 3


async def test_messages_from_ten_threads_to_a_busy_run(store: dict[str, Any]) -> None:
    registry = Registry()

    @entrypoint(name="sink", registry=registry)
    async def sink(n: int) -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {"a": [], "b": []}
        for i in range(n):
            topic = "a" if i % 2 == 0 else "b"
            got[topic].append(await perdure.areceive(topic))
        return got

    per_thread, threads = 20, 10
    async with Runtime(**store, registry=registry) as rt:
        await rt.start("sink", per_thread * threads, run_id="busy")
        loop = asyncio.get_running_loop()

        def sender(t: int) -> None:
            for i in range(per_thread):
                topic = "a" if t % 2 == 0 else "b"
                asyncio.run_coroutine_threadsafe(rt.send("busy", [t, i], topic=topic), loop).result(
                    30
                )

        workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        await asyncio.gather(*(asyncio.to_thread(w.join) for w in workers))
        outcome = await rt.wait("busy", timeout=60)
        assert outcome.status == "completed", outcome
        events = await rt.log.read("busy")
        # A replay hands every receive the same message.
        report = await Replayer(registry=registry).areplay("busy", log=rt.log)
        assert report.ok, report
    sent = {
        topic: [e.value for e in events if type(e) is MessageReceived and e.topic == topic]
        for topic in ("a", "b")
    }
    for topic in ("a", "b"):
        received = outcome.result[topic]
        assert received == sent[topic]  # exactly once each, in append order
        for t in range(threads):  # and each thread's messages in the order it sent them
            mine = [m[1] for m in received if m[0] == t]
            assert mine == sorted(mine)
    assert len(outcome.result["a"]) + len(outcome.result["b"]) == per_thread * threads


async def test_message_sent_while_no_runtime_runs_the_body(store: dict[str, Any]) -> None:
    registry = Registry()
    _workflows(registry)
    async with Runtime(**store, registry=registry) as rt:
        await rt.start("collect", 1, run_id="offline")
        for _ in range(200):
            if (await rt.status("offline")) == "waiting":
                break
            await asyncio.sleep(0.01)
        assert await rt.status("offline") == "waiting"
    # Another process (the CLI) without the workflow's code records the message only.
    async with Runtime(**store, registry=Registry(), recover=False) as other:
        await other.send("offline", "while you were out")
    async with Runtime(**store, registry=registry) as rt:
        outcome = await rt.wait("offline", timeout=30)
        assert outcome.status == "completed", outcome
        assert outcome.result == ["while you were out"]


async def test_receive_timeout_across_a_restart_fires_on_time(store: dict[str, Any]) -> None:
    registry = Registry()
    _workflows(registry)
    clock = MockClock(autojump=False)
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        await rt.start("waits", None, run_id="t")
        for _ in range(200):
            if (await rt.state("t")).receiving:
                break
            await asyncio.sleep(0.01)
        assert (await rt.state("t")).timers
    async with Runtime(**store, registry=registry, clock=clock) as rt:
        clock.advance(4.9)
        await asyncio.sleep(0.05)
        assert await rt.status("t") == "waiting"
        clock.advance(0.2)
        outcome = await rt.wait("t", timeout=30)
        assert outcome.result == ["got", None]


def test_cli_send_records_a_message_for_a_waiting_run(tmp_path: Path) -> None:
    from perdure.cli import main

    registry = Registry()
    _workflows(registry)
    path = str(tmp_path / "store")

    async def start() -> None:
        async with Runtime(path, registry=registry) as rt:
            await rt.start("collect", 1, run_id="cli")
            for _ in range(200):
                if await rt.status("cli") == "waiting":
                    return
                await asyncio.sleep(0.01)

    async def finish() -> Any:
        async with Runtime(path, registry=registry) as rt:
            return (await rt.wait("cli", timeout=30)).result

    asyncio.run(start())
    assert main(["send", "cli", '{"from": "cli"}', "--topic", "default", "--store", path]) == 0
    assert main(["events", "cli", "--store", path]) == 0
    assert asyncio.run(finish()) == [{"from": "cli"}]


def test_client_send_and_get_event(tmp_path: Path) -> None:
    registry = Registry()
    _workflows(registry)
    path = str(tmp_path / "store")

    async def start() -> None:
        async with Runtime(path, registry=registry) as rt:
            await rt.start("collect", 2, run_id="cl")

    asyncio.run(start())
    with perdure.Client(path) as client:
        client.send("cl", "one", idempotency_key="x")
        client.send("cl", "one", idempotency_key="x")
        # This process lacks the workflow's code: the run waits, nothing is published yet.
        assert client.get_event("cl", "progress") is None
        with pytest.raises(RunNotFoundError):
            client.send("missing", 1)
        with pytest.raises(TypeError, match="topic"):
            client.send("cl", 1, topic="")
    events = asyncio.run(_read(path, "cl"))
    assert [e.value for e in events if type(e) is MessageReceived] == ["one"]


async def _read(path: str, run_id: str) -> list[Any]:
    async with Runtime(path, registry=Registry(), recover=False) as rt:
        return list(await rt.log.read(run_id))
