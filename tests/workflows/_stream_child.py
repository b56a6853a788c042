"""Child process for tests/workflows/test_stream_across_processes.py: one step per process.

Usage: python _stream_child.py STORE STEP

Every step opens the LMDB store at STORE afresh (a new process, as a user's
second script run would) and prints one JSON line per call on stdout:

- ``first``: invoke each thread once, so its last invocation finished here;
  ``ask`` is left waiting on an interrupt.
- ``sync``: stream a new invocation of each thread with the sync `stream`
  (each stream mode, and a list of modes), and resume ``ask`` with `stream`.
- ``async``: the same with `astream` on a runtime the process opens itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from perdure import Command, Runtime, entrypoint, interrupt, task

STORE, STEP = sys.argv[1], sys.argv[2]


@task
def square(x: int) -> int:
    return x * x


@entrypoint(name="xp_flow")
def flow(n: int, *, writer: Callable[[Any], None]) -> int:
    writer({"n": n})
    return square(n).result() + 1


@entrypoint(name="xp_ask")
def ask(n: int) -> dict[str, Any]:
    sq = square(n).result()
    return {"square": sq, "answer": interrupt({"square": sq})}


MODES: list[Any] = ["updates", "values", "custom", ["updates", "values", "custom"]]


def cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def out(what: str, value: Any) -> None:
    print("OUT", json.dumps([what, value], default=repr), flush=True)


def chunks(items: list[Any]) -> list[Any]:
    return [list(c) if isinstance(c, tuple) else c for c in items]


def main() -> None:
    if STEP == "first":
        for prefix in ("sync", "async"):
            for i in range(len(MODES)):
                out(f"{prefix}-{i}", flow.invoke(i + 1, cfg(f"{prefix}-{i}")))
            paused = ask.invoke(3, cfg(f"{prefix}-ask"))
            out(f"{prefix}-ask", [i.value for i in paused["__interrupt__"]])
    elif STEP == "sync":
        for i, mode in enumerate(MODES):
            out(f"sync-{i}", chunks(list(flow.stream(10 + i, cfg(f"sync-{i}"), stream_mode=mode))))
        out("sync-ask", list(ask.stream(Command(resume="yes"), cfg("sync-ask"))))
    else:
        asyncio.run(main_async())


async def main_async() -> None:
    async with Runtime(STORE):
        for i, mode in enumerate(MODES):
            got = [c async for c in flow.astream(10 + i, cfg(f"async-{i}"), stream_mode=mode)]
            out(f"async-{i}", chunks(got))
        got = [c async for c in ask.astream(Command(resume="yes"), cfg("async-ask"))]
        out("async-ask", got)


if __name__ == "__main__":
    main()
