"""Property: the state a live actor holds equals the state folded from its log.

Random function workloads (failures, non-retryable errors, sync/async bodies,
backoff shapes, shared idempotency keys) run on virtual time. At every quiet
point (each run settled or waiting on a retry timer) and at the end, each live
actor's state must equal `fold(log.read(run_id))`: nothing the actor knows is
missing from the log, and nothing in the log is unknown to the actor.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perdure import FunctionContext, RetryPolicy, Runtime, function
from perdure.actors import fold
from perdure.errors import RunFailedError
from perdure.runtime import Registry
from perdure.testing import MemoryEventLog, MockClock


@attrs.frozen
class Case:
    fail_times: int
    error: str  # "retryable" | "fatal"
    sync: bool
    max_attempts: int
    backoff: str
    key: str | None


cases = st.builds(
    Case,
    fail_times=st.integers(0, 4),
    error=st.sampled_from(["retryable", "fatal"]),
    sync=st.booleans(),
    max_attempts=st.integers(1, 5),
    backoff=st.sampled_from(["exponential", "linear", "constant"]),
    key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])),
)


def make_function(registry: Registry, index: int, case: Case) -> Any:
    def body(ctx: FunctionContext, case_id: int) -> int:
        if ctx.attempt < case.fail_times:
            if case.error == "fatal":
                raise ValueError(f"case {case_id} rejected")
            raise ConnectionError(f"case {case_id} attempt {ctx.attempt}")
        return ctx.attempt

    async def async_body(ctx: FunctionContext, case_id: int) -> int:
        await asyncio.sleep(0)
        return body(ctx, case_id)

    return function(
        name=f"prop_case_{index}",
        retries=RetryPolicy(max_attempts=case.max_attempts, initial_interval_ms=1000),
        backoff=case.backoff,
        non_retryable=(ValueError,),
        registry=registry,
    )(body if case.sync else async_body)


async def quiet(runtime: Runtime, log: MemoryEventLog, run_ids: list[str], now: float) -> bool:
    """True once every run is settled or backing off (timer not yet due) with nothing in flight."""
    for run_id in run_ids:
        state = fold(run_id, await log.read(run_id))
        if state.terminal is None and (
            not state.timers
            or state.open_attempts
            or any(due <= now for due, _, _ in state.timers.values())
        ):
            return False
        live = await runtime.state(run_id)
        if live.next_seq != state.next_seq:
            return False  # events still waiting for their commit
    return True


async def check_live_equals_fold(runtime: Runtime, log: MemoryEventLog, run_ids: list[str]) -> None:
    assert runtime.statistics().live_actors == len(run_ids)  # really comparing live actors
    for run_id in run_ids:
        live = await runtime.state(run_id)
        rebuilt = fold(run_id, await log.read(run_id))
        assert live == rebuilt, f"run {run_id}: live state differs from the folded log"


async def scenario(workload: list[Case]) -> None:
    registry = Registry()
    log = MemoryEventLog()
    clock = MockClock(autojump=False)
    fns = [make_function(registry, i, case) for i, case in enumerate(workload)]
    async with Runtime(log=log, clock=clock, registry=registry, idle_timeout=3600) as runtime:
        handles = []
        for i, (fn, case) in enumerate(zip(fns, workload, strict=True)):
            key = f"{case.key}-{i % 2}" if case.key else None
            try:
                handles.append(await runtime.start(fn, {"case_id": i % 2}, idempotency_key=key))
            except ValueError:  # the key is held by a run of another function: a conflict
                continue
        run_ids = sorted({h.run_id for h in handles})
        for _ in range(200):
            for _ in range(500):
                await asyncio.sleep(0.002)
                if await quiet(runtime, log, run_ids, clock.now()):
                    break
            else:
                raise AssertionError("the workload never became quiet")
            await check_live_equals_fold(runtime, log, run_ids)
            timer = await log.next_timer()
            if timer is None:
                break
            clock.advance(timer.due_at - clock.now())
        for handle in handles:
            with contextlib.suppress(RunFailedError):
                await handle.result()
        await check_live_equals_fold(runtime, log, run_ids)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(workload=st.lists(cases, min_size=1, max_size=5))
def test_live_actor_state_equals_the_folded_log(workload: list[Case]) -> None:
    asyncio.run(scenario(workload))
