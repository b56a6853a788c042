"""A user module that `mypy --strict` checks (tests/typing/test_typing.py): what editors see.

Every `assert_type` states the type a user's editor should show, and each
`reveal_type` is compared with the test's expectation (a parameter list with
names cannot be spelled in `assert_type`). Every ``type: ignore[code]`` is an
error mypy must report (``warn_unused_ignores`` is part of ``--strict``). The
module is only type-checked, never run, so it needs no store.
"""

from __future__ import annotations

from typing import Any, assert_type, reveal_type

from perdure import (
    Command,
    FunctionContext,
    TaskFuture,
    Workflow,
    entrypoint,
    function,
    task,
)

# -- @task: a call inside a workflow returns a TaskFuture of the function's result ----------


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
async def fetch(url: str) -> bytes:
    return url.encode()


@task(name="typed_slow", retry_policy=3, timeout=2.5)
def slow(text: str) -> list[str]:
    return text.split()


@task(name="typed_slow_async")
async def slow_async(text: str, *, upper: bool = False) -> str:
    return text.upper() if upper else text


reveal_type(add)
reveal_type(fetch)
reveal_type(slow)


def use_tasks() -> None:
    assert_type(add(1, 2), TaskFuture[int])
    assert_type(add(1), TaskFuture[int])
    assert_type(add(1).result(), int)
    assert_type(fetch("u"), TaskFuture[bytes])
    assert_type(slow("a b").result(), list[str])
    assert_type(slow_async("a", upper=True), TaskFuture[str])
    add("one")  # type: ignore[arg-type]
    add(1, 2, 3)  # type: ignore[call-arg]
    fetch(url=3)  # type: ignore[arg-type]


async def await_tasks() -> None:
    assert_type(await add(1), int)
    assert_type(await fetch("u"), bytes)


# -- @function: its durable signature (without the context) and its result type -----------


@function
def charge(ctx: FunctionContext, order_id: str, cents: int) -> dict[str, int]:
    ctx.logger.info("charging", order_id=order_id)
    return {order_id: cents}


@function
async def refund(order_id: str) -> bool:
    return bool(order_id)


@function(name="typed_notify", retries=5, backoff="linear", timeout=1.0)
async def notify(ctx: FunctionContext, user: str) -> None:
    ctx.log("notified", user=user)


@function(retries=2)
def plain_with_options(n: int) -> float:
    return n / 2


reveal_type(charge)
reveal_type(refund)
reveal_type(notify)
reveal_type(plain_with_options)
assert_type(charge.name, str)


def call_functions() -> None:
    charge("o-1", 5)
    charge(order_id="o-1", cents=5)
    charge("o-1", "five")  # type: ignore[arg-type]
    refund("o-1", 2)  # type: ignore[call-arg]


# -- @entrypoint: Workflow[input, output]; invoke returns the output ------------------------


@entrypoint()
def review(topic: str) -> dict[str, str]:
    return {"topic": topic, "draft": slow(topic).result()[0]}


@entrypoint(name="typed_async_flow")
async def async_flow(n: int, *, previous: Any = None) -> int:
    return await add(n)


@entrypoint(name="typed_saving")
def saving(n: int) -> entrypoint.final[str, int]:
    return entrypoint.final(value=str(n), save=n)


@entrypoint(name="typed_saving_async")
async def saving_async(n: int) -> entrypoint.final[str, int]:
    return entrypoint.final(value=str(await add(n)), save=n)


assert_type(review, Workflow[str, dict[str, str]])
assert_type(async_flow, Workflow[int, int])
assert_type(saving, Workflow[int, str])
assert_type(saving_async, Workflow[int, str])


def invoke_workflows() -> None:
    config = {"configurable": {"thread_id": "t-1"}}
    assert_type(review.invoke("otters"), dict[str, str])
    assert_type(review.invoke(Command(resume="approve"), config), dict[str, str])
    assert_type(saving.invoke(3, config), str)
    review.invoke(3)  # type: ignore[arg-type]
    final = entrypoint.final(value="v", save=1)
    assert_type(final, entrypoint.final[str, int])
    assert_type(final.value, str)
    assert_type(final.save, int)


async def ainvoke_workflows() -> None:
    assert_type(await async_flow.ainvoke(2), int)
