"""A user's app for the CLI tests, and the "service" process that writes its store.

    python cli_app.py make STORE    record a few runs and exit
    python cli_app.py serve STORE   hold STORE open for writing; start run "cli-live"
                                    (prints "ready"), finish it, wait for stdin to close

`perdure ... --app tests/cli/cli_app.py:APP` loads it by path. Its targets live
in their own `APP` registry, so loading it again and again never clashes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import structlog

from perdure import (
    Command,
    FunctionContext,
    RetryPolicy,
    Runtime,
    asleep,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.runtime import Registry

APP = Registry()
NOT_A_TARGET = 42


@task
def cli_draft(topic: str) -> str:
    return f"a draft about {topic}"


@task
async def cli_publish(text: str) -> str:
    return f"published {text}"


@entrypoint(registry=APP)
def cli_review(topic: str) -> dict[str, Any]:
    draft = cli_draft(topic).result()
    verdict = interrupt({"question": "publish?", "draft": draft})
    if verdict == "approve":
        return {"verdict": verdict, "outcome": cli_publish(draft).result()}
    return {"verdict": verdict, "outcome": "kept"}


@entrypoint(registry=APP)
async def cli_slow(n: int) -> int:
    first = await cli_publish(str(n))
    await asleep(1.5)  # long enough for a `perdure events --follow` to start meanwhile
    second = await cli_publish(first)
    return len(second)


@function(retries=RetryPolicy(max_attempts=2, initial_interval_ms=10), registry=APP)
async def cli_broken(ctx: FunctionContext, n: int) -> int:
    raise ValueError(f"cannot do {n}")


@function(registry=APP)
async def cli_add(a: int, b: int) -> int:
    return a + b


async def make(store: str) -> None:
    async with Runtime(path=store, registry=APP) as rt:
        await rt.start(cli_review, "otters", run_id="cli-done")
        await rt.wait("cli-done")
        await rt.send("cli-done", Command(resume="approve"))
        await rt.wait("cli-done")
        await rt.start(cli_review, "badgers", run_id="cli-wait")
        await rt.wait("cli-wait")
        await rt.start(cli_broken, {"n": 3}, run_id="cli-fail")
        await rt.wait("cli-fail")
        await rt.run(cli_add, {"a": 1, "b": 2}, run_id="cli-add", idempotency_key="add-1-2")


async def serve(store: str) -> None:
    async with Runtime(path=store, registry=APP) as rt:
        handle = await rt.start(cli_slow, 7, run_id="cli-live")
        print("ready", flush=True)
        await handle.result()
        print("done", flush=True)
        await asyncio.to_thread(sys.stdin.read)  # hold the store until the test lets go


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: protocol
    mode, path = sys.argv[1], sys.argv[2]
    asyncio.run(make(path) if mode == "make" else serve(path))
