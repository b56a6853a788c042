"""A worker of the failover campaign: serves a PostgreSQL store and starts runs on it.

    python _failover_worker.py URL KEYS MARKS

It opens a recovering Runtime (lease_ttl 1 s: it takes over runs whose process died),
then starts one run per idempotency key ``k0 .. k{KEYS-1}`` (every worker tries every
key, so they race on them): workflows of three tasks, and functions that fail their
first attempt and succeed on the retry. Every body execution appends
"<run id> <what> <pid>" to MARKS. It runs until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from perdure import FunctionContext, RetryPolicy, Runtime, entrypoint, function, task
from perdure.runtime import Registry

REG = Registry()
MARKS = sys.argv[3]


def mark(run_id: str, what: str) -> None:
    with open(MARKS, "a") as marks:
        marks.write(f"{run_id} {what} {os.getpid()}\n")


@task
def fo_step(run_id: str, i: int) -> int:
    mark(run_id, f"step{i}")
    time.sleep(0.2)  # work in flight when a kill lands
    return i


@entrypoint(registry=REG, name="fo_flow")
def fo_flow(run_id: str) -> int:
    return sum(fo_step(run_id, i).result() for i in range(3))


@function(registry=REG, retries=RetryPolicy(max_attempts=3, initial_interval_ms=20))
async def fo_charge(ctx: FunctionContext, n: int) -> int:
    mark(ctx.run_id, f"charge{ctx.attempt}")
    await asyncio.sleep(0.2)
    if ctx.attempt == 0:
        raise RuntimeError("the first attempt fails")
    return n


async def main(url: str, keys: int) -> None:
    async with Runtime(url, registry=REG, lease_ttl=1.0) as rt:

        async def one(k: int) -> None:
            run_id = f"run-k{k}-{os.getpid()}"
            with contextlib.suppress(Exception):  # a run driven elsewhere: not our business
                if k % 2:
                    await rt.run("fo_charge", {"n": k}, idempotency_key=f"k{k}", timeout=2)
                else:
                    await rt.run(
                        "fo_flow", run_id, idempotency_key=f"k{k}", run_id=run_id, timeout=2
                    )

        for start in range(0, keys, 4):
            await asyncio.gather(*(one(k) for k in range(start, min(start + 4, keys))))
        await asyncio.Event().wait()  # keep serving: take over what others leave behind


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
