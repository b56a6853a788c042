"""perdure on a PostgreSQL store: per-step latency, 1,000 workflows, worker throughput.

On a throwaway cluster (fsync and synchronous_commit on), or on
$PERDURE_TEST_POSTGRES:

- per step: a workflow of N sequential tasks (each task's result durable before
  the next starts), next to a raw INSERT + COMMIT on the same server;
- 1,000 concurrent workflows of 3 tasks in one process (``--workflows``);
- throughput with 1, 2 and 4 worker processes (``--workers 1,2,4``): a client
  process without the code starts ``--tp-runs`` workflows of 3 tasks (handed to
  the workers, `perdure.runtime.run_worker`), and waits for all of them; with
  ``--backlog``, also the workers alone draining as many runs the client enqueued
  while they were stopped (the client shares the cores otherwise).

With ``--peer-python`` (an interpreter with LangGraph, langgraph-checkpoint-postgres
and DBOS; see bench/pg_peer.py), LangGraph with PostgresSaver and DBOS run the same
per-step and 1,000-workflow workloads on the same server, in the same run, and the
ratios are printed.

    python bench/bench_postgres.py [--steps 300] [--workflows 1000] [--workers 1,2,4]
        [--peer-python /tmp/venv-lgpg/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from perdure import Runtime, entrypoint, task
from perdure.runtime import Registry
from perdure.testing.postgres import TemporaryPostgres

REG = Registry()


@task
def step(i: int) -> int:
    return i + 1


def make_flow(steps: int) -> None:
    @entrypoint(registry=REG, name="pg_bench_flow")
    def flow(n: int) -> int:
        value = 0
        for _ in range(n):
            value = step(value).result()
        return value


async def per_step(url: str, steps: int, rounds: int) -> tuple[list[float], float]:
    """Seconds per step in each round, and commits (appends) per step."""
    out = []
    async with Runtime(url, registry=REG) as rt:
        await rt.run("pg_bench_flow", 5, run_id="warm-up")
        before = (await rt.log.statistics()).batches
        for r in range(rounds):
            start = time.perf_counter()
            assert await rt.run("pg_bench_flow", steps, run_id=f"bench-{r}") == steps
            out.append((time.perf_counter() - start) / steps)
        commits = (await rt.log.statistics()).batches - before
    return out, commits / (steps * rounds)


def raw_commit(url: str, n: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigint, body bytea)")
        body = b"x" * 120
        for i in range(50):
            conn.execute("INSERT INTO bench_raw VALUES (%s, %s)", (i, body))
        times = []
        for i in range(n):
            start = time.perf_counter()
            conn.execute("INSERT INTO bench_raw VALUES (%s, %s)", (i, body))
            times.append(time.perf_counter() - start)
        conn.execute("DROP TABLE bench_raw")
    return statistics.median(times)


def make_fanout() -> None:
    @entrypoint(registry=REG, name="pg_bench_fanout")
    def fanout(n: int) -> int:
        value = n
        for _ in range(3):
            value = step(value).result()
        return value


@task
async def astep(i: int) -> int:
    return i + 1


def make_async_fanout() -> None:
    @entrypoint(registry=REG, name="pg_bench_afanout")
    async def afanout(n: int) -> int:
        value = n
        for _ in range(3):
            value = await astep(value)
        return value


async def many_workflows(url: str, n: int, target: str = "pg_bench_fanout") -> float:
    """Seconds for `n` concurrent workflows of 3 tasks in one process (`target`: the sync
    workflow of sync tasks, or ``pg_bench_afanout``, async code like LangGraph's and
    DBOS's fan-out in bench/pg_peer.py and the LMDB peer comparison's W2)."""
    async with Runtime(url, registry=REG) as rt:
        await rt.run(target, 0, run_id=f"{target}-warm-up")
        start = time.perf_counter()
        results = await asyncio.gather(
            *(rt.run(target, i, run_id=f"{target}-{i}") for i in range(n))
        )
        took = time.perf_counter() - start
    assert results == [i + 3 for i in range(n)]
    return took


WORKER = (
    "import sys; from perdure.runtime import run_worker; "
    "run_worker('_pg_worker_app', sys.argv[1], ready=lambda rt: print('ready', flush=True))"
)


async def client_runs(url: str, runs: int, tag: str) -> tuple[float, float]:
    """(runs per second, the client's CPU share): a client process (this one, without
    the code) starts `runs` workflows of 3 tasks, handed to the workers, and waits for
    all of them; its CPU seconds over the wall seconds (near 1: the client is what
    limits the throughput)."""
    async with Runtime(url, registry=Registry(), recover=False) as rt:
        start = time.perf_counter()
        cpu = time.process_time()
        handles = await asyncio.gather(
            *(rt.start("pg_tp_flow", i, run_id=f"tp-{tag}-{i}") for i in range(runs))
        )
        results = await asyncio.gather(*(h.result(timeout=600) for h in handles))
        took = time.perf_counter() - start
        cpu = time.process_time() - cpu
    assert results == [i + 3 for i in range(runs)]
    return runs / took, cpu / took


def start_workers(url: str, workers: int) -> list[subprocess.Popen[str]]:
    """`workers` worker processes serving the store, each ready (it said so)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url],
            cwd=Path(__file__).resolve().parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return procs


def worker_throughput(url: str, workers: int, runs: int, tag: str) -> tuple[float, float]:
    """`client_runs` with `workers` worker processes serving the store."""
    procs = start_workers(url, workers)
    try:
        return asyncio.run(client_runs(url, runs, tag))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=60)


async def enqueue_runs(url: str, runs: int, tag: str) -> float:
    """Seconds the client process (without the code) takes to start `runs` workflows
    handed to the workers (no wait for their results)."""
    async with Runtime(url, registry=Registry(), recover=False) as rt:
        start = time.perf_counter()
        await asyncio.gather(
            *(rt.start("pg_tp_flow", i, run_id=f"pre-{tag}-{i}") for i in range(runs))
        )
        return time.perf_counter() - start


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these (live, local) processes so far; 0 for one gone."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def backlog_throughput(
    url: str, workers: int, runs: int, tag: str
) -> tuple[float, float, float, float]:
    """(runs/s of `workers` worker processes draining a backlog, runs/s of the client
    that enqueued it, the workers' and the server's CPU seconds per wall second while
    they drained it: the server's on a local server only, else 0). The workers start and
    are stopped (SIGSTOP) while the client
    starts `runs` workflows handed to them; they are let go (SIGCONT) at once, and the
    time until every run completed is read from the store (a count every 20 ms on a
    connection of its own): the workers' throughput, without the client beside them."""
    procs = start_workers(url, workers)
    try:
        for proc in procs:
            os.kill(proc.pid, signal.SIGSTOP)
        enqueue = asyncio.run(enqueue_runs(url, runs, tag))
        with psycopg.connect(url, autocommit=True) as conn:
            server = [
                int(row[0])
                for row in conn.execute("SELECT pid FROM pg_stat_activity").fetchall()
                if row[0] is not None
            ]
            pids = [proc.pid for proc in procs]
            cpu = _cpu_seconds(pids), _cpu_seconds(server)
            start = time.perf_counter()
            for proc in procs:
                os.kill(proc.pid, signal.SIGCONT)
            while True:  # (through the status index: a cheap look)
                row = conn.execute(
                    "SELECT count(*) FROM perdure.runs WHERE status = 'running' AND run_id LIKE %s",
                    (f"pre-{tag}-%",),
                ).fetchone()
                if row is not None and row[0] == 0:
                    break
                time.sleep(0.02)
            took = time.perf_counter() - start
            used = _cpu_seconds(pids) - cpu[0], _cpu_seconds(server) - cpu[1]
            row = conn.execute(
                "SELECT count(*) FROM perdure.runs WHERE status = 'completed' AND run_id LIKE %s",
                (f"pre-{tag}-%",),
            ).fetchone()
            assert row is not None and row[0] == runs, f"{row} of {runs} runs completed"
        return runs / took, runs / enqueue, used[0] / took, used[1] / took
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=60)


def peer(python: str, workload: str, url: str, steps: int, workflows: int) -> dict[str, float]:
    """One peer workload in a fresh process of `python` (bench/pg_peer.py)."""
    out = subprocess.run(
        [
            python,
            str(Path(__file__).resolve().parent / "pg_peer.py"),
            workload,
            url,
            "--n",
            str(steps),
            "--workflows",
            str(workflows),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--tp-runs", type=int, default=1000)
    parser.add_argument("--peer-python", default=None)
    parser.add_argument(
        "--backlog",
        action="store_true",
        help="also: the workers drain runs enqueued before they run (without the client)",
    )
    args = parser.parse_args()
    make_fanout()
    make_async_fanout()
    make_flow(args.steps)
    url = os.environ.get("PERDURE_TEST_POSTGRES")
    server = None if url else TemporaryPostgres().start()
    try:
        url = url or server.url  # type: ignore[union-attr]
        raw = raw_commit(url, 1000)
        steps, commits = asyncio.run(per_step(url, args.steps, args.rounds))
        print(f"raw PostgreSQL commit (INSERT, autocommit), median: {raw * 1e6:7.0f} us")
        print(
            f"perdure workflow step on PostgreSQL ({args.steps} steps x {args.rounds}): "
            + ", ".join(f"{s * 1e6:.0f}" for s in steps)
            + f" us per step (median {statistics.median(steps) * 1e6:.0f}; "
            f"{commits:.2f} commits per step; "
            f"{statistics.median(steps) / raw:.1f}x the raw commit)"
        )
        with tempfile.TemporaryDirectory() as folder:
            lmdb_steps, _ = asyncio.run(per_step(str(Path(folder) / "store"), args.steps, 1))
        print(
            f"  the same steps on the embedded LMDB store (perdure's runtime without "
            f"PostgreSQL): {lmdb_steps[0] * 1e6:.0f} us per step"
        )
        took = 0.0
        if args.workflows:
            sync_took = asyncio.run(many_workflows(url, args.workflows))
            print(
                f"{args.workflows} concurrent workflows of 3 tasks, one process, sync code "
                f"(a thread per body and task): {sync_took:.2f} s"
            )
            took = asyncio.run(many_workflows(url, args.workflows, "pg_bench_afanout"))
            print(
                f"{args.workflows} concurrent workflows of 3 tasks, one process, async code "
                f"(as the peers' fan-out): {took:.2f} s"
            )
            with tempfile.TemporaryDirectory() as folder:
                floor = asyncio.run(
                    many_workflows(str(Path(folder) / "store"), args.workflows, "pg_bench_afanout")
                )
            print(
                f"  the same async workflows on the embedded LMDB store (perdure's runtime "
                f"without PostgreSQL): {floor:.2f} s (PostgreSQL costs {took / floor:.2f}x)"
            )
        if args.peer_python:
            mine = statistics.median(steps)
            for system in ("langgraph", "dbos"):
                seq = peer(args.peer_python, f"{system}-seq", url, args.steps, args.workflows)
                print(
                    f"{system} on PostgreSQL, {args.steps} sequential steps: "
                    f"{seq['per_step'] * 1e6:.0f} us per step (perdure/{system} "
                    f"{mine / seq['per_step']:.2f})"
                )
                if args.workflows:
                    fan = peer(
                        args.peer_python, f"{system}-fanout", url, args.steps, args.workflows
                    )
                    print(
                        f"{system} on PostgreSQL, {args.workflows} workflows of 3 steps: "
                        f"{fan['seconds']:.2f} s ({fan['seconds'] / took:.2f}x perdure's async "
                        f"time, {fan['seconds'] / sync_took:.2f}x its sync time)"
                    )
        counts = [int(k) for k in args.workers.split(",") if k.strip()]
        rates = {}
        for k in counts:
            rates[k], share = worker_throughput(url, k, args.tp_runs, f"w{k}")
            ratio = f" ({rates[k] / rates[counts[0]]:.2f}x {counts[0]})" if k != counts[0] else ""
            print(
                f"{args.tp_runs} workflows of 3 tasks, client + {k} worker process(es): "
                f"{rates[k]:.0f} runs/s{ratio}; the client's CPU {share:.0%} of the time"
            )
        if args.backlog:
            drained = {}
            for k in counts:
                drained[k], enqueued, mine, server_cpu = backlog_throughput(
                    url, k, args.tp_runs, f"b{k}"
                )
                ratio = (
                    f" ({drained[k] / drained[counts[0]]:.2f}x {counts[0]})"
                    if k != counts[0]
                    else ""
                )
                print(
                    f"{args.tp_runs} workflows of 3 tasks enqueued first (client alone: "
                    f"{enqueued:.0f} runs/s), then drained by {k} worker process(es): "
                    f"{drained[k]:.0f} runs/s{ratio}; CPU seconds per second: workers "
                    f"{mine:.2f}, PostgreSQL server {server_cpu:.2f}"
                )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
