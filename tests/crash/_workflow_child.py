"""Child process of the workflow SIGKILL test: workflows of many tasks and interrupts on LMDB.

Run as ``python _workflow_child.py STORE WORKDIR THREADS``. The parent kills
it at random moments and starts it again until it exits 0. Each start opens
the store (the runtime resumes unfinished runs by itself), starts the threads
the store does not hold yet, and drives every thread until it completes:
when a thread pauses, its questions are written to the journal, and answers
the parent puts in ``WORKDIR/answers/`` are sent with ``Command(resume=...)``.

``WORKDIR/journal`` gets one line per fact, appended with ``os.write`` and
fsynced (O_APPEND, one write per line, so lines from threads never interleave):

- ``body THREAD LABEL NONCE``: a task body completed (just before returning);
- ``seen THREAD LABEL NONCE``: workflow code received that task result;
- ``ask THREAD IID JSON``: the thread waits on interrupt IID with that question;
- ``started PID`` / ``done PID``: this process opened the store / finished.

Task results carry a random nonce, so a result the workflow saw but the log
did not keep (a re-run would record another nonce) is caught by the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from perdure import Command, RetryPolicy, Runtime, entrypoint, interrupt, task
from perdure.errors import InvalidResumeError

MOD = 10_007
#: A SIGKILL during an attempt whose start was committed records it as lost
#: ("AttemptLost"). Lost attempts do not use up `max_attempts`, but past
#: `max_lost_attempts` (10 by default) the step fails: a crash-loop guard. A
#: campaign kills up to 30 times in a few seconds, and a step that lags (its
#: retry backoff) can be in flight at many of them, so the guard is set above
#: the number of kills here.
RETRY = RetryPolicy(
    max_attempts=100, initial_interval_ms=1, max_interval_ms=5, max_lost_attempts=1000
)
_fd = -1


def journal(*fields: Any) -> None:
    line = " ".join(str(f) for f in fields) + "\n"
    os.write(_fd, line.encode())
    os.fsync(_fd)


def answer_for(question: dict[str, Any]) -> int:
    """The person's answer: a pure function of the question, so the oracle run agrees."""
    return (question["acc"] * 3 + len(question["label"])) % 101


def _result(thread: str, label: str, value: int) -> dict[str, Any]:
    nonce = uuid.uuid4().hex[:12]
    journal("body", thread, label, nonce)
    return {"v": value % MOD, "nonce": nonce}


@task(retry_policy=RETRY)
def crash_step(thread: str, label: str, x: int) -> dict[str, Any]:
    time.sleep(0.001)  # a little real work, so kills land inside bodies too
    return _result(thread, label, x * x + 1)


@task(retry_policy=RETRY)
async def crash_async_step(thread: str, label: str, x: int) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    return _result(thread, label, 3 * x + 7)


@task(retry_policy=RETRY)
def crash_reviewed(thread: str, label: str, x: int) -> dict[str, Any]:
    """Calls a nested task, then asks a person: interrupts from parallel tasks."""
    inner = crash_step(thread, f"{label}.in", x).result()
    see(thread, f"{label}.in", inner)
    answer = interrupt({"thread": thread, "label": label, "acc": (x + inner["v"]) % MOD})
    return _result(thread, label, x + inner["v"] + answer)


def see(thread: str, label: str, result: dict[str, Any]) -> int:
    journal("seen", thread, label, result["nonce"])
    value: int = result["v"]
    return value


@entrypoint()
def crash_flow(spec: dict[str, Any]) -> dict[str, Any]:
    thread = spec["thread"]
    acc = spec["seed"]
    for i in range(spec["steps"]):  # sequential tasks
        label = f"s{i}"
        acc = (acc + see(thread, label, crash_step(thread, label, acc + i).result())) % MOD
    futures = [crash_async_step(thread, f"f{j}", acc + j) for j in range(spec["fan"])]
    for j, future in enumerate(futures):  # a parallel fan-out
        acc = (acc + see(thread, f"f{j}", future.result())) % MOD
    if spec["ask"]:
        acc = (acc + interrupt({"thread": thread, "label": "q", "acc": acc})) % MOD
        reviews = [crash_reviewed(thread, f"r{j}", acc + j) for j in range(spec["reviews"])]
        for j, future in enumerate(reviews):
            acc = (acc + see(thread, f"r{j}", future.result())) % MOD
        tail = crash_step(thread, "tail", acc).result()
        acc = (acc + see(thread, "tail", tail)) % MOD
    return {"thread": thread, "acc": acc}


def thread_specs(count: int) -> list[dict[str, Any]]:
    """The workload: deterministic per thread index (the parent's oracle uses the same)."""
    return [
        {
            "thread": f"wf-{k}",
            "seed": 17 * k,
            "steps": 12 + k % 5,
            "fan": 6 + k % 3,
            "ask": k % 3 != 2,
            "reviews": 1 + k % 2,
        }
        for k in range(count)
    ]


async def drive(runtime: Runtime, thread: str, answers: Path) -> None:
    """Wait on the thread; answer its questions from the answers dir until it completes."""
    asked: set[str] = set()
    while True:
        outcome = await runtime.wait(thread)
        if outcome.status == "completed":
            return
        if outcome.status != "waiting":
            outcome.unwrap()  # raises: the parent reports the failure
        pending = {i.id: i.value for i in outcome.interrupts}
        for iid, question in pending.items():
            if iid not in asked:
                asked.add(iid)
                journal("ask", thread, iid, json.dumps(question, sort_keys=True))
        given: dict[str, Any] = {}
        while not given:
            for iid in pending:
                path = answers / iid
                if path.exists():
                    given[iid] = json.loads(path.read_text())
            if not given:
                await asyncio.sleep(0.003)
        # InvalidResumeError: answered by an earlier process between its wait and its death
        with contextlib.suppress(InvalidResumeError):
            await runtime.send(thread, Command(resume=given))


async def main(store: str, workdir: Path, count: int) -> None:
    answers = workdir / "answers"
    async with Runtime(store, idle_timeout=3600) as runtime:
        journal("started", os.getpid())
        for spec in thread_specs(count):
            if await runtime.get_run(spec["thread"]) is None:
                await runtime.start(crash_flow, spec, run_id=spec["thread"])
        await asyncio.gather(*(drive(runtime, s["thread"], answers) for s in thread_specs(count)))
    journal("done", os.getpid())


if __name__ == "__main__":
    store_arg, workdir_arg, count_arg = sys.argv[1:4]
    work = Path(workdir_arg)
    _fd = os.open(work / "journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    asyncio.run(main(store_arg, work, int(count_arg)))
