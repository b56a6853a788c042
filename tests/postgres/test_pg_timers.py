"""Timers on a store shared by processes fire exactly once cluster-wide (real processes).

Each due timer is claimed, with its run's lease, by one process that has the run's code
(`PostgresEventLog.claim_due_timers`: ``FOR UPDATE SKIP LOCKED``); a run whose process
died is taken over when its lease expires, and its due timers fire there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from perdure.eventlog import TimerFired, TimerSet, decode

CHILD = Path(__file__).resolve().parent / "_timer_child.py"


def _spawn(url: str, runs: int, lease_ttl: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, str(runs), str(lease_ttl)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _line(proc: subprocess.Popen[str], *starts: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and not line.startswith(starts):
        line = proc.stdout.readline()
    return line.strip()


def _start(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("start\n")
    proc.stdin.flush()
    assert _line(proc, "started") == "started"


def _statuses(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status FROM perdure.runs").fetchall()
    return Counter(status for (status,) in rows)


def _released(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM perdure.runs WHERE owner IS NULL AND status = 'waiting'"
        ).fetchone()
    return int(row[0]) if row is not None else 0


def _wait_completed(url: str, count: int, limit: float) -> float:
    started = time.monotonic()
    while _statuses(url)["completed"] < count and time.monotonic() - started < limit:
        time.sleep(0.05)
    return time.monotonic() - started


def _timers(url: str) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(timers set, timers fired) per (run, timer id), from the runs' logs."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT run_id, seq, body FROM perdure.events").fetchall()
    set_, fired = Counter[tuple[str, str]](), Counter[tuple[str, str]]()
    for run_id, seq, body in rows:
        event = decode(run_id, seq, bytes(body))
        if isinstance(event, TimerSet):
            set_[run_id, event.timer_id] += 1
        elif isinstance(event, TimerFired):
            fired[run_id, event.timer_id] += 1
    return set_, fired


def _stop(*procs: subprocess.Popen[str]) -> list[tuple[int, int]]:
    stats = []
    for proc in procs:
        if proc.returncode is not None:
            continue
        out, _ = proc.communicate("", timeout=60)
        line = next(x for x in out.splitlines() if x.startswith("stats"))
        stats.append((int(line.split()[1]), int(line.split()[2])))
    return stats


@pytest.mark.timeout(180)
def test_each_due_timer_is_claimed_by_one_process_of_three(pg_store: str) -> None:
    runs = 20
    procs = [_spawn(pg_store, runs, 2.0) for _ in range(3)]
    try:
        for proc in procs:
            assert _line(proc, "ready") == "ready"
        _start(procs[0])
        _wait_completed(pg_store, 2 * runs, 60)
        stats = _stop(*procs)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
    assert _statuses(pg_store) == {"completed": 2 * runs}
    set_, fired = _timers(pg_store)
    assert set(fired) == set(set_) and len(fired) >= 3 * runs
    assert max(fired.values()) == 1  # the log: each timer fired once
    delivered = [d for d, _ in stats]
    print("timers", len(fired), "delivered per process", delivered)  # -s shows it
    # Processes took timers of runs another one started and let go while they slept
    # (before, a process only woke for the timers its own runs set: [2 * runs, 0, 0]).
    # Which ones is up to the scheduler: on a loaded machine one of the three may poll
    # too late to win any, so the check asks for two, one of them not the starter.
    assert sum(1 for d in delivered if d) >= 2 and any(delivered[1:]), delivered
    # ... and no process was handed the timers of runs another process held: actors
    # starting only to find the run's lease taken are rare (a lease that expired under
    # load), where delivering every due timer everywhere would lose about two per timer.
    lost = sum(lost for _, lost in stats)
    print("leases lost", lost)
    assert lost <= len(fired) // 10


@pytest.mark.timeout(180)
def test_the_due_timers_of_a_killed_process_fire_in_the_survivor(pg_store: str) -> None:
    runs, ttl = 10, 0.5
    survivor = _spawn(pg_store, runs, ttl)
    victim = None
    try:
        assert _line(survivor, "ready") == "ready"
        # The victim is killed once some of its runs sleep released (their timers would
        # wake them there), while others still run under its leases.
        victim = _spawn(pg_store, runs, ttl)
        assert _line(victim, "ready") == "ready"
        _start(victim)
        while not _released(pg_store):  # runs asleep, let go by their process
            time.sleep(0.01)
        victim.kill()
        victim.communicate(timeout=30)
        killed_at = time.monotonic()
        took = _wait_completed(pg_store, 2 * runs, 60)
        stats = _stop(survivor)
    finally:
        for proc in (survivor, victim):
            if proc is not None and proc.returncode is None:
                proc.kill()
                proc.communicate()
    print(f"all runs done {took:.2f} s after the kill (lease_ttl {ttl} s)")  # -s shows it
    assert killed_at
    assert _statuses(pg_store) == {"completed": 2 * runs}
    set_, fired = _timers(pg_store)
    assert set(fired) == set(set_) and max(fired.values()) == 1
    assert stats[0][0] >= 1  # the survivor fired timers of the victim's runs
