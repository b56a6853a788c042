"""`@function` bare and with options; invalid policies fail when the decorator is applied."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perdure
from perdure import (
    BackoffPolicy,
    BackoffType,
    NonRetryableError,
    PolicyError,
    RetryPolicy,
    RunFailedError,
    Runtime,
    TaskTimeoutError,
    UnknownTargetError,
    function,
)
from perdure.testing import MemoryEventLog
from tests.support import Calls, attempt_numbers, only_run

FAST = RetryPolicy(max_attempts=3, initial_interval_ms=10, max_interval_ms=10)


@function
async def dec_bare(a: int, b: int) -> int:
    return a + b


@function()
async def dec_empty_parens(a: int, b: int) -> int:
    return a * b


@function(name="dec.renamed")
async def dec_python_name(text: str) -> str:
    return text.upper()


async def test_bare_decorator_registers_under_the_function_name(runtime: Runtime) -> None:
    assert isinstance(dec_bare, perdure.DurableFunction)
    assert dec_bare.name == "dec_bare"
    assert await runtime.run("dec_bare", {"a": 2, "b": 3}) == 5
    assert await runtime.run(dec_bare, {"a": 1, "b": 1}) == 2


async def test_empty_parentheses_work_like_the_bare_form(runtime: Runtime) -> None:
    assert await runtime.run("dec_empty_parens", {"a": 4, "b": 5}) == 20


async def test_name_option_is_what_callers_use(runtime: Runtime, memlog: MemoryEventLog) -> None:
    assert dec_python_name.name == "dec.renamed"
    assert await runtime.run("dec.renamed", {"text": "hi"}) == "HI"
    assert (await only_run(memlog)).target == "dec.renamed"
    with pytest.raises(UnknownTargetError):
        await runtime.run("dec_python_name", {"text": "hi"})


def test_outside_a_runtime_the_decorated_object_calls_the_plain_function() -> None:
    assert asyncio.run(dec_bare(2, 2)) == 4
    assert dec_bare.__name__ == "dec_bare"
    assert dec_bare.__wrapped__.__name__ == "dec_bare"


def test_default_policy_is_three_attempts_exponential_from_one_second() -> None:
    policy = dec_bare.retry_policy
    assert policy.max_attempts == 3
    assert policy.initial_interval_ms == 1000
    assert policy.backoff == BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=2.0)


def test_retries_int_is_max_attempts_including_the_first() -> None:
    @function(name="dec_retries_int", retries=7)
    async def f() -> None:
        return None

    assert f.retry_policy.max_attempts == 7
    assert f.retry_policy.initial_interval_ms == 1000


def test_retries_accepts_a_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=5, initial_interval_ms=250, max_interval_ms=4000)

    @function(name="dec_retries_policy", retries=policy)
    async def f() -> None:
        return None

    assert f.retry_policy == policy


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("exponential", BackoffType.EXPONENTIAL),
        ("Exponential", BackoffType.EXPONENTIAL),
        ("LINEAR", BackoffType.LINEAR),
        (" constant ", BackoffType.CONSTANT),
        ("Constant", BackoffType.CONSTANT),
        (BackoffType.LINEAR, BackoffType.LINEAR),
    ],
)
def test_backoff_names_are_case_insensitive(spelling: Any, kind: BackoffType) -> None:
    @function(name="dec_backoff_spelling", retries=4, backoff=spelling)
    async def f() -> None:
        return None

    assert f.retry_policy.backoff.type is kind
    assert f.retry_policy.max_attempts == 4


def test_backoff_policy_object_keeps_its_multiplier() -> None:
    @function(
        name="dec_backoff_object",
        retries=RetryPolicy(max_attempts=5, initial_interval_ms=1000),
        backoff=BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=3.0),
    )
    async def f() -> None:
        return None

    assert f.retry_policy.backoff.multiplier == 3.0
    assert f.retry_policy.max_attempts == 5


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"retries": 0}, ["retries=0", ">= 1"]),
        ({"retries": -2}, ["retries=-2"]),
        ({"retries": "x"}, ["retries", "'x'"]),
        ({"retries": True}, ["retries"]),
        ({"retries": 2.5}, ["retries"]),
        ({"backoff": "sideways"}, ["'sideways'", "exponential", "linear", "constant"]),
        ({"backoff": 3}, ["backoff"]),
        ({"timeout": 0}, ["timeout", "> 0"]),
        ({"timeout": -1.0}, ["timeout"]),
        ({"timeout": "soon"}, ["timeout"]),
    ],
)
def test_invalid_options_fail_at_decoration_time(options: dict[str, Any], words: list[str]) -> None:
    name = "dec_invalid_options"
    with pytest.raises(PolicyError) as info:

        @function(name=name, **options)
        async def f() -> None:
            return None

    message = str(info.value)
    for word in words:
        assert word in message, message
    assert isinstance(info.value, ValueError)
    assert perdure.runtime.default_registry.get(name) is None, "a rejected function was registered"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: RetryPolicy(max_attempts=0), ["max_attempts", ">= 1", "0"]),
        (lambda: RetryPolicy(max_attempts="3"), ["max_attempts"]),
        (
            lambda: RetryPolicy(initial_interval_ms=5000, max_interval_ms=1000),
            ["max_interval_ms", "initial_interval_ms", "1000", "5000"],
        ),
        (lambda: RetryPolicy(initial_interval_ms=-1), ["initial_interval_ms", ">= 0"]),
        (lambda: RetryPolicy(jitter=1.5), ["jitter", "1.5"]),
        (lambda: RetryPolicy(non_retryable=("ValueError",)), ["non_retryable"]),
        (lambda: BackoffPolicy(multiplier=-2.0), ["multiplier", "> 0", "-2.0"]),
        (lambda: BackoffPolicy(multiplier=0), ["multiplier"]),
    ],
)
def test_invalid_policy_objects_fail_when_built(make: Any, words: list[str]) -> None:
    with pytest.raises(PolicyError) as info:
        make()
    for word in words:
        assert word in str(info.value), str(info.value)


async def test_timeout_fails_the_attempt_with_task_timeout_error_then_retries(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()

    @function(name="dec_timeout", retries=FAST, timeout=0.02)
    async def hangs_first_two(ctx: perdure.FunctionContext) -> str:
        calls.hit()
        if ctx.attempt < 2:
            await asyncio.Event().wait()  # never set: only the timeout ends it
        return f"done on attempt {ctx.attempt}"

    assert await runtime.run("dec_timeout") == "done on attempt 2"
    assert calls["body"] == 3
    events = await memlog.read((await only_run(memlog)).run_id)
    failures = [e for e in events if type(e).__name__ == "TaskAttemptFailed"]
    assert [e.error_type for e in failures] == ["TaskTimeoutError", "TaskTimeoutError"]
    assert "0.02" in failures[0].message
    assert all(e.retryable for e in failures)


async def test_timeout_on_every_attempt_fails_the_run(runtime: Runtime) -> None:
    @function(name="dec_timeout_always", retries=FAST, timeout=0.01)
    async def always_hangs() -> None:
        await asyncio.Event().wait()

    with pytest.raises(RunFailedError) as info:
        await runtime.run("dec_timeout_always")
    assert info.value.error_type == "TaskTimeoutError"
    assert info.value.attempts == 3
    assert issubclass(TaskTimeoutError, TimeoutError)


async def test_timeout_applies_to_sync_functions_too(runtime: Runtime) -> None:
    import time

    @function(name="dec_timeout_sync", retries=FAST, timeout=0.02)
    def slow_first(ctx: perdure.FunctionContext) -> int:
        if ctx.attempt == 0:
            time.sleep(0.1)
        return ctx.attempt

    # The first attempt's thread cannot be stopped, but its late result is ignored.
    assert await runtime.run("dec_timeout_sync") == 1


async def test_non_retryable_exception_types_fail_at_once(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()

    class BadRequest(ValueError):
        pass

    @function(name="dec_non_retryable", retries=5, non_retryable=(ValueError,))
    async def rejects(reason: str) -> None:
        calls.hit()
        raise BadRequest(reason)

    with pytest.raises(RunFailedError) as info:
        await runtime.run("dec_non_retryable", {"reason": "no such user"})
    assert calls["body"] == 1
    assert info.value.attempts == 1
    assert info.value.error_type == "BadRequest"
    assert info.value.error_message == "no such user"
    run = await only_run(memlog)
    assert run.status == "failed"
    started, failed = await attempt_numbers(memlog, run.run_id)
    assert (started, failed) == ([0], [0])
    failure = [e for e in await memlog.read(run.run_id) if type(e).__name__ == "TaskAttemptFailed"]
    assert failure[0].retryable is False
    assert failure[0].next_retry_at is None


async def test_other_exceptions_are_still_retried_with_non_retryable_set(runtime: Runtime) -> None:
    calls = Calls()

    @function(name="dec_non_retryable_other", retries=FAST, non_retryable=(ValueError,))
    async def flaky() -> str:
        if calls.hit() == 0:
            raise ConnectionError("reset")
        return "ok"

    assert await runtime.run("dec_non_retryable_other") == "ok"
    assert calls["body"] == 2


async def test_raising_non_retryable_error_fails_at_once(runtime: Runtime) -> None:
    calls = Calls()

    class CardDeclined(NonRetryableError):
        pass

    @function(name="dec_raise_non_retryable", retries=5)
    async def charge() -> None:
        calls.hit()
        raise CardDeclined("card declined")

    with pytest.raises(RunFailedError) as info:
        await runtime.run("dec_raise_non_retryable")
    assert calls["body"] == 1
    assert (info.value.error_type, info.value.error_message) == ("CardDeclined", "card declined")


async def test_sync_and_async_functions_both_run(runtime: Runtime) -> None:
    import threading

    seen: dict[str, bool] = {}

    @function(name="dec_sync_fn")
    def sync_fn(x: int) -> int:
        seen["sync_on_main"] = threading.current_thread() is threading.main_thread()
        return x + 1

    @function(name="dec_async_fn")
    async def async_fn(x: int) -> int:
        asyncio.get_running_loop()  # raises if not on the loop
        seen["async_on_main"] = threading.current_thread() is threading.main_thread()
        return x + 2

    assert await runtime.run("dec_sync_fn", {"x": 1}) == 2
    assert await runtime.run("dec_async_fn", {"x": 1}) == 3
    assert seen == {"sync_on_main": False, "async_on_main": True}


async def test_sync_functions_are_retried_like_async_ones(runtime: Runtime) -> None:
    calls = Calls()

    @function(name="dec_sync_flaky", retries=FAST)
    def flaky() -> str:
        if calls.hit() < 2:
            raise OSError("disk busy")
        return "written"

    assert await runtime.run("dec_sync_flaky") == "written"
    assert calls["body"] == 3
