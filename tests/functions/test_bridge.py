"""The sync/async bridge: sync and async callers reach the runtime open on a store, wherever it is.

A FastAPI app whose lifespan opened a `Runtime` serves `async def` handlers on
that loop and `def` handlers on worker threads: both must reach that runtime
(the store allows one writer per process). A `Client` can be closed, releasing
the store for a `Runtime` opened later in the same process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from perdure import (
    Client,
    Command,
    LmdbEventLog,
    Runtime,
    asleep,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure._bridge import Bridge
from perdure.errors import ClientUsageError, RunTimeoutError, StoreLockedError


@function(name="bridge_add")
async def bridge_add(a: int, b: int) -> dict[str, Any]:
    return {"sum": a + b, "thread": threading.current_thread().name}


GATE = threading.Event()
STARTED = threading.Event()


@function(name="bridge_gate")
def bridge_gate() -> str:
    STARTED.set()
    GATE.wait(30)
    return "through"


@task
def bridge_draft(topic: str) -> str:
    return f"draft about {topic}"


@entrypoint(name="bridge_review")
def bridge_review(topic: str) -> dict[str, Any]:
    draft = bridge_draft(topic).result()
    verdict = interrupt({"draft": draft})
    return {"draft": draft, "verdict": verdict}


@entrypoint(name="bridge_sleepy")
async def bridge_sleepy(seconds: float) -> str:
    await asleep(seconds)
    return "woke up"


def make_app(store: Path, seen: dict[str, Any]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(path=store) as runtime:
            seen["runtime"] = runtime
            seen["loop"] = threading.current_thread().name
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/sync/add")
    def sync_add(a: int, b: int) -> dict[str, Any]:
        seen["sync_handler_thread"] = threading.current_thread().name
        result: dict[str, Any] = Client(store).run("bridge_add", {"a": a, "b": b})
        return result

    @app.post("/async/add")
    async def async_add(a: int, b: int) -> dict[str, Any]:
        result: dict[str, Any] = await Client(store).arun("bridge_add", {"a": a, "b": b})
        return result

    @app.post("/sync/review/{thread}")
    def sync_review(thread: str) -> dict[str, Any]:
        paused = bridge_review.invoke("otters", {"configurable": {"thread_id": thread}})
        return {"asks": [i.value for i in paused["__interrupt__"]]}

    @app.post("/sync/review/{thread}/answer")
    def sync_answer(thread: str, verdict: str) -> dict[str, Any]:
        config = {"configurable": {"thread_id": thread}}
        updates = list(bridge_review.stream(Command(resume=verdict), config))
        state = bridge_review.get_state(config)
        return {"updates": updates, "status": state.status}

    @app.post("/async/review/{thread}")
    async def async_review(thread: str) -> dict[str, Any]:
        paused = await bridge_review.ainvoke("badgers", {"configurable": {"thread_id": thread}})
        return {"asks": [i.value for i in paused["__interrupt__"]]}

    @app.post("/async/review/{thread}/answer")
    async def async_answer(thread: str, verdict: str) -> dict[str, Any]:
        result: dict[str, Any] = await bridge_review.ainvoke(
            Command(resume=verdict), {"configurable": {"thread_id": thread}}
        )
        return result

    return app


def test_fastapi_def_and_async_def_handlers_reach_the_lifespan_runtime(
    _isolated_store: Path,
) -> None:
    store = _isolated_store  # PERDURE_PATH: the workflow (no checkpointer) uses it too
    seen: dict[str, Any] = {}
    with TestClient(make_app(store, seen)) as http:
        got = http.post("/sync/add", params={"a": 2, "b": 3})
        assert got.status_code == 200, got.text
        # The body ran on the lifespan's loop, not on a background runtime of its own.
        assert got.json() == {"sum": 5, "thread": seen["loop"]}
        assert seen["sync_handler_thread"] != seen["loop"]
        got = http.post("/async/add", params={"a": 1, "b": 1})
        assert got.json() == {"sum": 2, "thread": seen["loop"]}

        asks = http.post("/sync/review/t-sync").json()["asks"]
        assert asks == [{"draft": "draft about otters"}]
        done = http.post("/sync/review/t-sync/answer", params={"verdict": "yes"}).json()
        assert done["status"] == "completed"
        assert done["updates"][-1] == {
            "bridge_review": {"draft": "draft about otters", "verdict": "yes"}
        }

        assert http.post("/async/review/t-async").json()["asks"] == [
            {"draft": "draft about badgers"}
        ]
        answered = http.post("/async/review/t-async/answer", params={"verdict": "no"}).json()
        assert answered == {"draft": "draft about badgers", "verdict": "no"}

        runtime: Runtime = seen["runtime"]

        async def runs() -> set[str]:
            return {r.run_id for r in await runtime.list_runs()}

        assert {"t-sync", "t-async"} <= asyncio.run_coroutine_threadsafe(
            runs(),
            runtime._loop,  # type: ignore[arg-type]
        ).result(10)
    # The lifespan closed its runtime: the store is free for a new one in this process.
    assert "t-sync" in asyncio.run(_open_and_close(store))


async def _open_and_close(store: Path) -> set[str]:
    """Open a Runtime on the store (refused while another holds it): the runs it sees."""
    async with Runtime(path=store) as runtime:
        return {r.run_id for r in await runtime.list_runs()}


def test_sync_call_from_a_thread_reaches_a_runtime_on_another_loop(tmp_path: Path) -> None:
    store = tmp_path / "store"

    async def main() -> dict[str, Any]:
        async with Runtime(path=store):
            result: dict[str, Any] = await asyncio.to_thread(
                Client(store).run, "bridge_add", {"a": 4, "b": 5}
            )
            return result

    result = asyncio.run(main())
    assert result["sum"] == 9 and result["thread"] == threading.current_thread().name


def test_closing_a_client_releases_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with Client(store) as client:
        assert client.run("bridge_add", {"a": 1, "b": 2})["sum"] == 3
    asyncio.run(_open_and_close(store))  # no StoreLockedError: the client let go

    client = Client(store)
    client.run("bridge_add", {"a": 1, "b": 2})
    client.close()
    client.close()  # closing twice is fine
    with pytest.raises(ClientUsageError, match="closed"):
        client.run("bridge_add", {"a": 1, "b": 2})
    asyncio.run(_open_and_close(store))


async def test_async_with_client_releases_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with Client(store) as client:
        assert (await client.arun("bridge_add", {"a": 2, "b": 2}))["sum"] == 4
    async with Runtime(path=store) as runtime:
        assert runtime.is_open


def test_a_client_closes_the_store_only_when_no_other_client_uses_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first, second = Client(store), Client(store)
    first.run("bridge_add", {"a": 1, "b": 1})
    second.run("bridge_add", {"a": 1, "b": 1})
    first.close()
    assert second.run("bridge_add", {"a": 2, "b": 1})["sum"] == 3  # still served
    with pytest.raises(StoreLockedError):
        asyncio.run(_open_and_close(store))
    second.close()
    asyncio.run(_open_and_close(store))


def test_a_closed_client_releases_the_store_when_the_calls_in_flight_end(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    client = Client(store)
    client.run("bridge_add", {"a": 1, "b": 1})
    results: list[str] = []
    # A call that holds no lease of its own beyond its duration (as a workflow's calls do).
    caller = threading.Thread(
        target=lambda: results.append(
            Bridge(path=str(store)).call(lambda rt: rt.run("bridge_gate"), "blocking")
        )
    )
    GATE.clear()
    STARTED.clear()
    caller.start()
    try:
        assert STARTED.wait(30)
        client.close()  # the call in flight keeps the runtime until it ends
        with pytest.raises(StoreLockedError):
            asyncio.run(_open_and_close(store))
    finally:
        GATE.set()
        caller.join(10)
    assert results == ["through"]
    asyncio.run(_open_and_close(store))  # released when the call gave its lease back


async def test_blocking_workflow_calls_inside_a_loop_raise_client_usage_error() -> None:
    config = {"configurable": {"thread_id": "in-loop"}}
    with pytest.raises(ClientUsageError, match="ainvoke"):
        bridge_review.invoke("x", config)
    with pytest.raises(ClientUsageError, match="astream"):
        next(iter(bridge_review.stream("x", config)))
    with pytest.raises(ClientUsageError, match="aget_state"):
        bridge_review.get_state(config)


def test_an_lmdb_checkpointer_and_its_path_are_one_store(tmp_path: Path) -> None:
    """A workflow whose checkpointer is `LmdbEventLog(path)` reaches the Runtime open on that
    path; a second Runtime on the store's log object is refused (both would drive its runs)."""
    store = tmp_path / "store"

    async def main() -> dict[str, Any]:
        async with Runtime(path=store) as runtime:
            log = LmdbEventLog(store)
            try:
                flow = entrypoint(checkpointer=log, name="bridge_on_lmdb")(_lmdb_flow)
                config = {"configurable": {"thread_id": "lmdb-1"}}
                result: dict[str, Any] = await asyncio.to_thread(flow.invoke, 3, config)
                assert await runtime.get_run("lmdb-1") is not None
                with pytest.raises(StoreLockedError, match="another Runtime"):
                    await Runtime(log=log).open()
                return result
            finally:
                await log.close()

    assert asyncio.run(main()) == {"n": 3, "thread": threading.current_thread().name}


async def _lmdb_flow(n: int) -> dict[str, Any]:
    return {"n": n, "thread": threading.current_thread().name}  # the loop's thread


def test_a_runtime_whose_loop_is_not_running_is_a_usage_error_not_a_hang(tmp_path: Path) -> None:
    store = tmp_path / "store"
    loop = asyncio.new_event_loop()
    runtime = Runtime(path=store)
    loop.run_until_complete(runtime.open())
    try:
        with pytest.raises(ClientUsageError, match="not running"):
            Client(store).run("bridge_add", {"a": 1, "b": 1})
    finally:
        loop.run_until_complete(runtime.close())
        loop.close()


def test_a_sync_client_run_with_a_timeout_raises_run_timeout_error(tmp_path: Path) -> None:
    # RunTimeoutError is a TimeoutError: the bridge's own polling once took it for its
    # poll timing out and waited forever.
    outcome: dict[str, Any] = {}

    def call(client: Client) -> None:
        try:
            client.run("bridge_sleepy", 3600, run_id="sleepy-sync", timeout=0.05)
        except RunTimeoutError as exc:
            outcome["error"] = exc

    with Client(path=tmp_path / "s") as client:
        caller = threading.Thread(target=call, args=(client,), daemon=True)
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "Client.run(timeout=...) never returned"
        assert outcome["error"].run_id == "sleepy-sync"
        status = Bridge(path=str(tmp_path / "s")).call(
            lambda rt: rt.status("sleepy-sync"), "status"
        )
        assert status in ("running", "waiting")  # the run carries on (asleep)
        client.cancel("sleepy-sync")


async def test_an_async_client_run_with_a_timeout_raises_run_timeout_error(
    tmp_path: Path,
) -> None:
    async with Client(path=tmp_path / "s") as client:
        with pytest.raises(RunTimeoutError) as caught:
            await asyncio.wait_for(
                client.arun("bridge_sleepy", 3600, run_id="sleepy-async", timeout=0.05), 10
            )
        assert caught.value.run_id == "sleepy-async"
