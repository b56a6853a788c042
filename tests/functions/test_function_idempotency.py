"""Idempotency keys: same key = same result (or same final error), body not run again.

Also while the first call is still running, after a runtime restart on the same
LMDB store, and a key reused with a different input is an error naming the key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from perdure import (
    FunctionContext,
    IdempotencyConflictError,
    LmdbEventLog,
    RetryPolicy,
    RunFailedError,
    Runtime,
    function,
)
from perdure.testing import MemoryEventLog, MockClock
from tests.support import Calls, only_run

calls = Calls()
gates: dict[str, asyncio.Event] = {}  # a fresh gate per test (see `fresh_counters`)


@function(name="idem_charge")
async def idem_charge(ctx: FunctionContext, amount: float) -> dict[str, object]:
    n = calls.hit("charge")
    return {"charged": amount, "execution": n, "run_id": ctx.run_id}


@function(name="idem_declined", retries=RetryPolicy(max_attempts=2, initial_interval_ms=100))
async def idem_declined(amount: float) -> None:
    calls.hit("declined")
    raise PermissionError(f"card declined for {amount}")


@function(name="idem_gated")
async def idem_gated(item: str) -> str:
    calls.hit("gated")
    await gates["gate"].wait()
    return f"processed {item}"


@pytest.fixture(autouse=True)
def fresh_counters() -> None:
    calls.counts.clear()
    gates["gate"] = asyncio.Event()


async def test_same_key_returns_the_first_result_without_running_again(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    first = await runtime.run("idem_charge", {"amount": 99.99}, idempotency_key="order-456")
    second = await runtime.run("idem_charge", {"amount": 99.99}, idempotency_key="order-456")
    assert first == second
    assert first["execution"] == 0
    assert calls["charge"] == 1
    run = await only_run(memlog)
    assert run.idempotency_key == "order-456"
    assert run.run_id == first["run_id"]


async def test_same_key_gives_a_handle_to_the_same_run(runtime: Runtime) -> None:
    a = await runtime.start(idem_charge, {"amount": 1.0}, idempotency_key="k-handle")
    b = await runtime.start(idem_charge, {"amount": 1.0}, idempotency_key="k-handle")
    assert a.run_id == b.run_id
    assert await a.result() == await b.result()
    assert calls["charge"] == 1


async def test_without_a_key_every_call_is_a_new_run(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    await runtime.run(idem_charge, {"amount": 5.0})
    await runtime.run(idem_charge, {"amount": 5.0})
    assert calls["charge"] == 2
    assert len(await memlog.list_runs()) == 2


async def test_different_keys_are_different_runs(runtime: Runtime) -> None:
    a = await runtime.run(idem_charge, {"amount": 5.0}, idempotency_key="k-a")
    b = await runtime.run(idem_charge, {"amount": 5.0}, idempotency_key="k-b")
    assert a["run_id"] != b["run_id"]
    assert calls["charge"] == 2


async def test_same_key_reraises_the_same_final_error_without_running_again(
    runtime: Runtime,
) -> None:
    with pytest.raises(RunFailedError) as first:
        await runtime.run(idem_declined, {"amount": 10.0}, idempotency_key="pay-1")
    assert calls["declined"] == 2
    with pytest.raises(RunFailedError) as again:
        await runtime.run(idem_declined, {"amount": 10.0}, idempotency_key="pay-1")
    assert calls["declined"] == 2, "the body ran again for a key whose run already failed"
    for error in (first.value, again.value):
        assert error.error_type == "PermissionError"
        assert error.error_message == "card declined for 10.0"
        assert error.attempts == 2
    assert first.value.run_id == again.value.run_id


async def test_concurrent_callers_with_one_key_share_one_execution(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    callers = [
        asyncio.ensure_future(runtime.run(idem_gated, {"item": "x"}, idempotency_key="batch-7"))
        for _ in range(10)
    ]
    await asyncio.sleep(0.02)
    assert calls["gated"] == 1
    assert not any(c.done() for c in callers), "a caller returned before the body finished"
    gates["gate"].set()
    results = await asyncio.gather(*callers)
    assert results == ["processed x"] * 10
    assert calls["gated"] == 1
    await only_run(memlog)  # the losers of the race recorded nothing


async def test_concurrent_callers_on_lmdb_share_one_execution(tmp_path: Path) -> None:
    """Group commit may put several runs' key claims in one transaction: one must win."""
    async with Runtime(path=tmp_path / "race", clock=MockClock()) as runtime:
        callers = [
            asyncio.ensure_future(runtime.run(idem_gated, {"item": "r"}, idempotency_key="race"))
            for _ in range(30)
        ]
        await asyncio.sleep(0.05)
        gates["gate"].set()
        assert await asyncio.gather(*callers) == ["processed r"] * 30
        assert calls["gated"] == 1
        assert len(await runtime.list_runs()) == 1


async def test_a_late_caller_waits_for_the_running_first_call(runtime: Runtime) -> None:
    first = await runtime.start(idem_gated, {"item": "y"}, idempotency_key="late")
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(runtime.run(idem_gated, {"item": "y"}, idempotency_key="late"))
    await asyncio.sleep(0.01)
    assert not late.done()
    gates["gate"].set()
    assert await late == "processed y"
    assert await first.result() == "processed y"
    assert calls["gated"] == 1


async def test_same_key_with_a_different_input_is_a_conflict(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    first = await runtime.start(idem_charge, {"amount": 99.99}, idempotency_key="order-789")
    await first.result()
    with pytest.raises(IdempotencyConflictError) as info:
        await runtime.run(idem_charge, {"amount": 1.0}, idempotency_key="order-789")
    error = info.value
    assert error.key == "order-789"
    assert error.run_id == first.run_id
    assert "'order-789'" in str(error)
    assert isinstance(error, ValueError)
    assert calls["charge"] == 1
    await only_run(memlog)


async def test_conflict_is_detected_while_the_first_run_is_still_running(
    runtime: Runtime,
) -> None:
    await runtime.start(idem_gated, {"item": "a"}, idempotency_key="busy")
    with pytest.raises(IdempotencyConflictError):
        await runtime.run(idem_gated, {"item": "b"}, idempotency_key="busy")
    gates["gate"].set()


async def test_one_key_names_one_function(runtime: Runtime) -> None:
    await runtime.run(idem_charge, {"amount": 3.0}, idempotency_key="shared-key")
    with pytest.raises(IdempotencyConflictError):
        # Same key, same-looking input, another function: not the same operation.
        await runtime.run(idem_declined, {"amount": 3.0}, idempotency_key="shared-key")
    assert calls["declined"] == 0


@pytest.mark.parametrize("bad", ["", "x" * 1000, "a\x00b", 12])
async def test_malformed_keys_are_refused_before_anything_is_recorded(
    runtime: Runtime, memlog: MemoryEventLog, bad: object
) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        await runtime.run(idem_charge, {"amount": 1.0}, idempotency_key=bad)  # type: ignore[arg-type]
    assert await memlog.list_runs() == []


async def test_key_survives_a_runtime_restart_on_lmdb(tmp_path: Path) -> None:
    store = tmp_path / "idem-store"
    async with Runtime(path=store, clock=MockClock()) as first:
        result = await first.run(idem_charge, {"amount": 42.0}, idempotency_key="restart-1")
        with pytest.raises(RunFailedError):
            await first.run(idem_declined, {"amount": 1.0}, idempotency_key="restart-2")
    assert (calls["charge"], calls["declined"]) == (1, 2)

    async with Runtime(path=store, clock=MockClock()) as second:
        assert (
            await second.run(idem_charge, {"amount": 42.0}, idempotency_key="restart-1") == result
        )
        with pytest.raises(RunFailedError) as info:
            await second.run(idem_declined, {"amount": 1.0}, idempotency_key="restart-2")
        assert info.value.error_type == "PermissionError"
        with pytest.raises(IdempotencyConflictError):
            await second.run(idem_charge, {"amount": 43.0}, idempotency_key="restart-1")
        assert len(await second.list_runs()) == 2
    assert (calls["charge"], calls["declined"]) == (1, 2)


async def test_a_key_in_flight_at_shutdown_is_finished_by_the_next_runtime(tmp_path: Path) -> None:
    store = tmp_path / "idem-inflight"
    async with Runtime(path=store, clock=MockClock()) as first:
        handle = await first.start(idem_gated, {"item": "z"}, idempotency_key="inflight")
        await asyncio.sleep(0.02)
        assert calls["gated"] == 1
    # The body was stopped by the shutdown and did not finish; the next runtime resumes it.
    gates["gate"].set()
    log = LmdbEventLog(store)
    try:
        async with Runtime(log=log, clock=MockClock()) as second:
            assert await second.run(idem_gated, {"item": "z"}, idempotency_key="inflight") == (
                "processed z"
            )
            assert [r.run_id for r in await second.list_runs()] == [handle.run_id]
    finally:
        await log.close()
    assert calls["gated"] == 2  # once per process; it completed once
