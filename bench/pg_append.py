"""`PostgresEventLog.append` alone, next to the physical floor on the same server.

On a throwaway cluster (fsync and synchronous_commit on), or on $PERDURE_TEST_POSTGRES:

- sequential: one run, one event per append, each awaited before the next (what a
  workflow step pays), against a raw ``INSERT`` in autocommit (one round trip, one
  synced commit) on one connection;
- concurrent: ``--runs`` runs, each appending ``--per-run`` events one at a time, all
  runs at once (what 1,000 concurrent workflows pay), against the same number of raw
  single-row ``INSERT`` commits from 10 concurrent connections.

    python bench/pg_append.py [--n 1000] [--runs 1000] [--per-run 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import psycopg
import psycopg_pool

from perdure.eventlog import RunStarted, TaskCompleted
from perdure.eventlog._postgres import PostgresEventLog
from perdure.testing.postgres import TemporaryPostgres

PAYLOAD = "r" * 120


def event(run_id: str, seq: int) -> TaskCompleted:
    return TaskCompleted(
        run_id=run_id,
        seq=seq,
        ts=time.time(),
        position=str(seq),
        name="step",
        input_digest="d",
        result=PAYLOAD,
    )


def start(run_id: str) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        seq=0,
        ts=time.time(),
        target="bench",
        kind="function",
        input=None,
        input_digest="d",
    )


async def raw_sequential(url: str, n: int) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS raw_seq (id bigint, body bytea)")
        body = b"x" * 200
        times = []
        for i in range(n + 50):
            t = time.perf_counter()
            await conn.execute("INSERT INTO raw_seq VALUES (%s, %s)", (i, body))
            times.append(time.perf_counter() - t)
        await conn.execute("DROP TABLE raw_seq")
    return statistics.median(times[50:])


async def raw_concurrent(url: str, runs: int, per_run: int) -> float:
    async with psycopg_pool.AsyncConnectionPool(
        url, min_size=10, max_size=10, kwargs={"autocommit": True}, open=False
    ) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS raw_conc (id bigint, body bytea)")
        body = b"x" * 200

        async def one(r: int) -> None:
            for i in range(per_run):
                async with pool.connection() as conn:
                    await conn.execute("INSERT INTO raw_conc VALUES (%s, %s)", (r * 10 + i, body))

        t = time.perf_counter()
        await asyncio.gather(*(one(r) for r in range(runs)))
        took = time.perf_counter() - t
        async with pool.connection() as conn:
            await conn.execute("DROP TABLE raw_conc")
    return runs * per_run / took


async def log_sequential(url: str, n: int, schema: str) -> float:
    log = PostgresEventLog(url, schema=schema)
    try:
        await log.append("seq", 0, [start("seq")])
        times = []
        for seq in range(1, n + 51):
            e = event("seq", seq)
            t = time.perf_counter()
            await log.append("seq", seq, [e])
            times.append(time.perf_counter() - t)
    finally:
        await log.close()
    return statistics.median(times[50:])


async def log_concurrent(url: str, runs: int, per_run: int, schema: str) -> float:
    log = PostgresEventLog(url, schema=schema)
    try:
        await log.append("warm", 0, [start("warm")])

        async def one(r: int) -> None:
            run_id = f"c{r}"
            await log.append(run_id, 0, [start(run_id)])
            for seq in range(1, per_run):
                await log.append(run_id, seq, [event(run_id, seq)])

        t = time.perf_counter()
        await asyncio.gather(*(one(r) for r in range(runs)))
        took = time.perf_counter() - t
    finally:
        await log.close()
    return runs * per_run / took


async def main_async(args: argparse.Namespace, url: str) -> None:
    raw = await raw_sequential(url, args.n)
    mine = await log_sequential(url, args.n, "pgappend_seq")
    print(
        f"sequential: raw INSERT commit {raw * 1e6:.0f} us, append {mine * 1e6:.0f} us "
        f"({mine / raw:.2f}x the raw commit)"
    )
    raw_rate = await raw_concurrent(url, args.runs, args.per_run)
    rate = await log_concurrent(url, args.runs, args.per_run, "pgappend_conc")
    print(
        f"concurrent ({args.runs} runs x {args.per_run} appends): raw INSERT commits "
        f"{raw_rate:.0f}/s (10 connections), appends {rate:.0f}/s ({rate / raw_rate:.2f}x raw)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--per-run", type=int, default=4)
    args = parser.parse_args()
    url = os.environ.get("PERDURE_TEST_POSTGRES")
    server = None if url else TemporaryPostgres().start()
    try:
        asyncio.run(main_async(args, url or server.url))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
