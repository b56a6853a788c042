"""Child process of the receive-loop SIGKILL test: a workflow that receives N messages on LMDB.

Run as ``python _receive_child.py STORE JOURNAL OWN TOTAL`` (with
``RECEIVE_CHILD_SYNC=1`` the loop is a sync body) (or ``STORE JOURNAL
family N``: run ``family``, a parent of two child workflows of N and N+1 tasks).
Each start opens the store (the runtime resumes the run by itself), starts run ``loop`` if the store
does not hold it yet, sends this process's messages ``own-0`` .. ``own-{OWN-1}``
that the journal does not show sent yet (each with its idempotency key: a message
whose send returned just before a kill is sent again as a no-op), then waits for
the run's result and exits 0. The run receives TOTAL messages: OWN from here, the
rest from the parent while no child runs.

The journal gets one line per fact (``os.write`` with O_APPEND, fsynced):

- ``ready PID``: the store is open;
- ``sent NAME``: `send` of message NAME returned (it is in the log);
- ``seen POSITION NAME``: the body's receive at POSITION returned NAME (written at
  every execution of the body, replays included: they must agree with each other
  and with the log);
- ``step I``: a task of a child workflow (family mode) ran;
- ``done PID``: the run completed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from perdure import Runtime, areceive, entrypoint, receive, set_event, task
from perdure.runtime import Registry

REGISTRY = Registry()
JOURNAL = ""


def note(line: str) -> None:
    fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@entrypoint(name="receive_loop", registry=REGISTRY)
async def receive_loop(total: int) -> list[Any]:
    got = []
    for i in range(total):
        message = await areceive()
        note(f"seen {i} {message}")
        got.append(message)
        set_event("received", i + 1)
    return got


@entrypoint(name="receive_loop_sync", registry=REGISTRY)
def receive_loop_sync(total: int) -> list[Any]:
    """The same loop in a sync body: its `receive()` waits in the body's thread."""
    got = []
    for i in range(total):
        message = receive()
        note(f"seen {i} {message}")
        got.append(message)
        set_event("received", i + 1)
    return got


def already_sent() -> set[str]:
    if not os.path.exists(JOURNAL):
        return set()
    with open(JOURNAL) as f:
        return {line.split()[1] for line in f if line.startswith("sent ")}


@task
async def step(i: int) -> int:
    await asyncio.sleep(0.002)
    note(f"step {i}")
    return i * i


@entrypoint(name="squares", registry=REGISTRY)
async def squares(n: int) -> int:
    total = 0
    for i in range(n):
        total += await step(i)
    return total


@entrypoint(name="family", registry=REGISTRY)
async def family(n: int) -> list[int]:
    first = await squares.ainvoke(n)
    second = await squares(n + 1)
    return [first, second]


async def family_main(store: str, n: int) -> None:
    async with Runtime(store, registry=REGISTRY) as rt:
        note(f"ready {os.getpid()}")
        if await rt.get_run("family") is None:
            await rt.start("family", n, run_id="family")
        outcome = await rt.wait("family")
        assert outcome.status == "completed", outcome
    note(f"done {os.getpid()}")


async def main(store: str, own: int, total: int) -> None:
    sent = already_sent()
    async with Runtime(store, registry=REGISTRY) as rt:
        note(f"ready {os.getpid()}")
        if await rt.get_run("loop") is None:
            sync = os.environ.get("RECEIVE_CHILD_SYNC") == "1"
            await rt.start("receive_loop_sync" if sync else "receive_loop", total, run_id="loop")
        for i in range(own):
            name = f"own-{i}"
            if name not in sent:
                await rt.send("loop", name, idempotency_key=name)
                note(f"sent {name}")
        outcome = await rt.wait("loop")
        assert outcome.status == "completed", outcome
    note(f"done {os.getpid()}")


if __name__ == "__main__":
    JOURNAL = sys.argv[2]
    if sys.argv[3] == "family":
        asyncio.run(family_main(sys.argv[1], int(sys.argv[4])))
    else:
        asyncio.run(main(sys.argv[1], int(sys.argv[3]), int(sys.argv[4])))
