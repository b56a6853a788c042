"""Retry delays, read from the log on virtual time: exponential, linear, constant, capped, jittered.

Each failed attempt records `TaskAttemptFailed.next_retry_at`; the delay is
``next_retry_at - ts``. The next attempt must start exactly when that timer is
due (the MockClock jumps there), not earlier.
"""

from __future__ import annotations

from typing import Any

import pytest

import perdure
from perdure import BackoffPolicy, BackoffType, RetryPolicy, RunFailedError, Runtime, function
from perdure.eventlog import TaskAttemptFailed, TaskAttemptStarted, TaskFailed, TimerFired, TimerSet
from perdure.testing import MemoryEventLog, MockClock
from tests.support import Calls, attempt_numbers, of_type, only_run, retry_delays


def failing_until(calls: Calls, successes_from: int) -> Any:
    """A body that raises on its first `successes_from` executions, then returns its attempt."""

    async def body(ctx: perdure.FunctionContext) -> int:
        if calls.hit() < successes_from:
            raise ConnectionError(f"attempt {ctx.attempt} refused")
        return ctx.attempt

    return body


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [1.0, 2.0, 4.0, 8.0]),
        ("linear", [1.0, 2.0, 3.0, 4.0]),
        ("constant", [1.0, 1.0, 1.0, 1.0]),
    ],
)
async def test_exact_delays_per_backoff_shape(
    runtime: Runtime, memlog: MemoryEventLog, clock: MockClock, backoff: str, expected: list[float]
) -> None:
    calls = Calls()
    fn = function(name=f"retry_shape_{backoff}", retries=5, backoff=backoff)(
        failing_until(calls, 4)
    )
    start = clock.now()

    assert await runtime.run(fn) == 4
    run_id = (await only_run(memlog)).run_id
    assert await retry_delays(memlog, run_id) == expected
    assert await attempt_numbers(memlog, run_id) == ([0, 1, 2, 3, 4], [0, 1, 2, 3])
    # Virtual time advanced by exactly the sum of the backoffs.
    assert clock.now() - start == pytest.approx(sum(expected))


async def test_constant_backoff_three_retries(runtime: Runtime, memlog: MemoryEventLog) -> None:
    calls = Calls()
    fn = function(name="retry_constant_3", retries=4, backoff="constant")(failing_until(calls, 3))
    assert await runtime.run(fn) == 3
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [1.0, 1.0, 1.0]


async def test_next_attempt_starts_when_its_timer_is_due(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()
    fn = function(name="retry_timer_due", retries=4)(failing_until(calls, 3))
    await runtime.run(fn)
    events = await memlog.read((await only_run(memlog)).run_id)
    failures = of_type(events, TaskAttemptFailed)
    starts = of_type(events, TaskAttemptStarted)[1:]
    timers = of_type(events, TimerSet)
    fired = of_type(events, TimerFired)
    assert len(failures) == len(starts) == len(timers) == len(fired) == 3
    for failure, timer, start in zip(failures, timers, starts, strict=True):
        assert timer.purpose == "retry"
        assert timer.due_at == failure.next_retry_at
        assert start.ts == failure.next_retry_at  # not a moment early (MockClock lands on it)
    assert [f.timer_id for f in fired] == [t.timer_id for t in timers]


async def test_backoff_policy_multiplier_and_initial_interval(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()
    fn = function(
        name="retry_multiplier",
        retries=RetryPolicy(max_attempts=4, initial_interval_ms=500),
        backoff=BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=3.0),
    )(failing_until(calls, 3))
    await runtime.run(fn)
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [0.5, 1.5, 4.5]


async def test_delays_are_capped_at_max_interval(runtime: Runtime, memlog: MemoryEventLog) -> None:
    calls = Calls()
    fn = function(
        name="retry_capped",
        retries=RetryPolicy(max_attempts=7, initial_interval_ms=1000, max_interval_ms=5000),
    )(failing_until(calls, 6))
    await runtime.run(fn)
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [
        1.0,
        2.0,
        4.0,
        5.0,
        5.0,
        5.0,
    ]


async def test_linear_delays_are_capped_too(runtime: Runtime, memlog: MemoryEventLog) -> None:
    calls = Calls()
    fn = function(
        name="retry_linear_capped",
        retries=RetryPolicy(max_attempts=5, initial_interval_ms=1000, max_interval_ms=2500),
        backoff="linear",
    )(failing_until(calls, 4))
    await runtime.run(fn)
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [1.0, 2.0, 2.5, 2.5]


async def test_jitter_stays_within_its_bounds(runtime: Runtime, memlog: MemoryEventLog) -> None:
    calls = Calls()
    fn = function(
        name="retry_jitter",
        retries=RetryPolicy(
            max_attempts=9, initial_interval_ms=1000, max_interval_ms=60_000, jitter=0.25
        ),
        backoff="constant",
    )(failing_until(calls, 8))
    await runtime.run(fn)
    delays = await retry_delays(memlog, (await only_run(memlog)).run_id)
    assert len(delays) == 8
    assert all(0.75 <= d <= 1.25 for d in delays), delays
    assert len(set(delays)) > 1, f"jitter=0.25 gave identical delays {delays}"


def test_jitter_bounds_on_the_policy_itself() -> None:
    policy = RetryPolicy(max_attempts=10, initial_interval_ms=1000, jitter=0.5)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]:
        samples = [policy.delay(failures) for _ in range(200)]
        assert all(base * 0.5 <= s <= base * 1.5 for s in samples)
        assert max(samples) - min(samples) > base * 0.1


async def test_retries_exhausted_fail_the_run_with_the_last_error(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()

    @function(name="retry_exhausted", retries=3)
    async def always_fails(ctx: perdure.FunctionContext) -> None:
        calls.hit()
        raise ConnectionError(f"refused on attempt {ctx.attempt}")

    with pytest.raises(RunFailedError) as info:
        await runtime.run(always_fails)
    error = info.value
    assert calls["body"] == 3
    assert (error.error_type, error.error_message, error.attempts) == (
        "ConnectionError",
        "refused on attempt 2",
        3,
    )
    assert error.target == "retry_exhausted"
    run = await only_run(memlog)
    assert error.run_id == run.run_id
    assert run.status == "failed"
    events = await memlog.read(run.run_id)
    assert await retry_delays(memlog, run.run_id) == [1.0, 2.0]
    last = of_type(events, TaskAttemptFailed)[-1]
    assert last.next_retry_at is None  # no retry scheduled after the last attempt
    (final,) = of_type(events, TaskFailed)
    assert (final.error_type, final.attempts) == ("ConnectionError", 3)
    assert "ConnectionError" in error.traceback


async def test_retries_one_means_no_retry(runtime: Runtime) -> None:
    calls = Calls()

    @function(name="retry_once_only", retries=1)
    async def once() -> None:
        calls.hit()
        raise RuntimeError("nope")

    with pytest.raises(RunFailedError) as info:
        await runtime.run(once)
    assert (calls["body"], info.value.attempts) == (1, 1)


async def test_default_policy_retries_twice_after_one_and_two_seconds(
    runtime: Runtime, memlog: MemoryEventLog
) -> None:
    calls = Calls()
    fn = function(name="retry_default")(failing_until(calls, 2))
    assert await runtime.run(fn) == 2
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [1.0, 2.0]


async def test_sync_function_delays_are_the_same(runtime: Runtime, memlog: MemoryEventLog) -> None:
    calls = Calls()

    @function(name="retry_sync_linear", retries=4, backoff="Linear")
    def flaky(ctx: perdure.FunctionContext) -> int:
        if calls.hit() < 3:
            raise TimeoutError("slow upstream")
        return ctx.attempt

    assert await runtime.run(flaky) == 3
    assert await retry_delays(memlog, (await only_run(memlog)).run_id) == [1.0, 2.0, 3.0]


async def test_long_backoffs_take_no_real_time(runtime: Runtime, clock: MockClock) -> None:
    import time

    calls = Calls()
    fn = function(
        name="retry_hour_long",
        retries=RetryPolicy(max_attempts=4, initial_interval_ms=3_600_000, max_interval_ms=10**8),
    )(failing_until(calls, 3))
    start, real = clock.now(), time.monotonic()
    assert await runtime.run(fn) == 3
    assert clock.now() - start == 7 * 3600  # 1 h + 2 h + 4 h of virtual backoff
    assert time.monotonic() - real < 5


def test_a_very_long_retry_series_stays_at_the_cap() -> None:
    policy = RetryPolicy(max_attempts=100_000, initial_interval_ms=1000, max_interval_ms=60_000)
    assert policy.delay(50) == 60.0
    assert policy.delay(2000) == 60.0
