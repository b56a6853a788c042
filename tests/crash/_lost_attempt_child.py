"""Child process of tests/crash/test_lost_attempt.py: an attempt killed in its first moments.

Usage: python _lost_attempt_child.py STORE JOURNAL DURABILITY KIND PHASE

KIND is ``function`` (a `@function` started with `Runtime.start`, so its start
is committed first), ``retry`` (a `@function` whose attempt 0 fails at once and
whose attempt 1, retried without a backoff, is the one killed), ``workflow`` (a
workflow invoked without a start commit: task ``first`` completes, then task
``second`` fails its attempt 0 and its attempt 1 is killed) or ``workflow0``
(the same workflow, with ``second``'s attempt 0 killed, on a runtime with
``attempt_linger=0``).

In PHASE ``kill`` the runtime's attempt linger is an hour, so an attempt start
that waits for company is certainly not committed when the parent kills this
process: the parent SIGKILLs it as soon as the hot attempt's ``begin`` line is
in the journal (the body then blocks until killed). In PHASE ``finish`` the
runtime recovers the run and the body returns at once; ``RESULT <json>`` is
printed once the run settled.

Every attempt body writes ``begin KIND ATTEMPT PID`` (fsynced) when it starts (ATTEMPT
is -1 for the workflow's task, which has no context).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import structlog

from perdure import FunctionContext, RetryPolicy, Runtime, entrypoint, function, task

STORE, JOURNAL, DURABILITY, KIND, PHASE = sys.argv[1:6]
RUN_ID = f"lost-{KIND}"
_fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def journal(*words: object) -> None:
    os.write(_fd, (" ".join(str(w) for w in words) + "\n").encode())
    os.fsync(_fd)


async def hot(attempt: int, *, fail_first: bool = False) -> int:
    journal("begin", KIND, attempt, os.getpid())
    if fail_first and attempt <= 0:
        raise ConnectionError("first attempt refused")
    if PHASE == "kill":
        await asyncio.Event().wait()  # only the SIGKILL ends this attempt
    return attempt


AT_ONCE = RetryPolicy(max_attempts=5, initial_interval_ms=0, max_interval_ms=0)


@function(name="lost_fn", retries=AT_ONCE)
async def lost_fn(ctx: FunctionContext) -> int:
    return await hot(ctx.attempt)


@function(name="lost_retry", retries=AT_ONCE)
async def lost_retry(ctx: FunctionContext) -> int:
    return await hot(ctx.attempt, fail_first=True)


@task(name="first")
async def first() -> str:
    return "first"


_runs = [0]


@task(name="second", retry_policy=AT_ONCE)
async def second() -> int:
    # A task has no context: the log says which attempt ran. In "workflow" its
    # first attempt fails at once and the retry is the one killed.
    _runs[0] += 1
    return await hot(-1, fail_first=KIND == "workflow" and PHASE == "kill" and _runs[0] == 1)


@entrypoint(name="lost_wf")
async def lost_wf(value: Any) -> Any:
    return [await first(), await second()]


async def main() -> None:
    # "workflow0": a workflow task's first attempt, whose start lingers unless
    # attempt_linger is 0 (then it is committed before the body, like the others).
    linger = (0.0 if KIND == "workflow0" else 3600.0) if PHASE == "kill" else 0.005
    async with Runtime(path=STORE, durability=DURABILITY, attempt_linger=linger) as runtime:  # type: ignore[arg-type]
        if PHASE == "kill":
            if KIND.startswith("workflow"):
                await lost_wf.ainvoke(None, {"configurable": {"thread_id": RUN_ID}})
            else:
                target = lost_fn if KIND == "function" else lost_retry
                await runtime.start(target, {}, run_id=RUN_ID)
                await runtime.wait(RUN_ID)
            return
        outcome = await runtime.wait(RUN_ID, timeout=30)
        state = await runtime.state(RUN_ID)
        print("RESULT", json.dumps({"status": state.status, "result": state.result}), flush=True)
        del outcome


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(main())
