"""The user's app that the gateway tests serve: ``perdure serve --app tests/serve/serve_app.py``.

The same targets are registered in this test process (the default registry) when a
test imports this module, so one behaviour test runs against the embedded `Client`
and the remote one. `gw_sleepy` sleeps durably, so a test can see it running and cancel it.
"""

from __future__ import annotations

from typing import Any

from perdure import (
    FunctionContext,
    RetryPolicy,
    asleep,
    entrypoint,
    function,
    interrupt,
    receive,
    set_event,
    task,
)

QUICK = RetryPolicy(max_attempts=3, initial_interval_ms=20, max_interval_ms=20)


@function(name="gw_add")
def gw_add(ctx: FunctionContext, a: int, b: int) -> int:
    return a + b


@function(name="gw_echo")
def gw_echo(ctx: FunctionContext, text: str) -> str:
    return text


@function(name="gw_flaky", retries=QUICK)
def gw_flaky(ctx: FunctionContext, fail_times: int) -> int:
    if ctx.attempt < fail_times:
        raise ConnectionError(f"refused on attempt {ctx.attempt}")
    return ctx.attempt


@function(name="gw_broken", retries=QUICK)
def gw_broken(ctx: FunctionContext) -> None:
    raise KeyError("the answer is not here")


@task
def gw_draft(topic: str) -> str:
    return f"a draft about {topic}"


@entrypoint(name="gw_review")
def gw_review(topic: str) -> dict[str, Any]:
    draft = gw_draft(topic).result()
    verdict = interrupt({"question": "publish?", "draft": draft})
    return {"draft": draft, "verdict": verdict}


@entrypoint(name="gw_sleepy")
async def gw_sleepy(seconds: float) -> str:
    await asleep(seconds)
    return "woke up"


_seen: set[str] = set()


@task
def gw_first_way(topic: str) -> str:
    return f"first way: {topic}"


@task
def gw_second_way(topic: str) -> str:
    return f"second way: {topic}"


@entrypoint(name="gw_fickle")
def gw_fickle(topic: str) -> str:
    """Not deterministic on purpose: a replay of a recorded run asks for another task."""
    if topic not in _seen:
        _seen.add(topic)
        return gw_first_way(topic).result()
    return gw_second_way(topic).result()


@entrypoint(name="gw_inbox")
def gw_inbox(greeting: str) -> str:
    set_event("step", "waiting for a name")
    name = receive()
    set_event("step", f"greeted {name}")
    return f"{greeting}, {name}"
