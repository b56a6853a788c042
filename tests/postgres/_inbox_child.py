"""A process for the cross-process messaging test, on a PostgreSQL store.

    python _inbox_child.py URL RUN_ID drive|drive-die|serve|resume|cancel|cancel-continue

``drive`` registers `ask_flow`, starts it (it waits on an interrupt), prints
``waiting``, keeps its runtime open until its standard input closes, then prints
``lost N`` (runs whose lease it lost); ``drive-die`` does the same but kills itself
(SIGKILL) as soon as it has taken a message from another process, before applying
it. ``serve`` has the code and serves the store (takes over) until stdin closes.
``resume``, ``cancel`` and ``cancel-continue`` register nothing (they cannot drive
the run): they send their message(s) (``cancel-continue``: cancel, print
``cancelled <status>``, continue_run, print ``continued <status>``, resume), then
print ``result ...`` (or ``error <type> <message>``) when the run settles.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from perdure import Runtime, entrypoint, interrupt
from perdure.runtime import Registry

REG = Registry()


@entrypoint(registry=REG, name="ask_flow")
def ask_flow(order: str) -> str:
    answer = interrupt({"question": "ship?", "order": order})
    return f"{order} {answer} by {os.getpid()}"


async def main(url: str, run_id: str, mode: str) -> None:
    registry = REG if mode in ("drive", "drive-die", "serve") else Registry()
    async with Runtime(url, registry=registry, lease_ttl=2.0) as rt:
        try:
            if mode == "drive-die":  # SIGKILLed as soon as it has taken a message
                take = rt.log.take_messages  # type: ignore[attr-defined]

                async def take_then_die(run: str) -> list[object]:
                    taken = await take(run)
                    if taken:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return list(taken)

                rt.log.take_messages = take_then_die  # type: ignore[attr-defined]
                mode = "drive"
            if mode == "serve":
                print("serving", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
                return
            if mode == "drive":
                handle = await rt.start("ask_flow", "A-1", run_id=run_id)
                first = await rt.wait(handle.run_id)
                print("waiting", first.status, flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
                print("lost", rt._require_open().leases_lost, flush=True)
                return
            if mode == "resume":
                await rt.resume(run_id, "yes")
            elif mode == "cancel-continue":
                await rt.cancel(run_id, "not yet")
                print("cancelled", (await rt.wait(run_id, timeout=60)).status, flush=True)
                await rt.continue_run(run_id)
                print("continued", (await rt.wait(run_id, timeout=60)).status, flush=True)
                await rt.resume(run_id, "yes")
            else:
                await rt.cancel(run_id, "changed my mind")
            outcome = await rt.wait(run_id, timeout=60)
            print("result", outcome.status, outcome.unwrap(), flush=True)
        except Exception as exc:
            print("error", type(exc).__name__, exc, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
