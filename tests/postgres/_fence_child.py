"""A worker process for the fencing test: drives one workflow run on a PostgreSQL store.

    python _fence_child.py URL RUN_ID start|take-over MARKS

``start`` runs the workflow and prints ``result ...`` or ``error <ExceptionType>``;
``take-over`` lets its runtime take the run over once its lease expires (at start-up,
or later through its watch for expired leases), prints ``result ...`` when the run
settles, then keeps the run's lease until its standard input closes. Each step
appends "<pid> <step>" to MARKS, and a take-over process "<pid> ready" once open;
while the file MARKS.hold exists, steps from 1 on do not return.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from perdure import Runtime, entrypoint, task
from perdure.runtime import Registry

REG = Registry()
MARKS = sys.argv[4]


@task
def fence_step(i: int) -> int:
    with open(MARKS, "a") as marks:
        marks.write(f"{os.getpid()} {i}\n")
    time.sleep(0.3)  # a step takes a while: the test pauses the process inside one
    while i >= 1 and os.path.exists(MARKS + ".hold"):  # the test holds the run at step 1
        time.sleep(0.01)
    return i


@entrypoint(registry=REG, name="fence_flow")
def fence_flow(n: int) -> list[int]:
    return [fence_step(i).result() for i in range(n)]


async def main(url: str, run_id: str, mode: str) -> None:
    async with Runtime(url, registry=REG, lease_ttl=1.0) as rt:
        if mode == "start":
            try:
                result = await rt.run("fence_flow", 6, run_id=run_id)
            except Exception as exc:
                print("error", type(exc).__name__, flush=True)
            else:
                print("result", result, flush=True)
            return
        with open(MARKS, "a") as marks:  # noqa: ASYNC230 - one line, once
            marks.write(f"{os.getpid()} ready\n")
        outcome = await rt.wait(run_id)
        print("result", outcome.unwrap(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
