"""The application the worker processes of bench/bench_postgres.py serve: a workflow of
3 sequential no-op tasks (``pg_tp_flow``), registered in the default registry."""

from __future__ import annotations

from perdure import entrypoint, task


@task
def pg_tp_step(i: int) -> int:
    return i + 1


@entrypoint(name="pg_tp_flow")
def pg_tp_flow(n: int) -> int:
    value = n
    for _ in range(3):
        value = pg_tp_step(value).result()
    return value
