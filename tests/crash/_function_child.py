"""Child process for tests/crash/test_function_crash.py: durable functions on a real LMDB store.

Usage: python _function_child.py STORE JOURNAL JOBS_JSON MODE GENERATION

Starts (or, by idempotency key, re-attaches to) one run of `crash_fn_job` per
job and waits for all of them. Every attempt writes a ``begin`` line to the
journal when its body starts; every body that completes appends a ``done``
line with a fresh nonce and fsyncs it *before* returning that nonce as part of
its result. A job is "hot" in the child of the generation that added it: there
its attempts take ``work_ms`` and, in MODE ``work``, the attempt numbered
``hang_at`` blocks until the process is killed (a kill mid-attempt, for sure).
In later children its attempts take 5 ms and never block, so each job meets
only a few kills mid-attempt and every run can complete.

stdout protocol: ``READY`` once every run is started, ``RESULT <key> <json>``
per settled run, ``DONE`` at the end. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import structlog

from perdure import FunctionContext, RetryPolicy, Runtime, function
from perdure.errors import RunFailedError

MODE = sys.argv[4] if len(sys.argv) > 4 else "finish"
GENERATION = int(sys.argv[5]) if len(sys.argv) > 5 else -1
_journal_fd: int | None = None


def say(*words: str) -> None:
    """One stdout line in one write(2), so a kill never leaves half of it in the pipe."""
    os.write(1, (" ".join(words) + "\n").encode())


def journal(entry: dict[str, Any], *, sync: bool) -> None:
    assert _journal_fd is not None
    os.write(_journal_fd, (json.dumps(entry) + "\n").encode())
    if sync:
        os.fsync(_journal_fd)


#: Backoffs of 20-80 ms of real time: each retry is a moment where a kill lands mid-backoff.
POLICY = RetryPolicy(max_attempts=12, initial_interval_ms=20, max_interval_ms=80)


@function(name="crash_fn_job", retries=POLICY)
async def crash_fn_job(
    ctx: FunctionContext, key: str, gen: int, fail: int, hang_at: int, work_ms: int
) -> dict[str, Any]:
    """Fail attempts < `fail`; when hot, block at attempt `hang_at` and work `work_ms`."""
    base = {"key": key, "attempt": ctx.attempt, "run_id": ctx.run_id, "pid": os.getpid()}
    assert ctx.idempotency_key == key
    journal({"ev": "begin", **base}, sync=False)
    hot = gen == GENERATION
    if MODE == "work" and hot and ctx.attempt == hang_at:
        await asyncio.Event().wait()  # only a SIGKILL ends this attempt
    await asyncio.sleep((work_ms if hot else 5) / 1000)
    if ctx.attempt < fail:
        raise ConnectionError(f"{key}: attempt {ctx.attempt} refused")
    nonce = uuid.uuid4().hex
    journal({"ev": "done", "nonce": nonce, **base}, sync=True)
    return {"key": key, "attempt": ctx.attempt, "nonce": nonce}


async def main(store: str, jobs: list[dict[str, Any]]) -> int:
    async with Runtime(path=store) as runtime:
        handles = {}
        for job in jobs:
            key = job["key"]
            handles[key] = await runtime.start(
                crash_fn_job,
                {k: job[k] for k in ("key", "gen", "fail", "hang_at", "work_ms")},
                idempotency_key=key,
            )
        say("READY")

        async def settle(key: str) -> None:
            try:
                value: Any = await handles[key].result()
            except RunFailedError as exc:
                value = {"failed": f"{exc.error_type}: {exc.error_message}"}
            say("RESULT", key, json.dumps(value))

        try:
            await asyncio.wait_for(asyncio.gather(*(settle(k) for k in handles)), 60)
        except TimeoutError:
            say("TIMEOUT")
            return 3
    say("DONE")
    return 0


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    store_path, journal_path, jobs_path = sys.argv[1:4]
    _journal_fd = os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with open(jobs_path, encoding="utf-8") as file:
        all_jobs = json.load(file)
    sys.exit(asyncio.run(main(store_path, all_jobs)))
