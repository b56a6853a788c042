"""Sync calls whose answer the store already holds are read in the caller's thread.

A repeated `invoke(None, cfg)` on a thread its workflow completed, and
`Client.run` with an idempotency key whose run completed, need no crossing into
the runtime's event loop (issue 17): the answer is durable already. Anything
else (a conflict, a failed run, a waiting one, a new key) still goes to the
runtime, which decides and raises as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import perdure._bridge as bridge_module
from perdure import Client, Command, entrypoint, function, interrupt, task
from perdure.errors import IdempotencyConflictError, RunFailedError
from perdure.runtime import close_background_runtimes

BODIES: list[str] = []


@function(name="served_charge")
def served_charge(amount: int) -> dict[str, int]:
    BODIES.append("charge")
    return {"charged": amount}


@function(name="served_refuse", non_retryable=(ValueError,))
def served_refuse(amount: int) -> int:
    BODIES.append("refuse")
    raise ValueError(f"refused {amount}")


@task
def served_double(x: int) -> int:
    BODIES.append("double")
    return 2 * x


@entrypoint(name="served_flow")
def served_flow(x: int) -> int:
    return served_double(x).result() + 1


@entrypoint(name="served_asking")
def served_asking(x: int) -> str:
    answer = interrupt(f"ok {x}?")
    return f"{x}: {answer}"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    BODIES.clear()
    yield
    close_background_runtimes()


@pytest.fixture
def crossings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many calls crossed into a runtime's loop from a sync caller.

    The first read after a run settles may cross once: its last batch is durable
    (journaled) before LMDB holds it, and only LMDB is read in the caller's thread;
    the crossing reads it through the runtime, which makes LMDB catch up.
    """
    count = [0]
    real = asyncio.run_coroutine_threadsafe

    def counting(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
        count[0] += 1
        return real(coro, loop)

    monkeypatch.setattr(bridge_module.asyncio, "run_coroutine_threadsafe", counting)
    return count


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def test_invoke_none_on_a_completed_thread_is_read_from_the_store(
    tmp_path: Path, crossings: list[int]
) -> None:
    assert served_flow.invoke(20, _cfg("t1")) == 41
    crossings[0] = 0
    for _ in range(5):
        assert served_flow.invoke(None, _cfg("t1")) == 41
    assert crossings[0] <= 1
    assert BODIES == ["double"]
    # A new invocation on the thread: the next read sees its result.
    assert served_flow.invoke(5, _cfg("t1")) == 11
    assert served_flow.invoke(None, _cfg("t1")) == 11
    assert BODIES == ["double", "double"]


def test_a_used_key_whose_run_completed_is_read_from_the_store(
    tmp_path: Path, crossings: list[int]
) -> None:
    with Client(store=tmp_path / "s") as client:
        first = client.run(served_charge, {"amount": 7}, idempotency_key="order-1")
        crossings[0] = 0
        for _ in range(5):
            again = client.run("served_charge", {"amount": 7}, idempotency_key="order-1")
            assert again == first == {"charged": 7}
        assert crossings[0] <= 1
        assert BODIES == ["charge"]


def test_what_the_store_cannot_answer_still_goes_to_the_runtime(
    tmp_path: Path, crossings: list[int]
) -> None:
    with Client(store=tmp_path / "s") as client:
        client.run(served_charge, {"amount": 7}, idempotency_key="order-1")
        with pytest.raises(IdempotencyConflictError):
            client.run(served_charge, {"amount": 8}, idempotency_key="order-1")
        with pytest.raises(RunFailedError):
            client.run(served_refuse, {"amount": 1}, idempotency_key="order-2")
        with pytest.raises(RunFailedError):  # the recorded failure, body not run again
            client.run(served_refuse, {"amount": 1}, idempotency_key="order-2")
        assert BODIES == ["charge", "refuse"]  # one attempt: ValueError is not retried
        # A waiting thread: invoke(None) reports its interrupt, a resume finishes it.
        paused = served_asking.invoke(3, _cfg("t2"))
        assert "__interrupt__" in paused
        assert "__interrupt__" in served_asking.invoke(None, _cfg("t2"))
        assert served_asking.invoke(Command(resume="yes"), _cfg("t2")) == "3: yes"
        crossings[0] = 0
        for _ in range(5):
            assert served_asking.invoke(None, _cfg("t2")) == "3: yes"
        assert crossings[0] <= 1


def test_after_the_runtime_closes_the_next_call_finds_a_new_one(
    tmp_path: Path, crossings: list[int]
) -> None:
    assert served_flow.invoke(1, _cfg("t3")) == 3
    close_background_runtimes()
    crossings[0] = 0
    for _ in range(5):  # a new background runtime on the same store
        assert served_flow.invoke(None, _cfg("t3")) == 3
    assert crossings[0] <= 1
    assert BODIES == ["double"]
