"""Which PostgreSQL driver for `PostgresEventLog`: psycopg 3 (async + psycopg_pool) or asyncpg.

Times the shape of one append: a transaction that advances a run's next_seq
where it still matches (one UPDATE) and inserts one event row (bytea), then
commits - sequentially (latency) and from 64 concurrent tasks (throughput), on a
throwaway cluster with fsync and synchronous_commit on (or $PERDURE_TEST_POSTGRES).

    python bench/pg_drivers.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg_pool

from perdure.testing.postgres import TemporaryPostgres

SCHEMA = """
DROP TABLE IF EXISTS bench_runs, bench_events;
CREATE TABLE bench_runs (run_id text PRIMARY KEY, next_seq bigint NOT NULL);
CREATE TABLE bench_events (run_id text, seq bigint, body bytea, PRIMARY KEY (run_id, seq));
"""
BODY = b'\x02\x00\x00\x00\x00{"t":"TaskCompleted","v":1,"ts":1.0,"result":42}'


async def with_psycopg(url: str, n: int, tasks: int) -> tuple[list[float], float]:
    async with psycopg_pool.AsyncConnectionPool(
        url, min_size=4, max_size=tasks, open=False
    ) as pool:
        await pool.open(wait=True)

        async def append(run: str, seq: int) -> None:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "UPDATE bench_runs SET next_seq = next_seq + 1 "
                    "WHERE run_id = %s AND next_seq = %s",
                    (run, seq),
                )
                assert cur.rowcount == 1
                await conn.execute(
                    "INSERT INTO bench_events (run_id, seq, body) VALUES (%s, %s, %s)",
                    (run, seq, BODY),
                )

        async def setup(runs: list[str]) -> None:
            async with pool.connection() as conn:
                await conn.execute(SCHEMA)
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO bench_runs VALUES (%s, 0)", [(r,) for r in runs]
                    )

        return await measure(setup, append, n, tasks)


async def with_asyncpg(url: str, n: int, tasks: int) -> tuple[list[float], float]:
    pool = await asyncpg.create_pool(url, min_size=4, max_size=tasks)
    try:

        async def append(run: str, seq: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "UPDATE bench_runs SET next_seq = next_seq + 1 "
                    "WHERE run_id = $1 AND next_seq = $2",
                    run,
                    seq,
                )
                assert status == "UPDATE 1"
                await conn.execute(
                    "INSERT INTO bench_events (run_id, seq, body) VALUES ($1, $2, $3)",
                    run,
                    seq,
                    BODY,
                )

        async def setup(runs: list[str]) -> None:
            async with pool.acquire() as conn:
                await conn.execute(SCHEMA)
                await conn.executemany(
                    "INSERT INTO bench_runs VALUES ($1, 0)", [(r,) for r in runs]
                )

        return await measure(setup, append, n, tasks)
    finally:
        await pool.close()


async def measure(
    setup: Callable[[list[str]], Awaitable[None]],
    append: Callable[[str, int], Awaitable[None]],
    n: int,
    tasks: int,
) -> tuple[list[float], float]:
    await setup(["seq", *(f"c{t}" for t in range(tasks))])
    for seq in range(50):  # warm-up (prepared statements, pool)
        await append("seq", seq)
    latencies = []
    for seq in range(50, 50 + n):
        start = time.perf_counter()
        await append("seq", seq)
        latencies.append(time.perf_counter() - start)
    per_task = n // tasks

    async def worker(t: int) -> None:
        for seq in range(per_task):
            await append(f"c{t}", seq)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    throughput = per_task * tasks / (time.perf_counter() - start)
    return latencies, throughput


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=64)
    args = parser.parse_args()
    url = os.environ.get("PERDURE_TEST_POSTGRES")
    server = None if url else TemporaryPostgres().start()
    try:
        url = url or server.url  # type: ignore[union-attr]
        for _round in range(2):  # interleaved, so a slow moment of the machine hits both
            for name, run in (("psycopg", with_psycopg), ("asyncpg", with_asyncpg)):
                lat, tput = asyncio.run(run(url, args.n, args.tasks))
                median = statistics.median(lat) * 1e6
                print(
                    f"{name:8} sequential append txn: median {median:7.0f} us, "
                    f"mean {statistics.fmean(lat) * 1e6:7.0f} us; "
                    f"{args.tasks} concurrent: {tput:7.0f} txn/s"
                )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
