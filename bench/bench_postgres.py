"""Per-step latency of a workflow on a PostgreSQL store, next to a raw PostgreSQL commit.

A workflow of N sequential tasks (each task's result durable before the next
starts) on a throwaway cluster (fsync and synchronous_commit on), or on
$PERDURE_TEST_POSTGRES; the raw figure is one INSERT + COMMIT on the same server
through psycopg, sequentially.

    python bench/bench_postgres.py [--steps 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
