"""The application a worker process of tests/postgres/test_pg_workers.py serves
(``serve_worker("_worker_app", url)``): one function and one workflow with a durable
sleep, each naming the process that ran it."""

from __future__ import annotations

import os
import time

from perdure import FunctionContext, entrypoint, function, sleep, task


@function(name="wk_charge")
async def wk_charge(ctx: FunctionContext, n: int) -> str:
    return f"{n} charged by {os.getpid()}"


@task
def wk_step(n: int) -> int:
    return n * 2


@entrypoint(name="wk_flow")
def wk_flow(n: int) -> str:
    doubled = wk_step(n).result()
    sleep(0.05)
    return f"{doubled} by {os.getpid()}"


@function(name="wk_hold")
def wk_hold(path: str) -> str:
    """Runs (in a thread) until the file at `path` exists."""
    while not os.path.exists(path):
        time.sleep(0.02)
    return f"released in {os.getpid()}"
