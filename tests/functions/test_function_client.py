"""`Client`: run functions by name from sync code (background runtime thread) or async code.

The tests taking `make_client` run twice: with the embedded `Client(path=...)` and with
`Client(url=...)` through a live `perdure serve` of this very module (the bodies then run
in the gateway's process: the call counter and the "mended" flag live in files both
processes see).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perdure import Client, FunctionContext, RetryPolicy, Runtime, function
from perdure.errors import (
    ClientUsageError,
    IdempotencyConflictError,
    InvalidResumeError,
    RunFailedError,
    UnknownTargetError,
)
from perdure.testing import MemoryEventLog, MockClock
from tests.support.gateway import (
    SharedCalls,
    SharedFlag,
    shared_dir,
    start_gateway,
    stop_gateway,
)

SHARED = shared_dir("function_client")
calls = SharedCalls(SHARED)
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


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("function-client") / "store", app="functions.test_function_client"
    )
    yield gateway.url
    stop_gateway(gateway)


@pytest.fixture(params=["embedded", "remote"])
def make_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Client]]:
    """Clients of one store: embedded on a fresh path, or remote through the module's gateway."""
    made: list[Client] = []

    def make() -> Client:
        if request.param == "embedded":
            client = Client(path=tmp_path / "client-store")
        else:
            client = Client(url=request.getfixturevalue("gateway_url"))
        made.append(client)
        return client

    if request.param == "remote":
        request.getfixturevalue("gateway_url")  # started before the test's clock runs
    yield make
    for client in made:
        client.close()


def embedded(client: Client) -> bool:
    return getattr(client, "url", None) is None


def test_client_run_from_sync_code(make_client: Callable[[], Client]) -> None:
    client = make_client()
    result = client.run("client_greet", {"name": "ada"})
    assert result["greeting"] == "hello ada!"
    # The body ran on the runtime's background event-loop thread, not in this one (the
    # gateway's runtime runs bodies on its own loop's thread).
    assert result["thread"] == ("perdure-runtime" if embedded(client) else "MainThread")
    assert (
        client.run("client_greet", {"name": "bob", "punctuation": "?"})["greeting"] == "hello bob?"
    )


def test_client_run_passes_dict_items_as_keyword_arguments(
    make_client: Callable[[], Client],
) -> None:
    client = make_client()
    with pytest.raises(TypeError):  # InvalidArgumentsError is a TypeError
        client.run("client_greet", {"nam": "typo"})


def test_client_idempotency_key(make_client: Callable[[], Client]) -> None:
    client = make_client()
    before = calls["greet"]
    first = client.run("client_greet", {"name": "ada"}, idempotency_key="greet-ada")
    second = client.run("client_greet", {"name": "ada"}, idempotency_key="greet-ada")
    assert first == second
    assert calls["greet"] == before + 1
    with pytest.raises(IdempotencyConflictError):
        client.run("client_greet", {"name": "bob"}, idempotency_key="greet-ada")


def test_client_retries_and_returns_the_value(make_client: Callable[[], Client]) -> None:
    client = make_client()
    assert client.run("client_flaky", {"fail_times": 2}) == 2


def test_client_raises_run_failed_error_with_the_original_error(
    make_client: Callable[[], Client],
) -> None:
    client = make_client()
    with pytest.raises(RunFailedError) as info:
        client.run("client_flaky", {"fail_times": 5}, idempotency_key="always-fails")
    error = info.value
    assert (error.error_type, error.error_message, error.attempts) == (
        "ConnectionError",
        "refused on attempt 2",
        3,
    )
    assert error.target == "client_flaky"
    assert "ConnectionError: refused on attempt 2" in error.traceback  # the body's traceback
    assert "client_flaky" in error.traceback
    before = calls["flaky"]
    with pytest.raises(RunFailedError) as again:  # the same final error, from the log
        client.run("client_flaky", {"fail_times": 5}, idempotency_key="always-fails")
    assert again.value.run_id == error.run_id
    assert calls["flaky"] == before


def test_bad_input_errors_reach_the_sync_caller(make_client: Callable[[], Client]) -> None:
    client = make_client()
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


async def test_client_run_inside_a_running_loop_points_to_arun(
    make_client: Callable[[], Client],
) -> None:
    client = make_client()
    with pytest.raises(ClientUsageError) as info:
        client.run("client_greet", {"name": "x"})
    assert "await client.arun(" in str(info.value)
    assert isinstance(info.value, RuntimeError)


async def test_arun_from_async_code_uses_the_background_runtime(
    make_client: Callable[[], Client],
) -> None:
    client = make_client()
    result = await client.arun("client_greet", {"name": "async"}, idempotency_key="arun-1")
    assert result["greeting"] == "hello async!"
    assert result["thread"] == ("perdure-runtime" if embedded(client) else "MainThread")
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


MENDED = SharedFlag(SHARED / "client_mend.mended")


@function(name="client_mend", retries=1)
def client_mend(ctx: FunctionContext) -> int:
    calls.hit("mend")
    if not MENDED:
        raise ConnectionError("the service is down")
    return ctx.attempt


def test_client_continue_run_reopens_a_failed_run_refuses_a_completed_one(
    make_client: Callable[[], Client],
) -> None:
    client = make_client()
    with pytest.raises(RunFailedError, match="the service is down"):
        client.run("client_mend", run_id="mend-1")
    MENDED.set(True)
    try:
        assert client.continue_run("mend-1") == 0  # a failed step starts over with fresh attempts
        with pytest.raises(InvalidResumeError, match="completed"):
            client.continue_run("mend-1")  # nothing to continue: said, not silently ignored
    finally:
        MENDED.set(False)


async def test_client_acontinue_run_inside_a_runtime(memlog: MemoryEventLog) -> None:
    async with Runtime(log=memlog, clock=MockClock()):
        client = Client(log=memlog)
        with pytest.raises(RunFailedError):
            await client.arun("client_mend", run_id="mend-2")
        MENDED.set(True)
        try:
            assert await client.acontinue_run("mend-2") == 0
        finally:
            MENDED.set(False)
