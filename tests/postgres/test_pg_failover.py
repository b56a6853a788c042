"""The failover campaign: 3 worker processes share a PostgreSQL store and race on the same
idempotency keys (workflows of three tasks, functions that retry, workflows that sleep
durably and then wait on an interrupt that any worker resumes); a random worker is
SIGKILLed and restarted again and again (30 kills; $PERDURE_FAILOVER_KILLS for more).

Then every run completes (the survivors take over the dead workers' runs when their
leases expire), every key has one run, no run has a gap or a task completed twice, and
no body ran more often than once plus the kills.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from perdure.eventlog import RunCompleted, TaskCompleted, decode
from tests.support.kill_loop import Child, KillLoop, campaign_seed, wait_until

WORKER = Path(__file__).resolve().parent / "_failover_worker.py"
KEYS = 60


def _completed(url: str) -> int:
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FROM perdure.runs WHERE status = 'completed'"
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0  # no worker has opened the store yet (a loaded machine starts them slowly)
    return int(row[0]) if row is not None else 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_runs_survive_repeated_worker_kills(pg_store: str, tmp_path: Path) -> None:
    kills_wanted = int(os.environ.get("PERDURE_FAILOVER_KILLS", "30"))
    loop = KillLoop(campaign_seed(15), name="failover campaign")
    marks = tmp_path / "marks"
    marks.touch()

    def spawn() -> Child:
        argv = [sys.executable, str(WORKER), pg_store, str(KEYS), str(marks)]
        return loop.start(argv, tmp_path / f"worker-{loop.starts}.log")

    workers = [spawn() for _ in range(3)]
    try:
        time.sleep(2.0)  # the workers start their runs (real processes, real time)
        while loop.kills < kills_wanted:
            victim = loop.rng.randrange(3)
            assert loop.kill(workers[victim]), loop.report("a worker exited", workers[victim])
            workers[victim] = spawn()
            time.sleep(loop.rng.uniform(0.3, 0.9))
        wait_until(lambda: _completed(pg_store) >= KEYS, 180.0, interval=0.2)
    finally:
        for worker in workers:
            worker.kill()
    kills = loop.kills

    with psycopg.connect(pg_store) as conn:
        keys = conn.execute("SELECT key, run_id FROM perdure.idempotency").fetchall()
        runs = conn.execute("SELECT run_id, status, idempotency_key FROM perdure.runs").fetchall()
        rows = conn.execute(
            "SELECT run_id, seq, body FROM perdure.events ORDER BY run_id, seq"
        ).fetchall()
    assert sorted(k for k, _ in keys) == sorted(f"k{k}" for k in range(KEYS))
    assert len(runs) == KEYS  # one run per key, however many workers raced for it
    assert {r[0]: r[2] for r in runs} == {run_id: key for key, run_id in keys}
    not_done = [r for r in runs if r[1] != "completed"]
    assert not not_done, loop.report(
        f"{len(not_done)} runs did not complete:\n{_where_they_stand(pg_store, not_done, rows)}"
    )

    by_run: dict[str, list[tuple[int, bytes]]] = {}
    for run_id, seq, body in rows:
        by_run.setdefault(run_id, []).append((seq, bytes(body)))
    for run_id, records in by_run.items():
        events = [decode(run_id, seq, body) for seq, body in records]
        assert [e.seq for e in events] == list(range(len(events))), run_id
        positions = [e.position for e in events if isinstance(e, TaskCompleted)]
        assert len(positions) == len(set(positions)), f"{run_id}: a task completed twice"
        assert sum(isinstance(e, RunCompleted) for e in events) == 1, run_id

    executions = Counter(
        (run_id, what)
        for run_id, what, _pid in (line.split() for line in marks.read_text().splitlines())
    )
    assert executions, "no body ran"
    again = sum(n - 1 for n in executions.values())
    print(f"{kills} kills, {len(executions)} bodies, {again} re-executions")  # -s shows it
    assert max(executions.values()) <= 1 + kills


def _where_they_stand(url: str, not_done: list[Any], rows: list[Any]) -> str:
    """For a failure report: each unfinished run's lease, inbox and last events."""
    lines = []
    with psycopg.connect(url) as conn:
        for run_id, status, key in not_done:
            lease = conn.execute(
                "SELECT owner, epoch, extract(epoch FROM lease_until - now()) "
                "FROM perdure.runs WHERE run_id = %s",
                (run_id,),
            ).fetchone()
            inbox = conn.execute(
                "SELECT count(*) FROM perdure.inbox WHERE run_id = %s", (run_id,)
            ).fetchone()
            last = [
                type(decode(r, seq, bytes(body))).__name__ for r, seq, body in rows if r == run_id
            ][-4:]
            lines.append(
                f"  {run_id} ({key}, {status}): owner/epoch/lease left {lease}, "
                f"inbox {inbox[0] if inbox else '?'}, last events {last}"
            )
    return "\n".join(lines)
