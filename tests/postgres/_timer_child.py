"""A process of the timer-claiming tests, on a PostgreSQL store.

    python _timer_child.py URL RUNS LEASE_TTL

It serves the store (a recovering Runtime with `nap_flow` and `flaky_charge`
registered; lease_ttl LEASE_TTL seconds) and prints ``ready``. For each line
``start`` on its standard input it starts RUNS runs of each (ids ``nap-<i>`` and
``charge-<i>``) without waiting for them, and prints ``started``. When its
standard input closes it prints ``stats <timers delivered> <leases lost>``.
Every durable sleep and retry backoff is a few milliseconds: the timers are due
almost at once, and each is claimed by whichever process polls first.
"""

from __future__ import annotations

import asyncio
import sys

from perdure import FunctionContext, RetryPolicy, Runtime, entrypoint, function, sleep
from perdure.runtime import Registry

REG = Registry()


@entrypoint(registry=REG, name="nap_flow")
def nap_flow(n: int) -> int:
    for _ in range(4):
        sleep(0.2)  # the run is evicted (idle); a stored timer wakes it, in some process
    return n


@function(registry=REG, retries=RetryPolicy(max_attempts=3, initial_interval_ms=5))
async def flaky_charge(ctx: FunctionContext, n: int) -> int:
    if ctx.attempt < 2:
        raise RuntimeError("this attempt fails")
    return n


async def main(url: str, runs: int, lease_ttl: float) -> None:
    loop = asyncio.get_running_loop()
    async with Runtime(url, registry=REG, lease_ttl=lease_ttl, idle_timeout=0.05) as rt:
        print("ready", flush=True)
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "start":
            for i in range(runs):
                await rt.start("nap_flow", i, run_id=f"nap-{i}")
                await rt.start("flaky_charge", {"n": i}, run_id=f"charge-{i}")
            print("started", flush=True)
        scheduler = rt._scheduler
        supervisor = rt._require_open()
        delivered = scheduler.delivered if scheduler is not None else -1
        print("stats", delivered, supervisor.leases_lost, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
