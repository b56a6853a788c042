"""`Client`: run functions by name from sync code (background runtime thread) or async code."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from perdure import (
    Client,
    ClientUsageError,
    FunctionContext,
    IdempotencyConflictError,
    InvalidResumeError,
    RetryPolicy,
    RunFailedError,
    Runtime,
    UnknownTargetError,
    function,
)
from perdure.testing import MemoryEventLog, MockClock
from tests.support import Calls

calls = Calls()
TINY = RetryPolicy(max_attempts=3, initial_interval_ms=1, max_interval_ms=1)  # real clock here


@function(name="client_greet")
async def client_greet(ctx: FunctionContext, name: str, punctuation: str = "!") -> dict[str, str]:
    calls.hit("greet")
    return {
        "greeting": f"hello {name}{punctuation}",
        "thread": threading.current_thread().name,
        "run_id": ctx.run_id,
    }


@function(name="client_flaky", retries=TINY)
def client_flaky(ctx: FunctionContext, fail_times: int) -> int:
    calls.hit("flaky")
    if ctx.attempt < fail_times:
        raise ConnectionError(f"refused on attempt {ctx.attempt}")
    return ctx.attempt


def test_client_run_from_sync_code(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    result = client.run("client_greet", {"name": "ada"})
    assert result["greeting"] == "hello ada!"
    # The body ran on the runtime's background event-loop thread, not in this one.
    assert result["thread"] == "perdure-runtime"
    assert (
        client.run("client_greet", {"name": "bob", "punctuation": "?"})["greeting"] == "hello bob?"
    )


def test_client_run_passes_dict_items_as_keyword_arguments(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    with pytest.raises(TypeError):  # InvalidArgumentsError is a TypeError
        client.run("client_greet", {"nam": "typo"})


def test_client_idempotency_key(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    before = calls["greet"]
    first = client.run("client_greet", {"name": "ada"}, idempotency_key="greet-ada")
    second = client.run("client_greet", {"name": "ada"}, idempotency_key="greet-ada")
    assert first == second
    assert calls["greet"] == before + 1
    with pytest.raises(IdempotencyConflictError):
        client.run("client_greet", {"name": "bob"}, idempotency_key="greet-ada")


def test_client_retries_and_returns_the_value(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    assert client.run("client_flaky", {"fail_times": 2}) == 2


def test_client_raises_run_failed_error_with_the_original_error(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    with pytest.raises(RunFailedError) as info:
        client.run("client_flaky", {"fail_times": 5}, idempotency_key="always-fails")
    error = info.value
    assert (error.error_type, error.error_message, error.attempts) == (
        "ConnectionError",
        "refused on attempt 2",
        3,
    )
    assert error.target == "client_flaky"
    before = calls["flaky"]
    with pytest.raises(RunFailedError) as again:  # the same final error, from the log
        client.run("client_flaky", {"fail_times": 5}, idempotency_key="always-fails")
    assert again.value.run_id == error.run_id
    assert calls["flaky"] == before


def test_bad_input_errors_reach_the_sync_caller(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    with pytest.raises(UnknownTargetError) as info:
        client.run("client_gret", {"name": "x"})
    assert "client_greet" in info.value.suggestions


def test_client_uses_perdure_path_by_default(_isolated_store: Path) -> None:
    result = Client().run("client_greet", {"name": "env"})
    assert result["greeting"] == "hello env!"
    assert _isolated_store.exists(), "Client() did not use PERDURE_PATH"
    assert str(_isolated_store) in repr(Client())


def test_clients_of_one_store_share_one_background_runtime(tmp_path: Path) -> None:
    store = tmp_path / "shared"
    a = Client(path=store).run("client_greet", {"name": "a"}, idempotency_key="shared")
    b = Client(path=str(store)).run("client_greet", {"name": "a"}, idempotency_key="shared")
    assert a == b


async def test_client_run_inside_a_running_loop_points_to_arun(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    with pytest.raises(ClientUsageError) as info:
        client.run("client_greet", {"name": "x"})
    assert "await client.arun(" in str(info.value)
    assert isinstance(info.value, RuntimeError)


async def test_arun_from_async_code_uses_the_background_runtime(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    result = await client.arun("client_greet", {"name": "async"}, idempotency_key="arun-1")
    assert result["greeting"] == "hello async!"
    assert result["thread"] == "perdure-runtime"
    assert await client.arun("client_greet", {"name": "async"}, idempotency_key="arun-1") == result
    with pytest.raises(RunFailedError) as info:
        await client.arun("client_flaky", {"fail_times": 9})
    assert info.value.attempts == 3


async def test_arun_inside_a_runtime_uses_that_runtime(memlog: MemoryEventLog) -> None:
    async with Runtime(log=memlog, clock=MockClock()) as runtime:
        result = await Client(log=memlog).arun("client_greet", {"name": "local"})
        assert result["thread"] == threading.current_thread().name  # this loop, no other thread
        assert [r.run_id for r in await runtime.list_runs()] == [result["run_id"]]


async def test_arun_inside_a_runtime_on_the_same_path_uses_it(tmp_path: Path) -> None:
    store = tmp_path / "local-store"
    async with Runtime(path=store, clock=MockClock()) as runtime:
        result = await Client(path=store).arun("client_greet", {"name": "here"})
        assert result["thread"] == threading.current_thread().name
        assert await runtime.get_run(result["run_id"]) is not None


BROKEN = {"client_mend": True}


@function(name="client_mend", retries=1)
def client_mend(ctx: FunctionContext) -> int:
    calls.hit("mend")
    if BROKEN["client_mend"]:
        raise ConnectionError("the service is down")
    return ctx.attempt


def test_client_continue_run_reopens_a_failed_run_refuses_a_completed_one(tmp_path: Path) -> None:
    client = Client(path=tmp_path / "client-store")
    with pytest.raises(RunFailedError, match="the service is down"):
        client.run("client_mend", run_id="mend-1")
    BROKEN["client_mend"] = False
    try:
        assert client.continue_run("mend-1") == 0  # a failed step starts over with fresh attempts
        with pytest.raises(InvalidResumeError, match="completed"):
            client.continue_run("mend-1")  # nothing to continue: said, not silently ignored
    finally:
        BROKEN["client_mend"] = True


async def test_client_acontinue_run_inside_a_runtime(memlog: MemoryEventLog) -> None:
    async with Runtime(log=memlog, clock=MockClock()):
        client = Client(log=memlog)
        with pytest.raises(RunFailedError):
            await client.arun("client_mend", run_id="mend-2")
        BROKEN["client_mend"] = False
        try:
            assert await client.acontinue_run("mend-2") == 0
        finally:
            BROKEN["client_mend"] = True
