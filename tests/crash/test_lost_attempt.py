"""An attempt whose process is SIGKILLed in its first moments is in the log (issue 12, item 5).

A child process (`_lost_attempt_child.py`) runs a task attempt that writes a
``begin`` line to a journal and blocks; this process SIGKILLs the child as soon
as that line is there. The child's attempt linger is an hour, so an attempt
start that waits to share a commit is certainly not committed by then. A
second child recovers the run. The log must show the attempt that ran (started,
then failed as ``AttemptLost``), and the next attempt must have a higher number
than every attempt whose body began, in both durability modes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perdure import LmdbEventLog
from perdure.eventlog import Event, TaskAttemptFailed, TaskAttemptStarted, TaskCompleted

CHILD = Path(__file__).with_name("_lost_attempt_child.py")
#: kind -> (run id, the task whose attempt is killed, attempt number killed)
CASES = {
    "function": ("lost-function", "lost_fn", 0),
    "retry": ("lost-retry", "lost_retry", 1),
    "workflow": ("lost-workflow", "second", 1),
    "workflow0": ("lost-workflow0", "second", 0),
}


def child(tmp_path: Path, durability: str, kind: str, phase: str) -> subprocess.Popen[str]:
    with (tmp_path / f"{phase}.log").open("w") as stderr:
        return subprocess.Popen(
            [
                sys.executable,
                os.fspath(CHILD),
                os.fspath(tmp_path / "store"),
                os.fspath(tmp_path / "journal"),
                durability,
                kind,
                phase,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )


def begins(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "journal"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [line.split() for line in lines if line.startswith("begin ")]


async def read_events(store: Path, run_id: str) -> list[Event]:
    log = LmdbEventLog(store, read_only=True)
    try:
        return await log.read(run_id)
    finally:
        await log.close()


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("durability", ["fsync", "process"])
def test_an_attempt_killed_at_once_is_recorded_and_not_reused(
    tmp_path: Path, durability: str, kind: str
) -> None:
    run_id, name, hot = CASES[kind]
    proc = child(tmp_path, durability, kind, "kill")
    deadline = time.monotonic() + 60
    while len(begins(tmp_path)) < hot + 1:
        assert proc.poll() is None, f"child exited early; see {tmp_path}/kill.log"
        assert time.monotonic() < deadline, "the hot attempt never began"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.stdout is not None
    proc.stdout.close()

    finish = child(tmp_path, durability, kind, "finish")
    out, _ = finish.communicate(timeout=60)
    assert finish.returncode == 0, f"finishing child failed; see {tmp_path}/finish.log"
    (line,) = [x for x in out.splitlines() if x.startswith("RESULT ")]
    outcome = json.loads(line.split(" ", 1)[1])
    assert outcome["status"] == "completed", outcome

    events = asyncio.run(read_events(tmp_path / "store", run_id))
    mine = [
        e
        for e in events
        if isinstance(e, (TaskAttemptStarted, TaskAttemptFailed, TaskCompleted)) and e.name == name
    ]
    starts = [e.attempt for e in mine if isinstance(e, TaskAttemptStarted)]
    failures = [(e.attempt, e.error_type) for e in mine if isinstance(e, TaskAttemptFailed)]
    # The killed attempt is in the log: started, then lost with its process.
    assert hot in starts, f"attempt {hot} ran but the log shows starts {starts}"
    assert (hot, "AttemptLost") in failures, failures
    # Every attempt whose body began has a recorded start, and the attempt that
    # finished the run came after all of them.
    ran = [int(b[2]) for b in begins(tmp_path)]
    if kind.startswith("workflow"):  # a task has no context: count its bodies instead
        assert len(ran) == hot + 2 and starts == list(range(hot + 2)), (ran, starts)
    else:
        assert ran == list(range(hot + 2)), ran
        assert outcome["result"] == hot + 1
        assert starts == list(range(hot + 2)), starts
    assert isinstance(mine[-1], TaskCompleted)
