"""Messages to running workflows: perdure vs DBOS (send/recv, set_event/get_event) on SQLite.

    python bench/bench_messages.py [--repeat 3] [--rtt 200] [--messages 1000] [--runs 1000]

Three workloads, each run in a fresh process per system and repeated (median,
min-max shown), both systems in the same invocation so their figures share the
machine's load; compare the ratios, not the absolute numbers:

- ``rtt``: one run loops ``m = receive(); set_event(f"ack-{i}", m)``; the caller
  sends message i and waits for ``ack-i`` with ``get_event(..., timeout=)``: the
  round trip send -> receive -> set_event -> get_event, one at a time (latency,
  median and p99).
- ``busy``: ``--messages`` messages to ONE run that receives them in a loop: from
  one sequential sender, then from 16 concurrent senders (messages/s, until
  the run has received them all and returned).
- ``fanout``: ``--runs`` runs each waiting for one message (started untimed);
  one message to each from 16 concurrent senders, until every run has returned.

perdure uses its default LMDB store (every commit fsync'd); DBOS its SQLite
system database with sqlite's defaults (``synchronous=FULL``: every commit
fsync'd) and ``notification_listener_polling_interval_sec=0.01`` (default 1 s;
on SQLite DBOS polls for messages and events), waiting for results with
``polling_interval_sec=0.01``. Requires ``dbos`` (pip extra ``bench``) in the
interpreter given by ``--dbos-python`` (default: this one); without it, only
perdure's figures are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import python_works, run_json, spread

WORKLOADS = ("rtt", "busy", "fanout")
SENDERS = 16


def _latency(out: dict[str, Any], seconds: list[float]) -> None:
    ordered = sorted(seconds)
    out["rtt_median_ms"] = statistics.median(ordered) * 1000
    out["rtt_p99_ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


# -- perdure -----------------------------------------------------------------------------------


async def _perdure(args: argparse.Namespace) -> dict[str, Any]:
    import perdure
    from perdure import Runtime, entrypoint
    from perdure.runtime import Registry

    registry = Registry()

    @entrypoint(name="echo", registry=registry)
    async def echo(n: int) -> int:
        for i in range(n):
            message = await perdure.areceive()
            perdure.set_event(f"ack-{i}", message)
        return n

    @entrypoint(name="sink", registry=registry)
    async def sink(n: int) -> int:
        total = 0
        for _ in range(n):
            total += await perdure.areceive()
        return total

    @entrypoint(name="one", registry=registry)
    async def one(_: Any) -> Any:
        return await perdure.areceive()

    out: dict[str, Any] = {}
    async with Runtime(os.path.join(args.dir, "store"), registry=registry) as rt:
        if args.workload == "rtt":
            await rt.start("echo", args.n + 10, run_id="echo")
            seconds = []
            for i in range(args.n + 10):
                start = time.perf_counter()
                await rt.send("echo", i)
                got = await rt.get_event("echo", f"ack-{i}", timeout=30)
                if i >= 10:  # after a warm-up
                    seconds.append(time.perf_counter() - start)
                assert got == i, (got, i)
            _latency(out, seconds)
        elif args.workload == "busy":
            for mode, senders in (("sequential", 1), ("concurrent", SENDERS)):
                run_id = f"sink-{mode}"
                await rt.start("sink", args.n, run_id=run_id)
                queue = list(range(args.n))

                async def sender(run_id: str = run_id, queue: list[int] = queue) -> None:
                    while queue:
                        await rt.send(run_id, queue.pop())

                start = time.perf_counter()
                await asyncio.gather(*(sender() for _ in range(senders)))
                outcome = await rt.wait(run_id, timeout=600)
                out[f"{mode}_per_s"] = args.n / (time.perf_counter() - start)
                assert outcome.result == args.n * (args.n - 1) // 2, outcome
        else:
            ids = [f"one-{i}" for i in range(args.n)]
            for run_id in ids:
                await rt.start("one", None, run_id=run_id)
            queue = list(ids)

            async def fan() -> None:
                while queue:
                    run_id = queue.pop()
                    await rt.send(run_id, run_id)

            start = time.perf_counter()
            await asyncio.gather(*(fan() for _ in range(SENDERS)))
            for run_id in ids:
                assert (await rt.wait(run_id, timeout=600)).result == run_id
            out["fanout_per_s"] = args.n / (time.perf_counter() - start)
    return out


# -- DBOS --------------------------------------------------------------------------------------


def _dbos(args: argparse.Namespace) -> dict[str, Any]:
    from dbos import DBOS, SetWorkflowID

    DBOS(
        config={
            "name": "perdure-bench-messages",
            "system_database_url": f"sqlite:///{os.path.join(args.dir, 'dbos.sqlite')}",
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": 0.01,
        }
    )

    @DBOS.workflow()
    def echo(n: int) -> int:
        for i in range(n):
            message = DBOS.recv(timeout_seconds=60)
            DBOS.set_event(f"ack-{i}", message)
        return n

    @DBOS.workflow()
    def sink(n: int) -> int:
        total = 0
        for _ in range(n):
            total += DBOS.recv(timeout_seconds=600)
        return total

    @DBOS.workflow()
    def one() -> Any:
        return DBOS.recv(timeout_seconds=600)

    DBOS.launch()
    out: dict[str, Any] = {}
    try:
        if args.workload == "rtt":
            with SetWorkflowID("echo"):
                DBOS.start_workflow(echo, args.n + 10)
            seconds = []
            for i in range(args.n + 10):
                start = time.perf_counter()
                DBOS.send("echo", i)
                got = DBOS.get_event("echo", f"ack-{i}", timeout_seconds=30)
                if i >= 10:
                    seconds.append(time.perf_counter() - start)
                assert got == i, (got, i)
            _latency(out, seconds)
        elif args.workload == "busy":
            for mode, senders in (("sequential", 1), ("concurrent", SENDERS)):
                run_id = f"sink-{mode}"
                with SetWorkflowID(run_id):
                    handle = DBOS.start_workflow(sink, args.n)
                start = time.perf_counter()
                with ThreadPoolExecutor(senders) as pool:
                    list(pool.map(lambda i, run_id=run_id: DBOS.send(run_id, i), range(args.n)))
                result = handle.get_result(polling_interval_sec=0.01)
                out[f"{mode}_per_s"] = args.n / (time.perf_counter() - start)
                assert result == args.n * (args.n - 1) // 2, result
        else:
            handles = {}
            for i in range(args.n):
                with SetWorkflowID(f"one-{i}"):
                    handles[f"one-{i}"] = DBOS.start_workflow(one)
            start = time.perf_counter()
            with ThreadPoolExecutor(SENDERS) as pool:
                list(pool.map(lambda run_id: DBOS.send(run_id, run_id), handles))
            for run_id, handle in handles.items():
                assert handle.get_result(polling_interval_sec=0.01) == run_id
            out["fanout_per_s"] = args.n / (time.perf_counter() - start)
    finally:
        DBOS.destroy()
    return out


# -- the runner --------------------------------------------------------------------------------


def worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=("perdure", "dbos"))
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    out = asyncio.run(_perdure(args)) if args.system == "perdure" else _dbos(args)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rtt", type=int, default=200, help="round trips (rtt)")
    parser.add_argument("--messages", type=int, default=1000, help="messages to one run (busy)")
    parser.add_argument("--runs", type=int, default=1000, help="runs, one message each (fanout)")
    parser.add_argument("--dbos-python", default=sys.executable)
    args = parser.parse_args(argv)
    systems = ["perdure"]
    why = python_works(args.dbos_python, "dbos")
    if why is None:
        systems.append("dbos")
    else:
        print(f"DBOS skipped: {why}")
    sizes = {"rtt": args.rtt, "busy": args.messages, "fanout": args.runs}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for workload in WORKLOADS:
            for system in systems:  # interleaved: both see the same load over time
                python = sys.executable if system == "perdure" else args.dbos_python
                with tempfile.TemporaryDirectory() as tmp:
                    cmd = [python, os.path.abspath(__file__), "--worker", system, workload]
                    cmd += ["--n", str(sizes[workload]), "--dir", tmp]
                    results.setdefault((system, workload), []).append(run_json(cmd))
    rows = [
        ("round trip, median (ms)", "rtt", "rtt_median_ms", "{:.2f}", False),
        ("round trip, p99 (ms)", "rtt", "rtt_p99_ms", "{:.2f}", False),
        (
            f"one busy run, 1 sender (msg/s, {args.messages})",
            "busy",
            "sequential_per_s",
            "{:.0f}",
            True,
        ),
        (f"one busy run, {SENDERS} senders (msg/s)", "busy", "concurrent_per_s", "{:.0f}", True),
        (f"{args.runs} runs, 1 msg each (msg/s)", "fanout", "fanout_per_s", "{:.0f}", True),
    ]
    print(f"\n{'':44} {'perdure':>22} {'DBOS (SQLite)':>22} {'perdure vs DBOS':>16}")
    for label, workload, key, fmt, higher_is_better in rows:
        cells = []
        medians = []
        for system in ("perdure", "dbos"):
            values = [r[key] for r in results.get((system, workload), [])]
            cells.append(spread(values, fmt=fmt) if values else "-")
            medians.append(statistics.median(values) if values else None)
        ratio = "-"
        if medians[0] and medians[1]:
            x = medians[0] / medians[1] if higher_is_better else medians[1] / medians[0]
            ratio = f"{x:.1f}x"
        print(f"{label:44} {cells[0]:>22} {cells[1]:>22} {ratio:>16}")
    print(f"\n(median of {args.repeat} fresh-process repeats, min-max in brackets)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        raise SystemExit(worker(sys.argv[2:]))
    raise SystemExit(main())
