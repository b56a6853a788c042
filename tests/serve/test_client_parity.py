"""The same behaviour from `Client(path=...)` (embedded) and `Client(url=...)` (through a gateway).

Each test runs twice: once on an embedded store in this process, once through a
live `perdure serve` of tests/serve/serve_app.py (the same targets, imported here
too). Results, interrupts and every error type must be the same.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure import Client, Interrupt, PerdureError, Runtime, entrypoint
from perdure.errors import (
    ClientUsageError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvalidResumeError,
    RunFailedError,
    RunNotFoundError,
    RuntimeClosedError,
    RunTimeoutError,
    SerializationError,
    UnknownTargetError,
)
from perdure.testing import MemoryEventLog

from . import serve_app
from .conftest import TOKEN, Gateway, free_port


@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if request.param == "embedded":
        made = Client(path=tmp_path / "store")
    else:
        gateway: Gateway = request.getfixturevalue("gateway")
        made = Client(url=gateway.url)
    with made:
        yield made


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_run_returns_the_result(client: Client) -> None:
    assert client.run("gw_add", {"a": 20, "b": 22}) == 42
    assert client.run(serve_app.gw_add, {"a": 1, "b": 2}) == 3  # a decorated object


def test_retries_are_invisible_to_the_caller(client: Client) -> None:
    assert client.run("gw_flaky", {"fail_times": 2}) == 2  # attempts count from 0


def test_a_failed_run_raises_run_failed_error_with_the_traceback(client: Client) -> None:
    with pytest.raises(RunFailedError) as caught:
        client.run("gw_broken")
    error = caught.value
    assert error.error_type == "KeyError"
    assert error.attempts == 3
    assert "the answer is not here" in error.error_message
    assert "KeyError" in error.traceback
    assert error.target == "gw_broken"


def test_idempotency_key_returns_the_first_result_and_refuses_another_input(
    client: Client,
) -> None:
    key = fresh("pay")
    assert client.run("gw_add", {"a": 1, "b": 1}, idempotency_key=key) == 2
    assert client.run("gw_add", {"a": 1, "b": 1}, idempotency_key=key) == 2
    with pytest.raises(IdempotencyConflictError) as caught:
        client.run("gw_add", {"a": 9, "b": 1}, idempotency_key=key)
    assert caught.value.key == key


def test_bad_calls_raise_the_same_errors(client: Client) -> None:
    with pytest.raises(UnknownTargetError) as unknown:
        client.run("gw_ad", {"a": 1, "b": 1})
    assert "gw_add" in unknown.value.suggestions
    with pytest.raises(InvalidArgumentsError):
        client.run("gw_add", {"a": 1})
    with pytest.raises(TypeError):  # InvalidArgumentsError is a TypeError on both sides
        client.run("gw_add", {"a": 1, "b": 2, "c": 3})
    with pytest.raises(SerializationError):
        client.run("gw_echo", {"text": object()})
    with pytest.raises(RunNotFoundError) as missing:
        client.resume("no-such-run", "yes")
    assert missing.value.run_id == "no-such-run"


def test_an_interrupt_comes_back_and_resume_finishes_the_run(client: Client) -> None:
    run_id = fresh("review")
    paused = client.run("gw_review", "moths", run_id=run_id)
    (asked,) = paused["__interrupt__"]
    assert isinstance(asked, Interrupt)
    assert asked.value == {"question": "publish?", "draft": "a draft about moths"}
    assert client.resume(run_id, "approve") == {
        "draft": "a draft about moths",
        "verdict": "approve",
    }


def test_a_run_that_does_not_settle_in_time_raises_timeout_and_can_be_cancelled(
    client: Client,
) -> None:
    run_id = fresh("sleepy")
    with pytest.raises(RunTimeoutError) as caught:
        client.run("gw_sleepy", 3600, run_id=run_id, timeout=0.2)
    assert caught.value.run_id == run_id
    client.cancel(run_id)
    if getattr(client, "url", None) is not None:
        assert client.status(run_id) == "cancelled"  # type: ignore[attr-defined]
    client.cancel(run_id)  # a settled run is left as it is
    with pytest.raises(RunNotFoundError):
        client.cancel("no-such-run")


def test_continue_run_reruns_a_failed_run_and_refuses_a_completed_one(client: Client) -> None:
    failed = fresh("broken")
    with pytest.raises(RunFailedError):
        client.run("gw_broken", run_id=failed)
    with pytest.raises(RunFailedError) as again:  # a fresh set of attempts, failing the same way
        client.continue_run(failed)
    assert (again.value.run_id, again.value.error_type, again.value.attempts) == (
        failed,
        "KeyError",
        3,
    )
    done = fresh("add")
    assert client.run("gw_add", {"a": 1, "b": 2}, run_id=done) == 3
    with pytest.raises(InvalidResumeError, match="completed"):
        client.continue_run(done)
    with pytest.raises(RunNotFoundError):
        client.continue_run("no-such-run")


def test_messages_and_published_values(client: Client) -> None:
    run_id = fresh("inbox")
    with pytest.raises(RunTimeoutError):
        client.run("gw_inbox", "hello", run_id=run_id, timeout=0.5)  # it waits for a message
    assert client.get_event(run_id, "step", timeout=5) == "waiting for a name"
    client.send(run_id, "Ada")
    assert client.get_event(run_id, "nothing-here") is None
    with pytest.raises(RunNotFoundError):
        client.send("no-such-run", "Ada")


def test_async_calls(client: Client) -> None:
    async def go() -> tuple[Any, Any]:
        run_id = fresh("areview")
        first = await client.arun("gw_add", {"a": 2, "b": 2})
        await client.arun("gw_review", "newts", run_id=run_id)
        return first, await client.aresume(run_id, "no")

    first, resumed = asyncio.run(go())
    assert first == 4
    assert resumed["verdict"] == "no"


def test_a_blocking_call_inside_an_event_loop_is_refused(client: Client) -> None:
    async def go() -> None:
        client.run("gw_add", {"a": 1, "b": 1})

    with pytest.raises(ClientUsageError, match="arun"):
        asyncio.run(go())


def test_a_closed_client_refuses_calls(client: Client) -> None:
    client.close()
    client.close()  # twice is fine
    with pytest.raises(ClientUsageError):
        client.run("gw_add", {"a": 1, "b": 1})


# -- only the remote client ---------------------------------------------------------------------


def test_remote_client_is_a_client_and_start_result_work(gateway: Gateway) -> None:
    with Client(url=gateway.url) as remote:
        assert isinstance(remote, Client)
        assert repr(remote) == f"Client(url={gateway.url!r})"
        run_id = remote.start("gw_add", {"a": 3, "b": 4})  # type: ignore[attr-defined]
        assert remote.result(run_id, timeout=10) == 7  # type: ignore[attr-defined]
        assert remote.status(run_id) == "completed"  # type: ignore[attr-defined]


def test_remote_client_argument_errors() -> None:
    with pytest.raises(ValueError, match="http"):
        Client(url="ftp://example")
    with pytest.raises(ClientUsageError):
        Client("some/path", url="http://127.0.0.1:1")
    with pytest.raises(ClientUsageError):
        Client(token="t" * 20)


def test_remote_client_needs_the_token_and_reports_an_unreachable_gateway(
    locked_gateway: Gateway,
) -> None:
    with Client(url=locked_gateway.url, token=TOKEN) as allowed:
        assert allowed.run("gw_add", {"a": 5, "b": 5}) == 10
    refused = Client(url=locked_gateway.url, token="wrong-token-0123456789")
    with refused, pytest.raises(PerdureError, match="token"):
        refused.run("gw_add", {"a": 5, "b": 5})
    nobody = Client(url=f"http://127.0.0.1:{free_port()}")
    with nobody, pytest.raises(RuntimeClosedError, match="cannot reach the gateway"):
        nobody.run("gw_add", {"a": 1, "b": 1})


def test_cli_resume_and_cancel_act_through_the_gateway(gateway: Gateway) -> None:
    run_id = fresh("cli")
    with Client(url=gateway.url) as remote:
        remote.run("gw_review", "eels", run_id=run_id)
        sleepy = fresh("cli-sleepy")
        remote.start("gw_sleepy", 3600, run_id=sleepy)  # type: ignore[attr-defined]

    def perdure(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "perdure", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = perdure("resume", run_id, "--value", '"approve"', "--url", gateway.url, "--json")
    assert done.returncode == 0, done.stderr
    assert '"verdict": "approve"' in done.stdout
    done = perdure("cancel", sleepy, "--url", gateway.url)
    assert done.returncode == 0, done.stderr
    assert "cancelled" in done.stdout
    done = perdure("cancel", "no-such-run", "--url", gateway.url)
    assert done.returncode == 1 and "RunNotFoundError" in done.stderr


def test_cli_send_and_continue_act_through_the_gateway(gateway: Gateway) -> None:
    inbox, broken = fresh("cli-inbox"), fresh("cli-broken")
    with Client(url=gateway.url) as remote:
        remote.start("gw_inbox", "hello", run_id=inbox)  # type: ignore[attr-defined]
        with pytest.raises(RunFailedError):
            remote.run("gw_broken", run_id=broken)

        def perdure(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "perdure", *args, "--url", gateway.url]
            return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)

        done = perdure("send", inbox, '"ada"', "--idempotency-key", "k1", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["message"] == "message recorded on topic 'default'"
        assert remote.result(inbox, timeout=30) == "hello, ada"
        done = perdure("send", inbox, '"again"')  # the run has settled: refused, exit 1
        assert done.returncode == 1 and "RunSettledError" in done.stderr

        def events() -> int:
            with gateway.http() as http:
                return len(http.get(f"/api/runs/{broken}/events").json()["events"])

        recorded = events()
        done = perdure("continue", broken)  # runs again in the gateway, and fails again
        assert done.returncode == 1 and "RunFailedError" in done.stderr, done.stderr
        assert events() > recorded
        done = perdure("continue", inbox)  # completed: nothing to continue
        assert done.returncode == 1 and "InvalidResumeError" in done.stderr


_inner: dict[str, Client] = {}


@entrypoint(name="parity_outer")
async def parity_outer(topic: str) -> Any:
    return await _inner["client"].arun("gw_review", topic, run_id=f"inner-{topic}")


def test_a_workflow_body_cannot_run_another_workflow_through_the_client(client: Client) -> None:
    _inner["client"] = client

    async def go() -> None:
        async with Runtime(log=MemoryEventLog()) as runtime:
            with pytest.raises(RunFailedError) as caught:
                await runtime.run("parity_outer", fresh("t"))
            assert caught.value.error_type == "NestedWorkflowError"
            assert "Client().arun('gw_review'" in caught.value.error_message

    asyncio.run(go())
