"""Messages to workflows (`Runtime.send` / `receive`) and events (`set_event` / `get_event`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import perdure
from perdure import Runtime, entrypoint
from perdure.errors import RunNotFoundError, RunSettledError
from perdure.eventlog import LmdbEventLog, MemoryEventLog, MessageDelivered, MessageReceived
from perdure.runtime import Registry


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
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        log = MemoryEventLog()
        return lambda: log
    return lambda: LmdbEventLog(tmp_path / "store")


async def test_send_receive_in_order_and_events(make_log: Any) -> None:
    registry = Registry()
    _workflows(registry)
    async with Runtime(log=make_log(), registry=registry) as rt:
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
