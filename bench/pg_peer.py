"""The peers' side of bench/bench_postgres.py: LangGraph (PostgresSaver) and DBOS on the
same PostgreSQL server. Imports nothing from perdure; run under an interpreter that has
them::

    python3 -m venv /tmp/venv-lgpg
    /tmp/venv-lgpg/bin/pip install langgraph langgraph-checkpoint-postgres \\
        'psycopg[binary]' psycopg-pool dbos
    /tmp/venv-lgpg/bin/python bench/pg_peer.py langgraph-seq URL --n 200

Workloads (one per call, fresh process; prints one JSON line):

- ``langgraph-seq``: one workflow of ``--n`` sequential no-op tasks, sync code and
  ``PostgresSaver`` with ``durability="sync"`` (each checkpoint written before the
  next task starts, like perdure's steps): seconds per step.
- ``langgraph-fanout``: ``--workflows`` concurrent workflows of 3 tasks, async code
  and ``AsyncPostgresSaver`` on a connection pool: seconds.
- ``dbos-seq`` / ``dbos-fanout``: the same on DBOS, its system database on the server
  (each step's output committed before the workflow goes on); fan-out starts the
  workflows with ``DBOS.start_workflow`` and waits for every result.

Each workload uses a fresh database (``--db``) created on the server given by URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import psycopg


def fresh_db(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def langgraph_seq(url: str, n: int) -> dict[str, Any]:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.func import entrypoint, task

    @task
    def noop(i: int) -> int:
        return i

    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()

        @entrypoint(checkpointer=saver)
        def flow(k: int) -> int:
            return sum(noop(i).result() for i in range(k))

        flow.invoke(3, {"configurable": {"thread_id": "warm"}}, durability="sync")
        start = time.perf_counter()
        flow.invoke(n, {"configurable": {"thread_id": "seq"}}, durability="sync")
        took = time.perf_counter() - start
    return {"per_step": took / n}


def langgraph_fanout(url: str, workflows: int) -> dict[str, Any]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.func import entrypoint, task
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    @task
    async def noop(i: int) -> int:
        return i

    async def main() -> float:
        async with AsyncConnectionPool(
            url, max_size=10, kwargs={"autocommit": True, "row_factory": dict_row}
        ) as pool:
            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await saver.setup()

            @entrypoint(checkpointer=saver)
            async def flow(k: int) -> int:
                total = 0
                for i in range(3):
                    total += await noop(k + i)
                return total

            await flow.ainvoke(0, {"configurable": {"thread_id": "warm"}}, durability="sync")
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    flow.ainvoke(w, {"configurable": {"thread_id": f"t{w}"}}, durability="sync")
                    for w in range(workflows)
                )
            )
            return time.perf_counter() - start

    return {"seconds": asyncio.run(main())}


def _dbos(url: str) -> Any:
    from dbos import DBOS

    return DBOS(config={"name": "pgbench", "system_database_url": url})


def dbos_seq(url: str, n: int) -> dict[str, Any]:
    from dbos import DBOS

    _dbos(url)

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def flow(k: int) -> int:
        return sum(noop(i) for i in range(k))

    DBOS.launch()
    try:
        flow(3)
        start = time.perf_counter()
        flow(n)
        took = time.perf_counter() - start
    finally:
        DBOS.destroy()
    return {"per_step": took / n}


def dbos_fanout(url: str, workflows: int) -> dict[str, Any]:
    from dbos import DBOS

    _dbos(url)

    @DBOS.step()
    def noop(i: int) -> int:
        return i

    @DBOS.workflow()
    def flow(k: int) -> int:
        return sum(noop(k + i) for i in range(3))

    DBOS.launch()
    try:
        flow(0)
        start = time.perf_counter()
        handles = [DBOS.start_workflow(flow, w) for w in range(workflows)]
        for handle in handles:
            handle.get_result()
        took = time.perf_counter() - start
    finally:
        DBOS.destroy()
    return {"seconds": took}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("url")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--db", default="peer_bench")
    args = parser.parse_args()
    url = fresh_db(args.url, args.db)
    run = {
        "langgraph-seq": lambda: langgraph_seq(url, args.n),
        "langgraph-fanout": lambda: langgraph_fanout(url, args.workflows),
        "dbos-seq": lambda: dbos_seq(url, args.n),
        "dbos-fanout": lambda: dbos_fanout(url, args.workflows),
    }[args.workload]
    print(json.dumps({"workload": args.workload, **run()}), flush=True)


if __name__ == "__main__":
    main()
