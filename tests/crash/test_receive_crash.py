"""SIGKILL during a receive loop, and while child workflows run (issue 16).

A child process (`_receive_child.py`) runs a workflow that receives TOTAL messages
in a loop and sends it its own messages. This process SIGKILLs it at seeded
random moments and, while no child runs, sends messages itself (another process
recording messages for a run nobody drives). It starts the child again until
the run completes. Then:

- the run's result holds every message exactly once, in the order the log
  recorded them (`message_received`), own and offline ones alike;
- every message whose `send` returned (journal ``sent``) is in the result;
- each receive position always returned the same message, in every execution of
  the body, replays after kills included (journal ``seen``), and the log's
  `message_delivered` events agree.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perdure import LmdbEventLog, Runtime
from perdure.eventlog import MessageDelivered, MessageReceived, RunStarted, TaskCompleted
from perdure.runtime import Registry

CHILD = Path(__file__).with_name("_receive_child.py")


def _lines(journal: Path) -> list[list[str]]:
    if not journal.exists():
        return []
    return [line.split(" ", 2) for line in journal.read_text().splitlines() if line]


def _wait_ready(journal: Path, starts: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(1 for line in _lines(journal) if line[0] == "ready") >= starts:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("the child never opened the store")


async def _send_offline(store: Path, name: str) -> None:
    # A process without the workflow's code: it records the message and nothing else.
    async with Runtime(str(store), registry=Registry(), recover=False) as rt:
        await rt.send("loop", name, idempotency_key=name)


async def _read(store: Path) -> list[object]:
    log = LmdbEventLog(str(store))
    try:
        return list(await log.read("loop"))
    finally:
        await log.close()


def _campaign(
    tmp_path: Path, *, own: int, offline: int, kills: int, seed: int, sync: bool = False
) -> None:
    rng = random.Random(seed)
    store, journal = tmp_path / "store", tmp_path / "journal"
    total = own + offline
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "RECEIVE_CHILD_SYNC": "1" if sync else "0",
    }
    starts = killed = sent_offline = 0
    while True:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(store), str(journal), str(own), str(total)],
            env=env,
        )
        starts += 1
        ready = _wait_ready(journal, starts, proc)
        if killed < kills or sent_offline < offline:
            if ready:
                time.sleep(rng.uniform(0.0, 0.25))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait()
            if sent_offline < offline:
                asyncio.run(_send_offline(store, f"offline-{sent_offline}"))
                sent_offline += 1
            continue
        assert proc.wait(timeout=120) == 0
        break
    events = asyncio.run(_read(store))
    received = [e for e in events if type(e) is MessageReceived]
    delivered = [e for e in events if type(e) is MessageDelivered]
    names = [e.value for e in received]
    assert len(names) == len(set(names)) == total, names  # each recorded once
    assert sorted(names) == sorted(
        [f"own-{i}" for i in range(own)] + [f"offline-{i}" for i in range(offline)]
    )
    # Delivered exactly once each, in append order.
    by_seq = {e.seq: e.value for e in received}
    assert [by_seq[e.message_seq] for e in delivered] == names
    lines = _lines(journal)
    assert {line[1] for line in lines if line[0] == "sent"} <= set(names)
    seen: dict[str, set[str]] = {}
    for line in lines:
        if line[0] == "seen":
            seen.setdefault(line[1], set()).add(line[2])
    assert all(len(values) == 1 for values in seen.values()), seen  # replays agree
    assert [seen[str(i)].pop() for i in range(total)] == names
    assert killed >= kills


def test_sigkill_during_a_receive_loop_loses_and_repeats_no_message(tmp_path: Path) -> None:
    _campaign(tmp_path, own=150, offline=4, kills=6, seed=16)


def test_sigkill_during_a_sync_receive_loop_loses_and_repeats_no_message(tmp_path: Path) -> None:
    """The same with a sync body, whose `receive()` waits in its thread for the message."""
    _campaign(tmp_path, own=100, offline=3, kills=5, seed=17, sync=True)


@pytest.mark.slow
def test_sigkill_during_a_receive_loop_many_times(tmp_path: Path) -> None:
    _campaign(tmp_path, own=1000, offline=10, kills=30, seed=1616)


async def _read_runs(store: Path, run_ids: list[str]) -> dict[str, list[object]]:
    log = LmdbEventLog(str(store))
    try:
        return {run_id: list(await log.read(run_id)) for run_id in run_ids}
    finally:
        await log.close()


def test_sigkill_while_child_workflows_run_starts_each_child_once(tmp_path: Path) -> None:
    """A parent whose children are killed mid-way re-attaches to them: each child run
    starts once, each of its tasks is recorded once, the parent records their results."""
    rng = random.Random(1616)
    store, journal = tmp_path / "store", tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    n, starts, killed = 40, 0, 0
    while True:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(store), str(journal), "family", str(n)], env=env
        )
        starts += 1
        if _wait_ready(journal, starts, proc) and killed < 5:
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
                proc.wait()
                continue
        assert proc.wait(timeout=120) == 0
        break
    runs = asyncio.run(_read_runs(store, ["family", "family/0.0", "family/0.1"]))
    for run_id, size in (("family/0.0", n), ("family/0.1", n + 1)):
        events = runs[run_id]
        assert sum(type(e) is RunStarted for e in events) == 1, run_id  # started once
        done = [e.position for e in events if type(e) is TaskCompleted]
        assert sorted(done) == sorted(str(i) for i in range(size)), run_id  # each task once
    parent = [e for e in runs["family"] if type(e) is TaskCompleted]
    assert [e.result for e in parent] == [
        sum(i * i for i in range(n)),
        sum(i * i for i in range(n + 1)),
    ]
    # Some kills hit a child mid-way: a process that ran steps and did not finish.
    lines = [line[0] for line in _lines(journal)]
    lives = " ".join(lines).split("ready")[1:]
    assert any("step" in life and "done" not in life for life in lives), lines
