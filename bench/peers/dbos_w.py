"""DBOS's side of the peer comparison: the four workloads on DBOS Transact, SQLite system DB.

Run by the runner under an interpreter with ``dbos`` (pip extra ``bench``);
prints one JSON line. The system database is a SQLite file in ``--dir``; DBOS
keeps sqlite's defaults (rollback journal, ``synchronous=FULL``: every commit is
fsync'd), and records each step's output in its own transaction before the
workflow goes on. ``notification_listener_polling_interval_sec`` is set to 0.01
(default 1.0 s) and W3 waits for the result with ``polling_interval_sec=0.01``
(default 1.0 s), or W3's wake-up on the message and the wait for its result
would each cost up to a second of polling on SQLite. Nothing from perdure is imported.

W3 (resume): a workflow of ``--n`` steps, then ``DBOS.recv`` (DBOS's equivalent
of a human-in-the-loop pause). The setup process leaves it waiting; a fresh
process launches DBOS, whose recovery re-runs the workflow with every step's
output read back from the database, sends the message and waits for the result.
W4: a workflow started under ``SetWorkflowID(key)`` a second time returns the
recorded result without running it again (DBOS's idempotency).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import asyncio  # noqa: E402 - the clock above starts before any import
import os  # noqa: E402
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


def _define() -> dict[str, Any]:
    from dbos import DBOS

    @DBOS.step()
    def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @DBOS.workflow()
    def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += noop(i)
        return total

    @DBOS.step()
    async def anoop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @DBOS.workflow()
    async def aseq(n: int) -> int:
        total = 0
        for i in range(n):
            total += await anoop(i)
        return total

    @DBOS.workflow()
    def sthree(n: int) -> int:
        total = 0
        for k in range(3):
            total += noop(n + k)
        return total

    @DBOS.workflow()
    async def three(n: int) -> int:
        total = 0
        for k in range(3):
            total += await anoop(n + k)
        return total

    @DBOS.workflow()
    def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += noop(i)
        DBOS.set_event("ready", True)
        answer = DBOS.recv("answer", timeout_seconds=3600)
        return {"total": total, "answer": answer}

    @DBOS.workflow()
    def charge(amount: int) -> dict[str, int]:
        EXECUTED[0] += 1
        return {"charged": amount}

    return {
        "seq": seq,
        "aseq": aseq,
        "three": three,
        "sthree": sthree,
        "paused": paused,
        "charge": charge,
    }


def _run(args: Any, after_import: Stopwatch, db: str) -> dict[str, Any]:
    from dbos import DBOS, SetWorkflowID

    DBOS(
        config={
            "name": "perdure-peers",
            "system_database_url": f"sqlite:///{db}",
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.01,
        }
    )
    wf = _define()
    DBOS.launch()
    out: dict[str, Any] = {"durability": "sqlite synchronous=FULL"}
    try:
        if args.workload in ("w1s", "w2seq", "w2thr", "w4"):
            wf["seq"](3)
        if args.workload == "w1s":
            watch = Stopwatch()
            total = wf["seq"](args.n)
            watch.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "w1":

            async def sequential() -> int:
                await wf["aseq"](3)  # warm-up
                watch = Stopwatch()
                total: int = await wf["aseq"](args.n)
                watch.stop(out)
                return total

            total = asyncio.run(sequential())
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "w2seq":
            watch = Stopwatch()
            results = [wf["sthree"](w) for w in range(args.workflows)]
            watch.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w2thr":
            watch = Stopwatch()
            results = in_threads(wf["sthree"], args.workflows)
            watch.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w2":

            async def fanout() -> list[int]:
                await wf["three"](0)  # warm-up
                watch = Stopwatch()
                results = await asyncio.gather(*(wf["three"](w) for w in range(args.workflows)))
                watch.stop(out)
                return list(results)

            results = asyncio.run(fanout())
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w3-setup":
            watch = Stopwatch()
            with SetWorkflowID("paused"):
                DBOS.start_workflow(wf["paused"], args.n)
            assert DBOS.get_event("paused", "ready", timeout_seconds=3600) is True
            watch.stop(out)
        elif args.workload == "w3":
            DBOS.send("paused", True, "answer")
            res = DBOS.retrieve_workflow("paused").get_result(polling_interval_sec=0.01)
            after_import.stop(out)
            since_spawn(args, out)
            out["reexecuted"] = EXECUTED[0]
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
        elif args.workload == "w4":
            watch = Stopwatch()
            with SetWorkflowID("order-1"):
                first = wf["charge"](7)
            watch.stop(out, "first_seconds")
            watch = Stopwatch()
            for _ in range(args.n):
                with SetWorkflowID("order-1"):
                    again = wf["charge"](7)
            watch.stop(out)
            per_call(out, args.n)
            assert first == again == {"charged": 7}, (first, again)
            assert EXECUTED[0] == 3 + 1, EXECUTED[0]
    finally:
        if args.workload == "w3-setup":
            # Leave the workflow pending in the database, as a crash or deploy would.
            sys.stdout.flush()
            out.update(sqlite_settings(db))
            emit(out)
            os._exit(0)
        DBOS.destroy()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import_start = Stopwatch()
    import dbos

    after_import = Stopwatch()
    out: dict[str, Any] = {"import_s": after_import.wall - import_start.wall}
    if args.workload == "version":
        from importlib.metadata import version

        return emit({**out, "version": f"dbos {version('dbos')}"})
    del dbos
    os.makedirs(args.dir, exist_ok=True)
    db = os.path.join(args.dir, "dbos.sqlite")
    out.update(_run(args, after_import, db))
    out.update(sqlite_settings(db))
    out["startup_to_main_s"] = import_start.wall - _T0
    out["executed"] = EXECUTED[0]
    return emit(out)


if __name__ == "__main__":
    raise SystemExit(main())
