"""`perdure demo`: a few seconds that show what perdure promises, on a real store.

1. a function that fails twice and succeeds on its third attempt (retries, backoff);
2. an idempotent call served from the log (same key: same result, body not run again);
3. a run whose process is killed mid-step (SIGKILL) and that a new Runtime resumes;
4. a workflow that pauses on `interrupt()` and is resumed with `Command(resume=...)`.

Only public APIs are used. By default the demo runs on a temporary store,
deleted at the end, so it writes nothing into the current folder; with
``--store PATH`` its runs stay there to look at with ``perdure runs list``.
Every demo run uses fresh run ids and keys, so it can run again and again on
the same store. The crash in step 3 is real: a child process runs the step,
and the demo kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import MutableMapping
from typing import Any

from perdure import (
    Command,
    FunctionContext,
    PerdureError,
    RetryPolicy,
    Runtime,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.cli._console_log import console_logging
from perdure.cli._render import describe
from perdure.eventlog import TaskAttemptFailed

_CHILD_READY = "perdure-demo: step running"
_CHILD_STARTUP_TIMEOUT = 30.0


class _Counters:
    """What the demo's bodies did in this process."""

    #: How long the report step takes (set in the child process, which is killed first).
    slow_step_seconds = 0.0
    #: Bodies of `demo_charge_card` that ran here (idempotency keeps it at 1).
    charges_made = 0


counters = _Counters()


class DemoFailure(Exception):
    """Something the demo promised did not happen."""


# -- the demo's functions and workflow -------------------------------------------------


@function(retries=RetryPolicy(max_attempts=5, initial_interval_ms=100), backoff="exponential")
async def demo_fetch_quote(ctx: FunctionContext, city: str) -> dict[str, Any]:
    """Fails on its first two attempts, as a flaky API would, then answers."""
    if ctx.attempt < 2:
        raise ConnectionError(f"weather API timed out (attempt {ctx.attempt})")
    ctx.log("weather API answered", attempt=ctx.attempt)
    return {"city": city, "forecast": "sunny", "attempts": ctx.attempt + 1}


@function(retries=3)
async def demo_charge_card(ctx: FunctionContext, order_id: str, cents: int) -> dict[str, Any]:
    """A payment: must happen once per order however often it is requested."""
    counters.charges_made += 1
    ctx.log("charging card", order_id=order_id, cents=cents, key=ctx.idempotency_key)
    return {"order_id": order_id, "charged_cents": cents, "receipt": f"rcpt-{order_id}"}


@function(retries=RetryPolicy(max_attempts=3, initial_interval_ms=200))
async def demo_build_report(ctx: FunctionContext, rows: int) -> dict[str, Any]:
    """A slow step. In the demo's child process it takes a minute; the child is killed first."""
    if counters.slow_step_seconds:
        print(_CHILD_READY, flush=True)
        await asyncio.sleep(counters.slow_step_seconds)
    ctx.log("report built", rows=rows, attempt=ctx.attempt, pid=os.getpid())
    return {"rows": rows, "built_by_pid": os.getpid(), "attempt": ctx.attempt}


@task
async def demo_write_draft(topic: str) -> str:
    return f"Ten reasons {topic} make excellent colleagues."


@task
async def demo_publish(draft: str) -> str:
    return f"published: {draft!r}"


@entrypoint()
async def demo_review_flow(topic: str) -> dict[str, Any]:
    draft = await demo_write_draft(topic)
    verdict = interrupt({"question": "Publish this draft?", "draft": draft})
    if verdict == "approve":
        return {"verdict": verdict, "outcome": await demo_publish(draft)}
    return {"verdict": verdict, "outcome": "not published"}


# -- output ------------------------------------------------------------------------------------

_QUIET = frozenset({"run started", "run settled"})
_NOISY_KEYS = ("run_id", "trace_id", "target", "function", "task", "timestamp", "key")


def _tidy(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Keep the demo's log lines short: drop ids already shown in the narrative."""
    for key in _NOISY_KEYS:
        event.pop(key, None)
    retry_at = event.pop("retry_at", None)
    if isinstance(retry_at, float):
        event["retry_in"] = f"{max(retry_at - time.time(), 0.0):.1f}s"
    return event


def _console() -> contextlib.AbstractContextManager[None]:
    """Readable console logs at info level on stdout, for the demo only."""
    return console_logging(
        sys.stdout,
        logging.INFO,
        processors=[_tidy],
        skip=_QUIET,
        colors=sys.stdout.isatty(),
        pad_event=24,
    )


def say(text: str = "") -> None:
    print(text, flush=True)


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailure(what)


# -- the four parts --------------------------------------------------------------------------


async def _retries(rt: Runtime) -> None:
    say("1. Retries with backoff")
    say("   demo_fetch_quote fails twice, then succeeds: RetryPolicy(max_attempts=5,")
    say("   initial_interval_ms=100), exponential backoff (0.1 s, then 0.2 s).")
    started = time.monotonic()
    result = await rt.run(demo_fetch_quote, {"city": "Lisbon"})
    elapsed = time.monotonic() - started
    say(f"   -> {result}: succeeded on attempt {result['attempts']}, {elapsed:.1f} s in all")
    _check(result["attempts"] == 3, f"expected success on the 3rd attempt, got {result}")


async def _idempotency(rt: Runtime, token: str) -> str:
    key = f"demo-{token}-charge-order-42"
    say("2. Idempotency keys")
    say(f"   demo_charge_card(order 42) with idempotency_key={key!r}")
    first = await rt.run(demo_charge_card, {"order_id": "42", "cents": 1999}, idempotency_key=key)
    say(f"   -> {first}; card charged {counters.charges_made} time(s)")
    say("   the same call again (a client retry after a timeout, say):")
    again = await rt.run(demo_charge_card, {"order_id": "42", "cents": 1999}, idempotency_key=key)
    say(
        f"   -> {again}; card charged {counters.charges_made} time(s): the result came from the log"
    )
    _check(again == first and counters.charges_made == 1, "the second call ran the body again")
    return key


def _start_child(store: str, run_id: str) -> subprocess.Popen[str]:
    code = "import sys, perdure.cli._demo as d; sys.exit(d.child_main(sys.argv[1], sys.argv[2]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, store, run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float) -> bool:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        if line is None:
            return False
        if line.strip() == wanted:
            return True
    return False


def _crash_child(store: str, run_id: str) -> None:
    say("3. Crash recovery")
    proc = _start_child(store, run_id)
    say(f"   child process {proc.pid} starts run {run_id!r}: demo_build_report, a 60 s step")
    try:
        if not _wait_for_line(proc, _CHILD_READY, _CHILD_STARTUP_TIMEOUT):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise DemoFailure(f"the child process did not start its step:\n{err}")
        time.sleep(0.3)  # let the attempt's start reach the log (it may linger 5 ms to batch)
        say(f"   the step is running in the child; kill -9 {proc.pid}")
        proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    say(f"   child exited with {proc.returncode}; its run never finished")


async def _recovered(rt: Runtime, run_id: str, charge_key: str) -> None:
    say("   a new Runtime opened the store and resumed the unfinished run:")
    outcome = await rt.wait(run_id, timeout=30)
    result = outcome.unwrap()
    say(f"   -> {result} (this process is {os.getpid()})")
    say("   the run's event history:")
    events = await rt.log.read(run_id)
    for event in events:
        say(f"     {event.seq:>2}  {type(event).WIRE_NAME:<21} {describe(event)}")
    lost = [e for e in events if isinstance(e, TaskAttemptFailed) and e.error_type == "AttemptLost"]
    _check(bool(lost), "the killed attempt is not recorded as lost")
    _check(result["built_by_pid"] == os.getpid(), "the run was not finished by this process")
    order = {"order_id": "42", "cents": 1999}
    again = await rt.run(demo_charge_card, order, idempotency_key=charge_key)
    say(f"   the charge from part 2, asked again in this new runtime: {again['receipt']},")
    say(f"   card charged {counters.charges_made} time(s) in total")
    _check(counters.charges_made == 1, "the charge ran again after reopening the store")


async def _human_in_the_loop(token: str) -> None:
    thread = f"demo-{token}-essay"
    config = {"configurable": {"thread_id": thread}}
    say("4. A workflow that waits for a person")
    paused = await demo_review_flow.ainvoke("otters", config)
    pending = paused["__interrupt__"][0]
    say(f"   invoke('otters') paused: {pending.value}")
    say(f"   interrupt id {pending.id}; the run waits in the store until someone answers")
    snapshot = await demo_review_flow.aget_state(config)
    tasks = [t.name for t in snapshot.tasks]
    say(f"   get_state: status={snapshot.status}, recorded tasks={tasks}")
    result = await demo_review_flow.ainvoke(Command(resume="approve"), config)
    say(f"   Command(resume='approve') -> {result}")
    _check(result.get("verdict") == "approve", f"unexpected workflow result {result}")


async def _demo(store: str, keep: bool) -> None:
    token = secrets.token_hex(3)
    where = f"the store {store!r}" if keep else "a temporary store"
    say(f"perdure demo on {where} (demo id {token})")
    say()
    async with Runtime(path=store) as rt:
        await _retries(rt)
        say()
        charge_key = await _idempotency(rt, token)
    say()
    run_id = f"demo-{token}-report"
    await asyncio.to_thread(_crash_child, store, run_id)
    async with Runtime(path=store) as rt:
        await _recovered(rt, run_id, charge_key)
        say()
        await _human_in_the_loop(token)
    say()
    if keep:
        say("All four behaved as promised. The runs are in the store; look at them with")
        say(f"  perdure runs list --store {store}")
        say(f"  perdure events {run_id} --store {store}")
    else:
        say("All four behaved as promised. The temporary store is deleted now; to keep the")
        say("runs and look at them with `perdure runs list`, run: perdure demo --store PATH")


def main(store_path: str | None = None) -> int:
    """Run the demo; 0 if everything behaved as promised.

    store_path: the store to run it on, kept afterwards; None: a temporary store,
    deleted at the end.
    """
    if store_path is None:
        with tempfile.TemporaryDirectory(prefix="perdure-demo-") as folder:
            return _main(os.path.join(folder, "store"), keep=False)
    return _main(store_path, keep=True)


def _main(store_path: str, keep: bool) -> int:
    try:
        with _console():
            asyncio.run(_demo(store_path, keep))
    except DemoFailure as exc:
        say(f"\nDEMO FAILED: {exc}")
        return 1
    except PerdureError as exc:
        say(f"\nperdure error: {type(exc).__name__}: {exc}")
        return 1
    return 0


def child_main(store: str, run_id: str) -> int:
    """The demo's child process: start the slow report run, then wait to be killed."""
    counters.slow_step_seconds = 60.0

    async def go() -> None:
        async with Runtime(path=store) as rt:
            handle = await rt.start(demo_build_report, {"rows": 1200}, run_id=run_id)
            await handle.result()

    asyncio.run(go())
    return 0
