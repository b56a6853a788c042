"""The child process of the crash matrix: a mixed workload on a real LMDB store.

Run as ``python crash_workload.py STORE OUTDIR``. It may be SIGKILLed at any
moment; the parent restarts it until it exits cleanly. Each start:

1. opens the store (the runtime resumes every unfinished run by itself);
2. answers pending interrupts from ``OUTDIR/answers.json`` (the "outside"
   world: the parent writes it between processes, after reading the store);
3. starts every workload run that the store does not hold yet, and calls each
   idempotent function again with its key (a second caller, every process);
4. waits until every run has settled, then exits 0 — with ``DONE`` in
   ``OUTDIR/status`` if all runs finished, ``IDLE`` if some wait for a person.

Everything the child observes is appended to ``OUTDIR/observed.jsonl`` with
plain ``os.write`` (the page cache survives SIGKILL, so nothing written before
the kill is lost; a torn last line is skipped by the parent):

- ``ack``: an event the store acknowledged (written after ``append`` returned);
- ``result``: an outcome a caller got from ``Runtime.wait``;
- ``seen``: a task result that workflow code received.

Idempotent function bodies append ``complete`` lines to ``OUTDIR/journal.jsonl``
and fsync them before returning, so a body completion is on disk before its
result can be committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from perdure import (
    Command,
    FunctionContext,
    LmdbEventLog,
    NonRetryableError,
    RetryPolicy,
    RunFailedError,
    Runtime,
    entrypoint,
    function,
    interrupt,
    sleep,
    task,
)
from perdure.eventlog import Event, RunStatus, encode
from perdure.testing import FaultyEventLog

PID = os.getpid()
FAST = RetryPolicy(max_attempts=1000, initial_interval_ms=5, max_interval_ms=20)

#: Sizes of the workload (kept small: the parent kills the child ~100 times).
N_FLAKY = 6
N_KEYS = 8
N_FANOUT = 3
N_APPROVALS = 3


def token() -> str:
    """A value unique to one execution of a body, to attribute results to executions."""
    return f"{PID}-{uuid.uuid4().hex[:12]}"


class Writer:
    """Appends JSON lines with single `os.write` calls (one line per call)."""

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.fsync = fsync

    def write(self, **record: Any) -> None:
        record["pid"] = PID
        os.write(self.fd, (json.dumps(record, sort_keys=True) + "\n").encode())
        if self.fsync:
            os.fsync(self.fd)


OBSERVED: Writer
JOURNAL: Writer


#: Harness self-test only: "early-ack" makes the log acknowledge appends before they
#: commit (a lying store), which the parent's checks must catch.
MUTANT = os.environ.get("PERDURE_CRASH_MUTANT", "")


class AckingLog(FaultyEventLog):
    """The LMDB log, recording every event whose append returned (i.e. is durable)."""

    async def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        status: RunStatus | None = None,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        if MUTANT == "early-ack":
            self._ack(run_id, events)
            await asyncio.sleep(0.02)
        await super().append(run_id, expected_seq, events, status=status, on_durable=on_durable)
        if MUTANT != "early-ack":
            self._ack(run_id, events)

    @staticmethod
    def _ack(run_id: str, events: Sequence[Event]) -> None:
        for event in events:
            OBSERVED.write(
                kind="ack",
                run=run_id,
                seq=event.seq,
                type=event.WIRE_NAME,
                crc=zlib.crc32(encode(event)),
            )


# -- functions ---------------------------------------------------------------------------


@function(name="crashmx_flaky", retries=FAST)
def crashmx_flaky(ctx: FunctionContext, i: int, fail_times: int) -> dict[str, Any]:
    """Fails its first `fail_times` attempts (crash-lost attempts count too)."""
    time.sleep(0.005 * (1 + i % 3))
    if ctx.attempt < fail_times:
        raise ConnectionError(f"flaky {i}: attempt {ctx.attempt}")
    return {"square": i * i}


@function(name="crashmx_charge", retries=FAST)
async def crashmx_charge(ctx: FunctionContext, order: int) -> dict[str, Any]:
    """An idempotent side effect: journals its completion durably, then returns a token."""
    await asyncio.sleep(0.005)
    if order % 2 and ctx.attempt == 0:
        raise TimeoutError(f"payment gateway timed out for order {order}")
    tok = token()
    JOURNAL.write(kind="complete", key=ctx.idempotency_key, run=ctx.run_id, tok=tok)
    # The side effect is done; its response takes a moment to come back. A kill in this
    # window (or before the result commits) makes the next process run the body again.
    await asyncio.sleep(0.02)
    return {"order": order, "amount": order * 10, "tok": tok}


@function(name="crashmx_reject", retries=FAST)
def crashmx_reject(code: int) -> int:
    raise NonRetryableError(f"rejected with code {code}")


# -- workflows -----------------------------------------------------------------------------


@task(name="crashmx_square", retry_policy=FAST)
def crashmx_square(i: int) -> dict[str, Any]:
    time.sleep(0.01)
    return {"v": i * i, "tok": token()}


@task(name="crashmx_total", retry_policy=FAST)
async def crashmx_total(values: list[int]) -> dict[str, Any]:
    await asyncio.sleep(0.01)
    return {"v": sum(values), "tok": token()}


def _seen(run: str, what: str, value: Any) -> Any:
    OBSERVED.write(kind="seen", run=run, what=what, value=value)
    return value


@entrypoint(name="crashmx_fanout")
def crashmx_fanout(n: int, config: dict[str, Any]) -> dict[str, Any]:
    """Parallel tasks, a durable sleep, a task on their results, a function as a task."""
    run = config["configurable"]["thread_id"]
    futures = [crashmx_square(i) for i in range(2 * n)]
    squares = [_seen(run, f"square{i}", f.result()) for i, f in enumerate(futures)]
    sleep(0.05)
    total = _seen(run, "total", crashmx_total([s["v"] for s in squares]).result())
    flaky = _seen(run, "flaky", crashmx_flaky(i=n, fail_times=1).result())
    return {"squares": squares, "total": total, "flaky": flaky}


@entrypoint(name="crashmx_approval")
async def crashmx_approval(doc: str, config: dict[str, Any]) -> dict[str, Any]:
    """Two people sign off in turn; each answer arrives from another process."""
    run = config["configurable"]["thread_id"]
    draft = _seen(run, "draft", await crashmx_square(len(doc)))
    first = interrupt({"doc": doc, "step": "review", "draft": draft["v"]})
    second = interrupt({"doc": doc, "step": "sign", "after": first})
    final = _seen(run, "final", await crashmx_total([draft["v"], len(str(second))]))
    return {"draft": draft, "answers": [first, second], "final": final}


@entrypoint(name="crashmx_counter")
def crashmx_counter(inc: int, previous: Any = None) -> Any:
    """Two invocations on one thread; the second sees the first's saved value."""
    base = previous or 0
    done = crashmx_square(inc).result()
    return entrypoint.final(value={"count": base + inc, "sq": done}, save=base + inc)


# -- the driver ----------------------------------------------------------------------------


def plan() -> list[tuple[str, Any, dict[str, Any], str | None]]:
    """(run id, target, input, idempotency key) of every first invocation."""
    runs: list[tuple[str, Any, dict[str, Any] | Any, str | None]] = []
    for i in range(N_FLAKY):
        runs.append((f"flaky-{i}", crashmx_flaky, {"i": i, "fail_times": i % 3}, None))
    for i in range(N_KEYS):
        runs.append((f"charge-{i}", crashmx_charge, {"order": i}, f"order-{i}"))
    runs.append(("reject-0", crashmx_reject, {"code": 7}, None))
    for i in range(N_FANOUT):
        runs.append((f"fanout-{i}", crashmx_fanout, 3 + i, None))
    for i in range(N_APPROVALS):
        runs.append((f"approval-{i}", crashmx_approval, f"doc-{i}", None))
    runs.append(("counter-0", crashmx_counter, 1, None))
    runs.append(("counter-1", crashmx_counter, 5, None))
    return runs


async def _start(rt: Runtime, run_id: str, target: Any, value: Any, key: str | None) -> str:
    if key is not None:
        # Two callers with the same key, in every process: both attach to one run.
        first, second = await asyncio.gather(
            rt.start(target, value, idempotency_key=key, run_id=run_id),
            rt.start(target, value, idempotency_key=key),
        )
        assert first.run_id == second.run_id, (first, second)
        return first.run_id
    if await rt.get_run(run_id) is None:
        await rt.start(target, value, run_id=run_id)
    return run_id


async def _observe(rt: Runtime, run_id: str) -> str:
    """Wait until the run settles; an operator continues runs failed by lost attempts only."""
    while True:
        outcome = await rt.wait(run_id)
        try:
            result = outcome.unwrap()
        except RunFailedError as exc:
            result = {"error": exc.error_type}
        OBSERVED.write(kind="result", run=run_id, status=outcome.status, result=_plain(result))
        if outcome.error_type != "AttemptLost":
            return outcome.status
        # A step whose attempts died with their process too often fails for good (the cap on
        # crash loops). Here the deaths were our kills, not the task's fault: continue it.
        await rt.continue_run(run_id)


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and "__interrupt__" in value:
        return {"__interrupt__": [{"id": i.id, "value": i.value} for i in value["__interrupt__"]]}
    return value


async def _second_invocation(rt: Runtime, thread: str) -> None:
    """Start a counter thread's second invocation once its first has completed."""
    state = await rt.state(thread)
    if state.invocation == 0 and state.status == "completed":
        await rt.start(crashmx_counter, 2, run_id=thread)
        await _observe(rt, thread)


async def main(store: str, answers: dict[str, dict[str, Any]]) -> str:
    """One process's share of the work; returns "DONE" or "IDLE" (waiting for answers)."""
    log = AckingLog(LmdbEventLog(store))
    try:
        async with Runtime(log=log, idle_timeout=0.5, attempt_linger=0.002) as rt:
            for run_id, given in answers.items():
                state = await rt.state(run_id)
                pending = {s.interrupt_id for s in state.pending_interrupts()}
                todo = {iid: value for iid, value in given.items() if iid in pending}
                if todo:
                    await rt.send(run_id, Command(resume=todo))
            run_ids = [await _start(rt, *item) for item in plan()]
            statuses = await asyncio.gather(*(_observe(rt, run_id) for run_id in run_ids))
            await asyncio.gather(*(_second_invocation(rt, f"counter-{i}") for i in range(2)))
    finally:
        await log.close()
    return "IDLE" if "waiting" in statuses else "DONE"


def _drop(*_: Any) -> Any:
    raise structlog.DropEvent


if __name__ == "__main__":
    structlog.configure(processors=[_drop])
    store_dir, out_dir = sys.argv[1], sys.argv[2]
    OBSERVED = Writer(os.path.join(out_dir, "observed.jsonl"))
    JOURNAL = Writer(os.path.join(out_dir, "journal.jsonl"), fsync=True)
    answers_path = os.path.join(out_dir, "answers.json")
    given: dict[str, dict[str, Any]] = {}
    if os.path.exists(answers_path):
        with open(answers_path) as file:
            given = json.load(file)
    with open(os.path.join(out_dir, "ready"), "a") as ready:
        ready.write(f"{PID}\n")
    final = asyncio.run(main(store_dir, given))
    with open(os.path.join(out_dir, "status"), "w") as file:
        file.write(final)
