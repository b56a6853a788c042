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
import sys
from pathlib import Path

import pytest

from perdure import LmdbEventLog
from perdure.eventlog import Event, TaskAttemptFailed, TaskAttemptStarted, TaskCompleted
from tests.support.kill_loop import KILL, SPARE, Child, KillLoop, wait_until

CHILD = Path(__file__).with_name("_lost_attempt_child.py")
#: kind -> (run id, the task whose attempt is killed, attempt number killed)
CASES = {
    "function": ("lost-function", "lost_fn", 0),
    "retry": ("lost-retry", "lost_retry", 1),
    "workflow": ("lost-workflow", "second", 1),
    "workflow0": ("lost-workflow0", "second", 0),
}


def child_argv(tmp_path: Path, durability: str, kind: str, phase: str) -> list[str]:
    paths = [os.fspath(p) for p in (CHILD, tmp_path / "store", tmp_path / "journal")]
    return [sys.executable, *paths, durability, kind, phase]


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
    loop = KillLoop(0, name=f"lost attempt ({kind}, {durability})")
    phases = ["kill", "finish"]

    def spawn(n: int) -> Child:
        argv = child_argv(tmp_path, durability, kind, phases[n])
        return loop.start(argv, tmp_path / f"{phases[n]}.log", read_stdout=True)

    def moment(child: Child) -> bool:
        if loop.starts > 1:
            return SPARE
        began = wait_until(lambda: len(begins(tmp_path)) >= hot + 1, 60.0, child)
        assert began, loop.report("the hot attempt never began (or the child exited early)")
        return KILL

    def finished(child: Child, code: int) -> bool:
        assert loop.kills == 1, loop.report(f"the killed child exited by itself ({code})")
        assert code == 0, loop.report("the finishing child failed", child)
        return True

    finish = loop.run(spawn, moment, finished, budget=120.0)
    (line,) = [x for x in finish.lines if x.startswith("RESULT ")]
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
