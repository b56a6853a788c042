"""perdure's side of the peer comparison: the four workloads on `perdure.Runtime` + LMDB.

Run by the runner in a fresh interpreter (``python bench/peers/perdure_w.py w1
--dir D --n 200 --variant fsync``); prints one JSON line. ``--variant`` is the
store's durability: ``fsync`` (the default: a step's result is fsync'd before
the workflow goes on) or ``process`` (survives a crash of the process, not of
the machine). The async workloads (w1, w2, w3, w4a) open a `Runtime` and run
async workflow code, as in a service embedding the runtime; the sync ones (w1s,
w2seq, w2thr, w4, w4inv) are plain synchronous code with ``def`` bodies, as in
the README: calls go to perdure's background runtime on the store (``fsync``).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import asyncio  # noqa: E402 - the clock above starts before any import
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, Literal  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _worker import Stopwatch, emit, in_threads, parse, per_call, since_spawn  # noqa: E402

EXECUTED = [0]  # step bodies run in this process


def _define(store: Any = None) -> dict[str, Any]:
    """The workloads' workflows; with `store`, the sync ones use it as their checkpointer."""
    from perdure import entrypoint, function, interrupt, task

    @task(name="peers_noop")
    async def noop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(name="peers_seq")
    async def seq(n: int) -> int:
        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    @entrypoint(name="peers_three")
    async def three(n: int) -> int:
        total = 0
        for k in range(3):
            total += await noop(n + k)
        return total

    @entrypoint(name="peers_paused")
    async def paused(n: int) -> dict[str, Any]:
        total = 0
        for i in range(n):
            total += await noop(i)
        answer = interrupt("continue?")
        return {"total": total, "answer": answer}

    @function(name="peers_charge")
    async def charge(amount: int) -> dict[str, int]:
        EXECUTED[0] += 1
        return {"charged": amount}

    # The sync style of the README and of LangGraph's docs: def bodies, task(...).result().
    @task(name="peers_snoop")
    def snoop(i: int) -> int:
        EXECUTED[0] += 1
        return i

    @entrypoint(name="peers_sseq", checkpointer=store)
    def sseq(n: int) -> int:
        total = 0
        for i in range(n):
            total += snoop(i).result()
        return total

    @entrypoint(name="peers_sthree", checkpointer=store)
    def sthree(n: int) -> int:
        total = 0
        for k in range(3):
            total += snoop(n + k).result()
        return total

    return {
        "seq": seq,
        "three": three,
        "paused": paused,
        "charge": charge,
        "sseq": sseq,
        "sthree": sthree,
    }


def _cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


SYNC = ("w1s", "w2seq", "w2thr", "w4", "w4inv")


def _sync(args: Any) -> dict[str, Any]:
    """The sync workloads: plain synchronous code, no Runtime opened by the caller
    (the workflows' checkpointer is the store; calls go to perdure's background runtime)."""
    import perdure

    durability: Literal["fsync", "process"] = "process" if args.variant == "process" else "fsync"
    store: Any = args.dir
    if durability == "process":
        store = perdure.LmdbEventLog(args.dir, durability="process")
    wf = _define(store)
    out: dict[str, Any] = {"durability": durability}
    wf["sseq"].invoke(3, _cfg("warmup"))
    if args.workload == "w1s":
        watch = Stopwatch()
        total = wf["sseq"].invoke(args.n, _cfg("seq"))
        watch.stop(out)
        assert total == args.n * (args.n - 1) // 2, total
    elif args.workload == "w2seq":
        watch = Stopwatch()
        results = [wf["sthree"].invoke(w, _cfg(f"wf-{w}")) for w in range(args.workflows)]
        watch.stop(out)
        assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
    elif args.workload == "w2thr":
        watch = Stopwatch()
        results = in_threads(lambda w: wf["sthree"].invoke(w, _cfg(f"wf-{w}")), args.workflows)
        watch.stop(out)
        assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
    elif args.workload == "w4inv":
        first = wf["sseq"].invoke(3, _cfg("done"))
        watch = Stopwatch()
        for _ in range(args.n):
            again = wf["sseq"].invoke(None, _cfg("done"))
        watch.stop(out)
        per_call(out, args.n)
        assert first == again == 3, (first, again)
        assert EXECUTED[0] == 3 + 3, EXECUTED[0]
    elif args.workload == "w4":
        with perdure.Client(store=args.dir) as client:
            watch = Stopwatch()
            first = client.run(wf["charge"], {"amount": 7}, idempotency_key="order-1")
            watch.stop(out, "first_seconds")
            watch = Stopwatch()
            for _ in range(args.n):
                again = client.run(wf["charge"], {"amount": 7}, idempotency_key="order-1")
            watch.stop(out)
        per_call(out, args.n)
        assert first == again == {"charged": 7}, (first, again)
        assert EXECUTED[0] == 3 + 1, EXECUTED[0]
    return out


async def _run(args: Any, after_import: Stopwatch) -> dict[str, Any]:
    import perdure

    wf = _define()
    durability: Literal["fsync", "process"] = "process" if args.variant == "process" else "fsync"
    if args.workload == "w3-setup":
        durability = "process"  # recording the history is not measured; its resume is
    out: dict[str, Any] = {"durability": durability}
    async with perdure.Runtime(path=args.dir, durability=durability) as rt:
        if args.workload in ("w1", "w2", "w4a"):
            await wf["seq"].ainvoke(3, _cfg("warmup"))
        if args.workload == "w1":
            watch = Stopwatch()
            total = await wf["seq"].ainvoke(args.n, _cfg("seq"))
            watch.stop(out)
            assert total == args.n * (args.n - 1) // 2, total
        elif args.workload == "w2":
            watch = Stopwatch()
            results = await asyncio.gather(
                *(wf["three"].ainvoke(w, _cfg(f"wf-{w}")) for w in range(args.workflows))
            )
            watch.stop(out)
            assert results[-1] == 3 * (args.workflows - 1) + 3, results[-1]
        elif args.workload == "w3-setup":
            watch = Stopwatch()
            res = await wf["paused"].ainvoke(args.n, _cfg("paused"))
            watch.stop(out)
            assert "__interrupt__" in res, res
        elif args.workload == "w3":
            res = await wf["paused"].ainvoke(perdure.Command(resume=True), _cfg("paused"))
            after_import.stop(out)
            since_spawn(args, out)
            out["reexecuted"] = EXECUTED[0]
            assert res == {"total": args.n * (args.n - 1) // 2, "answer": True}, res
        elif args.workload == "w4a":
            watch = Stopwatch()
            first = await rt.run(wf["charge"], {"amount": 7}, idempotency_key="order-1")
            watch.stop(out, "first_seconds")
            watch = Stopwatch()
            for _ in range(args.n):
                again = await rt.run(wf["charge"], {"amount": 7}, idempotency_key="order-1")
            watch.stop(out)
            per_call(out, args.n)
            assert first == again == {"charged": 7}, (first, again)
            assert EXECUTED[0] == 3 + 1, EXECUTED[0]
    return out


def _profiled(args: Any, work: Any) -> dict[str, Any]:
    """`work()`, under cProfile when PERDURE_BENCH_PROFILE names a .pstats file (all threads
    of the process are not profiled: only this one; the sync path's other threads show as
    waits — use py-spy for those)."""
    target = os.environ.get("PERDURE_BENCH_PROFILE")
    if not target:
        result: dict[str, Any] = work()
        return result
    import cProfile

    profiler = cProfile.Profile()
    result = profiler.runcall(work)
    profiler.dump_stats(target)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import_start = Stopwatch()
    # Drop the two info lines per run, as a service would configure structlog.
    import logging

    import structlog

    import perdure

    # `import perdure` loads nothing until a name is used: import what the workloads use
    # (as the LangGraph adapter imports its modules), so "after import" starts after them.
    from perdure import Client, Runtime, entrypoint, function, interrupt, task  # noqa: F401
    from perdure.eventlog import LmdbEventLog  # noqa: F401

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    after_import = Stopwatch()
    out: dict[str, Any] = {"import_s": after_import.wall - import_start.wall}
    if args.workload == "version":
        return emit({**out, "version": perdure.__version__})
    if args.workload in SYNC:
        out.update(_profiled(args, lambda: _sync(args)))
    else:
        out.update(_profiled(args, lambda: asyncio.run(_run(args, after_import))))
    out["startup_to_main_s"] = import_start.wall - _T0
    out["executed"] = EXECUTED[0]
    return emit(out)


if __name__ == "__main__":
    raise SystemExit(main())
