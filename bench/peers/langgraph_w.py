"""LangGraph's side of the peer comparison: the four workloads on its functional API.

Run by the runner under an interpreter with ``langgraph`` and
``langgraph-checkpoint-sqlite`` (pip extra ``bench``); prints one JSON line.
Checkpointer: a SQLite file in ``--dir``; LangGraph switches it to WAL mode and
leaves sqlite's default ``synchronous=FULL`` (the WAL is fsync'd per commit).
``--variant`` is LangGraph's own ``durability`` knob: ``sync`` (a step's
checkpoint is written before the next step starts, comparable to perdure's
default) or ``async`` (LangGraph's default: written in the background while the
next step runs; everything is on disk when ``invoke`` returns).

The sync workloads (w1s, w2seq, w2thr, w3, w4, w4inv) use ``SqliteSaver`` with
sync code (LangGraph's documented pairing; its connection is shared by the 8
threads of w2thr, as ``SqliteSaver`` serialises its own use of it); the async
ones (w1, w2) use ``AsyncSqliteSaver`` with async code, since ``SqliteSaver``
cannot run workflows concurrently. W4: LangGraph has no idempotency key; the idiom is to
use the key as the thread id and return the thread's stored result if it has
one (``get_state``), which is what is measured. Nothing from perdure is imported.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import asyncio  # noqa: E402 - the clock above starts before any import
import contextlib  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _worker import (  # noqa: E402
    Stopwatch,
    emit,
    in_threads,
    parse,
    per_call,
    since_spawn,
    sqlite_settings,
)

EXECUTED = [0]  # step bodies run in this process


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _sync(args: Any, after_import: Stopwatch, db: str) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.func import entrypoint, task
    from langgraph.types import Command, interrupt

    conn = sqlite3.connect(db, check_same_thread=False)
    with contextlib.closing(conn):
        saver = SqliteSaver(conn)

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
            total = 0
            for k in range(3):
                total += noop(n + k).result()
            return total

        @entrypoint(checkpointer=saver)
        def paused(n: int) -> dict[str, Any]:
            total = 0
            for i in range(n):
                total += noop(i).result()
            answer = interrupt("continue?")
            return {"total": total, "answer": answer}

        @entrypoint(checkpointer=saver)
        def charge(amount: int) -> dict[str, int]:
            EXECUTED[0] += 1
            return {"charged": amount}

        def charge_once(key: str, amount: int) -> Any:
            """The idempotency idiom: the key is the thread; a finished thread's value is reused."""
            state = charge.get_state(_cfg(key))
            if state.values and not state.next:
                return state.values
            return charge.invoke(amount, _cfg(key), durability=dur)

        dur = args.variant or "sync"
        out: dict[str, Any] = {"durability": dur}
        if args.workload != "w3":
            seq.invoke(3, _cfg("warmup"), durability=dur)
        if args.workload == "w1s":
            watch = Stopwatch()
            total = seq.invoke(args.n, _cfg("seq"), durability=dur)
            watch.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "w2seq":
            watch = Stopwatch()
            results = [
                three.invoke(w, _cfg(f"wf-{w}"), durability=dur) for w in range(args.workflows)
            ]
            watch.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w2thr":
            watch = Stopwatch()
            results = in_threads(
                lambda w: three.invoke(w, _cfg(f"wf-{w}"), durability=dur), args.workflows
            )
            watch.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w4inv":
            first = seq.invoke(3, _cfg("done"), durability=dur)
            watch = Stopwatch()
            for _ in range(args.n):
                again = seq.invoke(None, _cfg("done"), durability=dur)
            watch.stop(out)
            per_call(out, args.n)
            assert first == again == 3, (first, again)
            assert EXECUTED[0] == 3 + 3, EXECUTED[0]
        elif args.workload == "w3-setup":
            watch = Stopwatch()
            res = paused.invoke(args.n, _cfg("paused"), durability=dur)
            watch.stop(out)
            assert "__interrupt__" in res, res
        elif args.workload == "w3":
            res = paused.invoke(Command(resume=True), _cfg("paused"), durability=dur)
            after_import.stop(out)
            since_spawn(args, out)
            out["reexecuted"] = EXECUTED[0]
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
        elif args.workload == "w4":
            watch = Stopwatch()
            first = charge_once("order-1", 7)
            watch.stop(out, "first_seconds")
            watch = Stopwatch()
            for _ in range(args.n):
                again = charge_once("order-1", 7)
            watch.stop(out)
            per_call(out, args.n)
            assert first == again == {"charged": 7}, (first, again)
            assert EXECUTED[0] == 3 + 1, EXECUTED[0]
        return out


async def _async(args: Any, db: str) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.func import entrypoint, task

    async with AsyncSqliteSaver.from_conn_string(db) as saver:

        @task
        async def noop(i: int) -> int:
            EXECUTED[0] += 1
            return i

        @entrypoint(checkpointer=saver)
        async def three(n: int) -> int:
            total = 0
            for k in range(3):
                total += await noop(n + k)
            return total

        @entrypoint(checkpointer=saver)
        async def seq(n: int) -> int:
            total = 0
            for i in range(n):
                total += await noop(i)
            return total

        dur = args.variant or "sync"
        out: dict[str, Any] = {"durability": dur}
        await three.ainvoke(0, _cfg("warmup"), durability=dur)
        if args.workload == "w1":
            watch = Stopwatch()
            total = await seq.ainvoke(args.n, _cfg("seq"), durability=dur)
            watch.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
            return out
        watch = Stopwatch()
        results = await asyncio.gather(
            *(three.ainvoke(w, _cfg(f"wf-{w}"), durability=dur) for w in range(args.workflows))
        )
        watch.stop(out)
        assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import_start = Stopwatch()
    import langgraph.checkpoint.sqlite
    import langgraph.checkpoint.sqlite.aio
    import langgraph.func
    import langgraph.types  # noqa: F401

    after_import = Stopwatch()
    out: dict[str, Any] = {"import_s": after_import.wall - import_start.wall}
    if args.workload == "version":
        from importlib.metadata import version

        out["version"] = (
            f"langgraph {version('langgraph')}, "
            f"langgraph-checkpoint-sqlite {version('langgraph-checkpoint-sqlite')}"
        )
        return emit(out)
    os.makedirs(args.dir, exist_ok=True)
    db = os.path.join(args.dir, "lg.sqlite")
    if args.workload in ("w1", "w2"):
        out.update(asyncio.run(_async(args, db)))
    else:
        out.update(_sync(args, after_import, db))
    out.update(sqlite_settings(db))
    out["startup_to_main_s"] = import_start.wall - _T0
    out["executed"] = EXECUTED[0]
    return emit(out)


if __name__ == "__main__":
    raise SystemExit(main())
