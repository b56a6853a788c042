"""The LangGraph side of bench/bench_workflows.py: the same workloads on LangGraph's functional API.

Run in its own virtualenv (LangGraph is not a perdure dependency)::

    python3 -m venv /tmp/venv-lg
    /tmp/venv-lg/bin/pip install langgraph langgraph-checkpoint-sqlite
    /tmp/venv-lg/bin/python bench/langgraph_peer.py seq --dir /tmp/x --n 200

Each call runs ONE workload in this (fresh) process and prints one JSON line on
stdout; bench_workflows.py repeats the calls and takes medians. Workloads:

- ``version``: the installed langgraph version.
- ``seq``: one workflow of ``--n`` sequential no-op tasks (per-task overhead).
- ``fanout``: ``--workflows`` concurrent workflows of 3 no-op tasks each.
- ``resume-setup``: a workflow of ``--n`` sequential tasks that then pauses on
  ``interrupt()``; ``resume`` (run in a fresh process) answers it with
  ``Command(resume=True)`` and reports the time from after import until the
  result, plus how many task bodies ran again.

Checkpointer: ``SqliteSaver`` (``--style sync``, sync entrypoint and tasks) or
``AsyncSqliteSaver`` (``--style async``), a file DB in ``--dir`` (WAL mode,
sqlite's default synchronous=FULL, i.e. fsync per commit). ``--durability`` is
LangGraph's own knob: ``async`` (its default: checkpoints are written in the
background while the next step runs) or ``sync`` (written before the next step).
Nothing from perdure is imported here.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402 - the clock above must start before any import
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from _worker import Stopwatch  # noqa: E402 - shared with the peers' workers (stdlib only)

EXECUTED = [0]  # task bodies run in this process


def _workflows(saver: Any, style: str) -> dict[str, Any]:
    """Build the benchmark workflows on `saver` (the checkpointer is fixed at decoration)."""
    return _sync_workflows(saver) if style == "sync" else _async_workflows(saver)


def _sync_workflows(saver: Any) -> dict[str, Any]:
    from langgraph.func import entrypoint, task
    from langgraph.types import interrupt

    @task
    def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(checkpointer=saver)
    def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += noop(i).result()
        return total

    @entrypoint(checkpointer=saver)
    def three(n: int) -> int:
        return sum(noop(n + k).result() for k in range(3))

    @entrypoint(checkpointer=saver)
    def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += noop(i).result()
        answer = interrupt("continue?")
        return {"total": total, "answer": answer}

    return {"seq": seq, "three": three, "paused": paused}


def _async_workflows(saver: Any) -> dict[str, Any]:
    from langgraph.func import entrypoint, task
    from langgraph.types import interrupt

    @task
    async def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(checkpointer=saver)
    async def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    @entrypoint(checkpointer=saver)
    async def three(n: int) -> int:
        total = 0
        for k in range(3):
            total += await noop(n + k)
        return total

    @entrypoint(checkpointer=saver)
    async def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += await noop(i)
        answer = interrupt("continue?")
        return {"total": total, "answer": answer}

    return {"seq": seq, "three": three, "paused": paused}


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _run_sync(args: argparse.Namespace, after_import: Stopwatch) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.types import Command

    conn = sqlite3.connect(os.path.join(args.dir, "lg.sqlite"), check_same_thread=False)
    with contextlib.closing(conn):
        saver = SqliteSaver(conn)
        wf = _workflows(saver, "sync")
        dur = args.durability
        out: dict[str, Any] = {}
        if args.workload in ("seq", "fanout"):
            wf["seq"].invoke(3, _config("warmup"), durability=dur)
        if args.workload == "seq":
            start = Stopwatch()
            total = wf["seq"].invoke(args.n, _config("seq"), durability=dur)
            start.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "fanout":
            # SqliteSaver has no async methods: the workflows run one after another.
            start = Stopwatch()
            for w in range(args.workflows):
                wf["three"].invoke(w, _config(f"wf-{w}"), durability=dur)
            start.stop(out)
        elif args.workload == "resume-setup":
            start = Stopwatch()
            res = wf["paused"].invoke(args.n, _config("paused"), durability=dur)
            start.stop(out)
            assert "__interrupt__" in res, res
        elif args.workload == "resume":
            res = wf["paused"].invoke(Command(resume=True), _config("paused"), durability=dur)
            after_import.stop(out)
            out["reexecuted"] = EXECUTED[0]
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
        return out


async def _run_async(args: argparse.Namespace, after_import: Stopwatch) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.types import Command

    async with AsyncSqliteSaver.from_conn_string(os.path.join(args.dir, "lg.sqlite")) as saver:
        wf = _workflows(saver, "async")
        dur = args.durability
        out: dict[str, Any] = {}
        if args.workload in ("seq", "fanout"):
            await wf["seq"].ainvoke(3, _config("warmup"), durability=dur)
        if args.workload == "seq":
            start = Stopwatch()
            total = await wf["seq"].ainvoke(args.n, _config("seq"), durability=dur)
            start.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "fanout":
            start = Stopwatch()
            await asyncio.gather(
                *(
                    wf["three"].ainvoke(w, _config(f"wf-{w}"), durability=dur)
                    for w in range(args.workflows)
                )
            )
            start.stop(out)
        elif args.workload == "resume-setup":
            start = Stopwatch()
            res = await wf["paused"].ainvoke(args.n, _config("paused"), durability=dur)
            start.stop(out)
            assert "__interrupt__" in res, res
        elif args.workload == "resume":
            res = await wf["paused"].ainvoke(
                Command(resume=True), _config("paused"), durability=dur
            )
            after_import.stop(out)
            out["reexecuted"] = EXECUTED[0]
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["version", "seq", "fanout", "resume-setup", "resume"])
    parser.add_argument("--dir", default=".")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--style", choices=["sync", "async"], default="sync")
    parser.add_argument("--durability", choices=["async", "sync", "exit"], default="async")
    args = parser.parse_args(argv)

    import_start = Stopwatch()
    import langgraph.checkpoint.sqlite
    import langgraph.checkpoint.sqlite.aio
    import langgraph.func
    import langgraph.types  # noqa: F401

    after_import = Stopwatch()
    out: dict[str, Any] = {
        "import_s": after_import.wall - import_start.wall,
        "python_start_to_main_s": import_start.wall - _T0,
    }
    if args.workload == "version":
        from importlib.metadata import version

        out["langgraph"] = version("langgraph")
        out["langgraph-checkpoint-sqlite"] = version("langgraph-checkpoint-sqlite")
    elif args.style == "sync":
        out.update(_run_sync(args, after_import))
    else:
        out.update(asyncio.run(_run_async(args, after_import)))
    out["executed"] = EXECUTED[0]
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
