"""`FunctionContext`: injection, run id, 0-indexed attempt, correlated logging, idempotency key."""

from __future__ import annotations

from typing import Any

import pytest

import perdure
from perdure import FunctionContext, RetryPolicy, Runtime, function
from perdure.testing import MemoryEventLog, MockClock
from tests.support import Calls, only_run

FAST = RetryPolicy(max_attempts=4, initial_interval_ms=10, max_interval_ms=10)


async def test_context_injected_by_annotation(runtime: Runtime) -> None:
    @function(name="ctx_by_annotation")
    async def f(context: FunctionContext, x: int) -> list[Any]:
        return [type(context).__name__, x]

    assert await runtime.run(f, {"x": 1}) == ["FunctionContext", 1]


async def test_context_injected_by_string_annotation(runtime: Runtime) -> None:
    @function(name="ctx_by_string_annotation")
    async def f(context: perdure.FunctionContext, x: int) -> list[Any]:
        return [type(context).__name__, x]

    # This module uses `from __future__ import annotations`: the annotation is a string.
    assert f.__wrapped__.__annotations__["context"] == "perdure.FunctionContext"
    assert await runtime.run(f, {"x": 2}) == ["FunctionContext", 2]


async def test_context_injected_by_the_name_ctx(runtime: Runtime) -> None:
    @function(name="ctx_by_name")
    async def f(ctx, x):  # type: ignore[no-untyped-def]
        return [isinstance(ctx, FunctionContext), x]

    assert await runtime.run(f, {"x": 3}) == [True, 3]


async def test_context_is_optional(runtime: Runtime) -> None:
    @function(name="ctx_absent")
    async def add(a: int, b: int) -> int:
        return a + b

    @function(name="ctx_no_params")
    async def nothing() -> str:
        return "nothing"

    assert await runtime.run(add, {"a": 1, "b": 2}) == 3
    assert await runtime.run(nothing) == "nothing"


async def test_context_is_not_part_of_the_callers_input(runtime: Runtime) -> None:
    @function(name="ctx_not_input")
    async def f(ctx: FunctionContext, x: int) -> int:
        return x

    with pytest.raises(perdure.InvalidArgumentsError):
        await runtime.run(f, {"ctx": 1, "x": 1})


async def test_run_id_and_zero_indexed_attempts(runtime: Runtime) -> None:
    seen: list[tuple[str, int, str]] = []

    @function(name="ctx_attempts", retries=FAST)
    async def f(ctx: FunctionContext) -> str:
        seen.append((ctx.run_id, ctx.attempt, ctx.function))
        if ctx.attempt < 2:
            raise RuntimeError("again")
        return ctx.run_id

    handle = await runtime.start(f)
    assert await handle.result() == handle.run_id
    assert seen == [(handle.run_id, n, "ctx_attempts") for n in range(3)]


async def test_sync_functions_get_the_context_too(runtime: Runtime) -> None:
    @function(name="ctx_sync", retries=FAST)
    def f(ctx: FunctionContext, x: int) -> dict[str, Any]:
        if ctx.attempt == 0:
            raise RuntimeError("first try fails")
        return {"attempt": ctx.attempt, "run_id": ctx.run_id, "x": x}

    handle = await runtime.start(f, {"x": 5})
    assert await handle.result() == {"attempt": 1, "run_id": handle.run_id, "x": 5}


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_ctx_log_carries_the_correlation_ids(runtime: Runtime, logs: Any, sync: bool) -> None:
    def body(ctx: FunctionContext, url: str) -> str:
        ctx.log("Fetching document", url=url)
        if ctx.attempt == 0:
            raise ConnectionError("reset")
        return "ok"

    if sync:
        fn = function(name="ctx_log_sync", retries=FAST)(body)
    else:

        async def async_body(ctx: FunctionContext, url: str) -> str:
            return body(ctx, url)

        fn = function(name="ctx_log_async", retries=FAST)(async_body)

    handle = await runtime.start(fn, {"url": "https://example.com/a.pdf"})
    assert await handle.result() == "ok"
    entries = logs.find("Fetching document")
    assert [e["attempt"] for e in entries] == [0, 1]
    for entry in entries:
        assert entry["url"] == "https://example.com/a.pdf"
        assert entry["run_id"] == handle.run_id
        assert entry["function"] == fn.name
        assert entry["log_level"] == "info"
        trace_id = entry["trace_id"]
        assert isinstance(trace_id, str)
        assert len(trace_id) == 32


async def test_ctx_logger_has_the_usual_levels(runtime: Runtime, logs: Any) -> None:
    @function(name="ctx_logger_levels")
    async def f(ctx: FunctionContext) -> None:
        ctx.logger.debug("dbg", n=1)
        ctx.logger.info("inf", n=2)
        ctx.logger.warning("wrn", n=3)
        ctx.logger.error("err", n=4)

    handle = await runtime.start(f)
    await handle.result()
    got = {e["event"]: e for e in logs.entries if e.get("event") in {"dbg", "inf", "wrn", "err"}}
    assert {k: (v["log_level"], v["n"]) for k, v in got.items()} == {
        "dbg": ("debug", 1),
        "inf": ("info", 2),
        "wrn": ("warning", 3),
        "err": ("error", 4),
    }
    for entry in got.values():
        assert entry["run_id"] == handle.run_id
        assert entry["function"] == "ctx_logger_levels"
        assert entry["attempt"] == 0
        assert "trace_id" in entry


async def test_runtime_logs_attempt_failures_with_the_run_id(runtime: Runtime, logs: Any) -> None:
    @function(name="ctx_runtime_logs", retries=FAST)
    async def f(ctx: FunctionContext) -> None:
        if ctx.attempt == 0:
            raise ValueError("bad upstream reply")

    handle = await runtime.start(f)
    await handle.result()
    (failure,) = logs.find("attempt failed")
    assert failure["run_id"] == handle.run_id
    assert failure["attempt"] == 0
    assert "ValueError: bad upstream reply" in failure["error"]
    assert [e["status"] for e in logs.find("run settled") if e["run_id"] == handle.run_id] == [
        "completed"
    ]


async def test_idempotency_key_is_the_callers_key_on_every_attempt(runtime: Runtime) -> None:
    keys: list[str] = []

    @function(name="ctx_key_given", retries=FAST)
    async def charge(ctx: FunctionContext, amount: float) -> str:
        keys.append(ctx.idempotency_key)
        if ctx.attempt < 2:
            raise ConnectionError("payment gateway timeout")
        return "charged"

    await runtime.run(charge, {"amount": 9.5}, idempotency_key="order-456")
    assert keys == ["order-456"] * 3


async def test_idempotency_key_is_derived_from_the_run_when_none_is_given(runtime: Runtime) -> None:
    keys: list[tuple[str, str]] = []

    @function(name="ctx_key_derived", retries=FAST)
    async def f(ctx: FunctionContext) -> None:
        keys.append((ctx.run_id, ctx.idempotency_key))
        if ctx.attempt < 1:
            raise ConnectionError("again")

    await runtime.run(f)
    await runtime.run(f)
    (run_a, key_a), (run_a2, key_a2), (run_b, key_b), (run_b2, key_b2) = keys
    assert run_a == run_a2 != run_b == run_b2
    assert key_a == key_a2, "the derived key changed between retries"
    assert key_b == key_b2
    assert key_a != key_b, "two runs got the same derived key"
    assert run_a in key_a and run_b in key_b


async def test_derived_key_is_stable_across_a_runtime_restart(memlog: MemoryEventLog) -> None:
    import asyncio

    keys: list[str] = []
    entered = asyncio.Event()

    @function(name="ctx_key_restart")
    async def f(ctx: FunctionContext) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) == 1:
            entered.set()
            await asyncio.Event().wait()  # the first process stops while this runs
        return ctx.idempotency_key

    clock = MockClock()
    async with Runtime(log=memlog, clock=clock) as first:
        handle = await first.start(f)
        await entered.wait()
    async with Runtime(log=memlog, clock=clock) as second:
        outcome = await second.wait(handle.run_id)
        assert outcome.unwrap() == keys[0]
    assert keys[0] == keys[1]
    assert (await only_run(memlog)).status == "completed"


async def test_context_repr_names_run_and_attempt(runtime: Runtime) -> None:
    calls = Calls()

    @function(name="ctx_repr")
    async def f(ctx: FunctionContext) -> str:
        calls.hit()
        return repr(ctx)

    handle = await runtime.start(f)
    assert await handle.result() == f"FunctionContext(run_id={handle.run_id!r}, attempt=0)"
