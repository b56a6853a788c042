"""A worker of the failover campaign: serves a PostgreSQL store and starts runs on it.

    python _failover_worker.py URL KEYS MARKS

It opens a recovering Runtime (lease_ttl 1 s: it takes over runs whose process died),
then starts one run per idempotency key ``k0 .. k{KEYS-1}`` (every worker tries every
key, so they race on them): workflows of three tasks, functions that fail their
first attempt and succeed on the retry, and workflows that sleep durably then wait on
an interrupt, which every worker keeps answering (a resume from whichever process,
reaching the run wherever it is driven). Every body execution appends
"<run id> <what> <pid>" to MARKS. It runs until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time

from perdure import (
    FunctionContext,
    RetryPolicy,
    Runtime,
    entrypoint,
    function,
    interrupt,
    sleep,
    task,
)
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


@entrypoint(registry=REG, name="fo_nap")
def fo_nap(run_id: str) -> int:
    first = fo_step(run_id, 0).result()
    sleep(0.1)  # a durable sleep: its timer fires in whichever process claims it
    answer = interrupt({"question": "go on?"})
    return first + fo_step(run_id, 1).result() + (1 if answer == "go" else 0)


async def answer_interrupts(rt: Runtime) -> None:
    """Resume every fo_nap run that waits on its interrupt, again and again."""
    while True:
        await asyncio.sleep(0.3)
        with contextlib.suppress(Exception):
            for info in await rt.list_runs(status="waiting", target="fo_nap"):
                with contextlib.suppress(Exception):  # asleep, answered, driven elsewhere...
                    state = await rt.state(info.run_id)
                    if state.pending_interrupts():
                        await rt.resume(info.run_id, "go")


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
                if k % 3 == 1:
                    await rt.run("fo_charge", {"n": k}, idempotency_key=f"k{k}", timeout=2)
                elif k % 3 == 2:
                    await rt.run(
                        "fo_nap", run_id, idempotency_key=f"k{k}", run_id=run_id, timeout=2
                    )
                else:
                    await rt.run(
                        "fo_flow", run_id, idempotency_key=f"k{k}", run_id=run_id, timeout=2
                    )

        answering = asyncio.get_running_loop().create_task(answer_interrupts(rt))
        for start in range(0, keys, 4):
            await asyncio.gather(*(one(k) for k in range(start, min(start + 4, keys))))
        await asyncio.Event().wait()  # keep serving: take over what others leave behind
        answering.cancel()


if __name__ == "__main__":
    # perdure's warnings and errors (leases lost, takeovers failing) go to this worker's
    # log file, which a failing campaign shows.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
