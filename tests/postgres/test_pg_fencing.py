"""Fencing and takeover with real processes: a paused owner's late appends never land; a
dead owner's run is taken over by a process that is already running.

Process A drives a workflow on a PostgreSQL store (lease_ttl 1 s). The test
SIGSTOPs A inside a step, waits until A's lease has expired by the database's
clock, and starts process B, whose recovery takes the run over and finishes
it. Then it SIGCONTs A: A's step returns and A appends - fenced. The run's log
is byte for byte the one B left, and A reports the lost lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

CHILD = Path(__file__).resolve().parent / "_fence_child.py"


def _events(url: str, run_id: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT seq, body FROM perdure.events WHERE run_id = %s ORDER BY seq", (run_id,)
        ).fetchall()
    return [(seq, bytes(body)) for seq, body in rows]


def _wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _spawn(url: str, mode: str, marks: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, "fenced-run", mode, str(marks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(180)
def test_a_paused_owner_cannot_append_after_another_process_took_over(
    pg_store: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.touch()
    a = _spawn(pg_store, "start", marks)
    b: subprocess.Popen[str] | None = None
    try:
        # A is inside its second step: its first step's result is in the log.
        _wait_for("A's second step", lambda: f"{a.pid} 1" in marks.read_text())
        os.kill(a.pid, signal.SIGSTOP)

        def expired() -> bool:
            with psycopg.connect(pg_store) as conn:
                row = conn.execute(
                    "SELECT lease_until < now() FROM perdure.runs WHERE run_id = 'fenced-run'"
                ).fetchone()
            return row is not None and bool(row[0])

        _wait_for("A's lease to expire", expired)
        b = _spawn(pg_store, "take-over", marks)
        assert b.stdout is not None
        line = b.stdout.readline()
        while line and not line.startswith(("result", "error")):  # skip its log lines
            line = b.stdout.readline()
        assert line.strip() == "result [0, 1, 2, 3, 4, 5]", line
        written_by_b = _events(pg_store, "fenced-run")
        with psycopg.connect(pg_store) as conn:
            owner = conn.execute(
                "SELECT owner, epoch FROM perdure.runs WHERE run_id = 'fenced-run'"
            ).fetchone()
        assert owner is not None and f":{b.pid}:" in owner[0] and owner[1] >= 2

        os.kill(a.pid, signal.SIGCONT)
        out, err = a.communicate(timeout=60)
        said = [line for line in out.splitlines() if line.startswith(("result", "error"))]
        assert said == ["error LeaseLostError"], (out, err)
        assert _events(pg_store, "fenced-run") == written_by_b  # nothing of A's landed
        steps_by = [line.split() for line in marks.read_text().splitlines() if "ready" not in line]
        assert {pid for pid, _ in steps_by} == {str(a.pid), str(b.pid)}
        assert [int(i) for pid, i in steps_by if pid == str(b.pid)][-1] == 5
    finally:
        for proc in (a, b):
            if proc is not None:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                proc.communicate(timeout=30)


def _read_result(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and not line.startswith(("result", "error")):  # skip its log lines
        line = proc.stdout.readline()
    return line.strip()


@pytest.mark.timeout(180)
def test_a_running_process_takes_over_a_killed_owners_run_within_the_lease(
    pg_store: str, tmp_path: Path
) -> None:
    from perdure.eventlog import TaskCompleted, decode

    marks = tmp_path / "marks"
    marks.touch()
    hold = tmp_path / "marks.hold"
    hold.touch()  # A stays inside step 1 until the test lets go
    a = _spawn(pg_store, "start", marks)
    b: subprocess.Popen[str] | None = None
    try:
        _wait_for("A's second step", lambda: f"{a.pid} 1" in marks.read_text())
        b = _spawn(pg_store, "take-over", marks)  # up and watching before A dies
        _wait_for("B to be open", lambda: f"{b.pid} ready" in marks.read_text())
        a.kill()
        a.communicate(timeout=30)
        killed = time.monotonic()
        hold.unlink()

        def b_stepped() -> bool:
            return any(
                line.startswith(f"{b.pid} ") and "ready" not in line  # type: ignore[union-attr]
                for line in marks.read_text().splitlines()
            )

        _wait_for("B to take over", b_stepped, timeout=30)
        took = time.monotonic() - killed
        print(f"takeover {took:.2f} s after the kill")  # shown with -s
        assert took < 1.0 + 2.0, f"takeover took {took:.2f} s (lease_ttl 1 s)"
        assert _read_result(b) == "result [0, 1, 2, 3, 4, 5]"
        events = [decode("fenced-run", seq, body) for seq, body in _events(pg_store, "fenced-run")]
        assert [e.seq for e in events] == list(range(len(events)))
        completed = [e.position for e in events if isinstance(e, TaskCompleted)]
        assert len(completed) == len(set(completed)) == 6  # each step completed once
    finally:
        for proc in (a, b):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=30)
