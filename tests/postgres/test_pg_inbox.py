"""Messages to a run from another process, and waits on a run another process drives
(real processes on one PostgreSQL store)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().parent / "_inbox_child.py"


def _spawn(url: str, run_id: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, run_id, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _line(proc: subprocess.Popen[str], *starts: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    while line and not line.startswith(starts):  # skip log lines
        line = proc.stdout.readline()
    return line.strip()


def _finish(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.returncode is not None:
            continue
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(120)
def test_a_resume_from_another_process_reaches_the_driver_and_its_wait_returns(
    pg_store: str,
) -> None:
    a = _spawn(pg_store, "inbox-run-1", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-1", "resume")  # b has no code for the run
        # A applied the resume and finished the run; b's wait returned A's result.
        assert _line(b, "result", "error") == f"result completed A-1 yes by {a.pid}"
        out, _ = a.communicate(timeout=30)
        assert "lost 0" in out.splitlines()  # A kept the run throughout
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_a_cancel_from_another_process_reaches_the_driver(pg_store: str) -> None:
    a = _spawn(pg_store, "inbox-run-2", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-2", "cancel")
        assert _line(b, "result", "error").startswith("error RunCancelledError")
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_continue_run_from_another_process_reaches_the_driver(pg_store: str) -> None:
    a = _spawn(pg_store, "inbox-run-3", "drive")
    b = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        b = _spawn(pg_store, "inbox-run-3", "cancel-continue")
        assert _line(b, "cancelled", "error") == "cancelled cancelled"
        # Reopened where A drives it (before, b's continue_run tried to drive the run
        # itself and failed: another process holds the lease).
        assert _line(b, "continued", "error") == "continued waiting"
        assert _line(b, "result", "error") == f"result completed A-1 yes by {a.pid}"
        out, _ = a.communicate(timeout=30)
        assert "lost 0" in out.splitlines()
    finally:
        _finish(*(p for p in (a, b) if p is not None))


@pytest.mark.timeout(120)
def test_a_message_whose_taker_died_before_applying_it_is_applied_by_the_next_driver(
    pg_store: str,
) -> None:
    a = _spawn(pg_store, "inbox-run-4", "drive-die")
    b = c = None
    try:
        assert _line(a, "waiting", "error") == "waiting waiting"
        c = _spawn(pg_store, "inbox-run-4", "serve")  # has the code: takes the run over
        assert _line(c, "serving") == "serving"
        b = _spawn(pg_store, "inbox-run-4", "resume")
        a.wait(timeout=60)  # (its standard input stays open: only the kill ends it)
        a.communicate()
        assert a.returncode == -9  # it took the resume, and died before applying it
        # C took the run over when A's lease expired, found the message A had taken but
        # never answered, applied it, and answered B (before, the message was gone).
        assert _line(b, "result", "error") == f"result completed A-1 yes by {c.pid}"
        b.communicate(timeout=30)
        c.communicate("", timeout=30)
    finally:
        _finish(*(p for p in (a, b, c) if p is not None))
