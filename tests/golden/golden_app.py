"""The code the golden logs were written with; the golden test replays them against it.

Change a workflow here only in ways that still fit the committed logs (that is
what the golden test checks). New behaviour goes into new workflows with new
golden logs, written by `make_golden.py`.

Everything registers in its own `GOLDEN` registry, so this module can be
imported under several names (pytest, ``--app tests/golden/golden_app.py``)
without clashing with the default registry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from perdure import (
    FunctionContext,
    RetryPolicy,
    ainterrupt,
    areceive,
    asleep,
    entrypoint,
    function,
    interrupt,
    set_event,
    sleep,
    task,
)
from perdure.errors import InterruptTimeoutError
from perdure.runtime import Registry

GOLDEN = Registry()

#: How many more times a task that "fails once" should fail (only the generator runs tasks).
failures_left: dict[str, int] = {}


# -- functions ---------------------------------------------------------------------------------


@function(
    retries=RetryPolicy(max_attempts=4, initial_interval_ms=1000),
    backoff="exponential",
    registry=GOLDEN,
)
async def golden_flaky_fetch(ctx: FunctionContext, url: str) -> dict[str, Any]:
    """Fails on its first two attempts (a timeout), answers on the third."""
    if ctx.attempt < 2:
        raise ConnectionError(f"timed out fetching {url}")
    return {"url": url, "status": 200, "attempt": ctx.attempt}


@function(retries=2, backoff="constant", registry=GOLDEN)
def golden_always_fails(ctx: FunctionContext, n: int) -> int:
    """Fails every attempt: the run fails for good."""
    raise ValueError(f"cannot handle n={n}")


# -- a workflow with tasks, a retried task, parallel tasks, a sleep and an interrupt -----------


@task
def golden_draft(topic: str) -> str:
    return f"Ten facts about {topic}."


@task(retry_policy=RetryPolicy(max_attempts=3, initial_interval_ms=500))
async def golden_spellcheck(text: str) -> str:
    if failures_left.get("spellcheck", 0) > 0:
        failures_left["spellcheck"] -= 1
        raise TimeoutError("spellchecker busy")
    return text.replace("facts", "Facts")


@task
async def golden_square(n: int) -> int:
    return n * n


@task
def golden_publish(text: str) -> str:
    return f"published: {text}"


@entrypoint(registry=GOLDEN)
def golden_review(topic: str) -> dict[str, Any]:
    draft = golden_draft(topic).result()
    checked = golden_spellcheck(draft).result()
    futures = [golden_square(i) for i in range(3)]
    squares = [future.result() for future in futures]
    sleep(60)
    verdict = interrupt({"question": "Publish this draft?", "draft": checked})
    if verdict == "approve":
        return {"verdict": verdict, "outcome": golden_publish(checked).result(), "squares": squares}
    return {"verdict": verdict, "outcome": "not published", "squares": squares}


# -- a workflow that fails, and one with several invocations ------------------------------------


@task(retry_policy=2)
async def golden_charge(cents: int) -> str:
    if failures_left.get("charge", 0) > 0:
        failures_left["charge"] -= 1
        raise RuntimeError(f"card declined for {cents} cents")
    return f"receipt for {cents} cents"


@entrypoint(registry=GOLDEN)
async def golden_checkout(order: dict[str, Any]) -> str:
    receipt: str = await golden_charge(order["cents"])
    return receipt


@entrypoint(registry=GOLDEN)
async def golden_counter(step: int, *, previous: Any = None) -> Any:
    total = (previous or 0) + await golden_square(step)
    return entrypoint.final(value={"step": step, "total": total}, save=total)


# -- tasks inside a task, and an interrupt inside a task ------------------------------------------


@task
def golden_ask(question: str) -> str:
    hint = golden_square(4).result()
    answer = interrupt({"question": question, "hint": hint})
    return f"{answer} (hint {hint})"


@entrypoint(registry=GOLDEN)
def golden_nested(question: str) -> str:
    result: str = golden_ask(question).result()
    return result


# -- a task raced against a durable sleep, then two questions (seen_seq, value_digest) ----------


@entrypoint(registry=GOLDEN)
async def golden_race(topic: str) -> dict[str, Any]:
    fetch = asyncio.ensure_future(golden_square(len(topic)))
    timeout = asyncio.create_task(asleep(30))
    done, _ = await asyncio.wait({fetch, timeout}, return_when=asyncio.FIRST_COMPLETED)
    winner = "task" if fetch in done else "sleep"
    name = interrupt({"question": "name?", "winner": winner})
    age = interrupt({"question": "age?"})
    return {"winner": winner, "name": name, "age": age}


# -- messages (send/receive), a receive that times out, published events ------------------


@entrypoint(registry=GOLDEN)
async def golden_inbox(n: int) -> dict[str, Any]:
    first = await areceive()
    set_event("progress", {"received": 1})
    second = await areceive("urgent")
    late = await areceive(timeout=60)
    set_event("progress", {"received": 2})
    return {"first": first, "second": second, "late": late, "n": n}


# -- an interrupt that times out, a receive that loses a race, a run past its deadline --------


@entrypoint(registry=GOLDEN)
async def golden_waits(topic: str) -> dict[str, Any]:
    try:
        answer = interrupt({"approve": topic}, timeout=300)
    except InterruptTimeoutError:
        answer = "expired"
    got = asyncio.ensure_future(areceive())
    timer = asyncio.ensure_future(asleep(60))
    done, pending = await asyncio.wait({got, timer}, return_when=asyncio.FIRST_COMPLETED)
    for side in pending:
        side.cancel()
    late = await areceive(timeout=30)
    return {"answer": answer, "message": got.result() if got in done else None, "late": late}


@entrypoint(registry=GOLDEN, timeout=600)
async def golden_deadline(topic: str) -> Any:
    set_event("status", f"waiting for {topic}")
    return await areceive()


# -- ainterrupt() in races: an answer beats a receive, a sleep beats a question ---------------


@entrypoint(registry=GOLDEN)
async def golden_approval_race(topic: str) -> dict[str, Any]:
    asked = asyncio.ensure_future(ainterrupt({"approve": topic}))
    got = asyncio.ensure_future(areceive())
    done, pending = await asyncio.wait({asked, got}, return_when=asyncio.FIRST_COMPLETED)
    for side in pending:
        side.cancel()
    first = asked.result() if asked in done else "message"
    again = asyncio.ensure_future(ainterrupt({"confirm": topic}, timeout=600))
    timer = asyncio.ensure_future(asleep(30))
    done, pending = await asyncio.wait({again, timer}, return_when=asyncio.FIRST_COMPLETED)
    for side in pending:
        side.cancel()
    second = again.result() if again in done else "expired"
    late = await areceive(timeout=30)
    return {"first": first, "second": second, "late": late}


# -- a child workflow: a recorded step of its parent -------------------------------------------


@entrypoint(registry=GOLDEN)
async def golden_child(n: int) -> int:
    return await golden_square(n)


@entrypoint(registry=GOLDEN)
async def golden_parent(n: int) -> dict[str, Any]:
    first = await golden_child.ainvoke(n)
    second = await golden_child(n + 1)
    return {"first": first, "second": second}


WORKFLOWS = [
    golden_review,
    golden_checkout,
    golden_counter,
    golden_nested,
    golden_race,
    golden_inbox,
    golden_waits,
    golden_deadline,
    golden_approval_race,
    golden_child,
    golden_parent,
]
FUNCTIONS = [golden_flaky_fetch, golden_always_fails]
