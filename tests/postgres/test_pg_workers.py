"""Worker tiers on a PostgreSQL store: a process without a target's code (a client)
starts runs of it, and a worker process that serves the target executes them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from perdure import Runtime
from perdure.runtime import Registry, UnknownTargetError

HERE = Path(__file__).resolve().parent
WORKER = (
    "import sys; from perdure.runtime import run_worker; "
    "run_worker('_worker_app', sys.argv[1], lease_ttl=1.0, "
    "ready=lambda rt: print('ready', flush=True))"
)


def _worker(url: str, *, cli: bool = False) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", WORKER, url]
    if cli:
        command = [sys.executable, "-m", "perdure", "worker", "--app", "_worker_app"]
        command += ["--store", url, "--lease-ttl", "1"]
    return subprocess.Popen(
        command,
        cwd=HERE,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def worker(pg_store: str) -> Iterator[subprocess.Popen[str]]:
    proc = _worker(pg_store, cli=True)  # `perdure worker --app _worker_app --store URL`
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("worker serving postgresql://"), line
        assert line.endswith(": wk_charge, wk_flow, wk_hold")
        yield proc
    finally:
        proc.terminate()  # SIGTERM: the worker stops cleanly and removes its record
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert _rows(pg_store, "SELECT count(*) FROM perdure.workers") == [(0,)]


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.timeout(120)
def test_a_client_without_the_code_has_its_runs_executed_by_a_worker(
    pg_store: str, worker: subprocess.Popen[str]
) -> None:
    # The worker recorded what it serves.
    assert _rows(pg_store, "SELECT targets FROM perdure.workers") == [
        ({"wk_charge": "function", "wk_flow": "workflow", "wk_hold": "function"},)
    ]

    async def client() -> tuple[str, str, str]:
        async with Runtime(pg_store, registry=Registry(), lease_ttl=1.0) as rt:
            charged = await rt.run("wk_charge", {"n": 3}, timeout=60)
            handle = await rt.start("wk_flow", 5)
            flowed = await handle.result(timeout=60)
            again = await rt.run("wk_charge", {"n": 4}, idempotency_key="pay-4", timeout=60)
            assert await rt.run("wk_charge", {"n": 4}, idempotency_key="pay-4") == again
            return charged, flowed, again

    charged, flowed, again = asyncio.run(client())
    assert charged == f"3 charged by {worker.pid}"
    assert flowed == f"10 by {worker.pid}"
    assert again == f"4 charged by {worker.pid}"
    runs = _rows(pg_store, "SELECT target, status FROM perdure.runs ORDER BY created_at")
    done = "completed"
    assert runs == [("wk_charge", done), ("wk_flow", done), ("wk_charge", done)]


@pytest.mark.timeout(120)
def test_a_target_no_worker_serves_is_refused_and_nothing_is_stored(pg_store: str) -> None:
    async def client() -> None:
        async with Runtime(pg_store, registry=Registry(), lease_ttl=1.0) as rt:
            with pytest.raises(UnknownTargetError, match="wk_charge"):
                await rt.start("wk_charge", {"n": 1})

    asyncio.run(client())
    assert _rows(pg_store, "SELECT count(*) FROM perdure.runs") == [(0,)]


@pytest.mark.timeout(120)
def test_a_run_handed_to_workers_waits_for_one_to_start(pg_store: str) -> None:
    """A client may start a run while no worker is up (one served the target before): the
    run waits in the store, and the next worker to start executes it."""
    first = _worker(pg_store)
    assert first.stdout is not None and first.stdout.readline().strip() == "ready"
    first.kill()  # its record stays: the store knows a worker serves wk_charge
    first.communicate(timeout=30)

    async def client() -> str:
        async with Runtime(pg_store, registry=Registry(), lease_ttl=1.0) as rt:
            handle = await rt.start("wk_charge", {"n": 7})
            second = _worker(pg_store)
            try:
                return str(await handle.result(timeout=60)) + f" / {second.pid}"
            finally:
                second.terminate()
                second.communicate(timeout=30)

    result, _, pid = asyncio.run(client()).partition(" / ")
    assert result == f"7 charged by {pid}"


@pytest.mark.timeout(120)
def test_a_waiter_that_misses_the_settled_notice_still_learns_the_outcome(
    pg_store: str, worker: subprocess.Popen[str]
) -> None:
    async def client() -> str:
        async with Runtime(pg_store, registry=Registry(), lease_ttl=1.0) as rt:
            listener = rt.log._listener  # type: ignore[attr-defined]
            listener.cancel()  # deaf to notices, as if its connection dropped for good
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            # No timeout of its own (its expiry reads the log anyway): the wait polls.
            return str(await asyncio.wait_for(rt.run("wk_charge", {"n": 9}), 30))

    assert asyncio.run(client()) == f"9 charged by {worker.pid}"


@pytest.mark.timeout(120)
def test_a_dead_workers_run_is_taken_over_by_another_worker(pg_store: str, tmp_path: Path) -> None:
    """Takeover time, measured (printed with -s); lease_ttl is 1 s."""
    workers = [_worker(pg_store) for _ in range(2)]
    marker = tmp_path / "release"
    try:
        for proc in workers:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        async def client() -> tuple[str, float, int]:
            async with Runtime(pg_store, registry=Registry(), lease_ttl=1.0) as rt:
                handle = await rt.start("wk_hold", {"path": str(marker)})
                owner = None
                while owner is None:  # a worker took the run and is running it
                    rows = _rows(
                        pg_store,
                        "SELECT owner FROM perdure.runs WHERE lease_until > now() "
                        "AND owner NOT LIKE '%%:' || " + str(os.getpid()) + " || ':%%'",
                    )
                    owner = rows[0][0] if rows else None
                    await asyncio.sleep(0.02)
                pid = int(str(owner).split(":")[1])
                victim = next(p for p in workers if p.pid == pid)
                victim.kill()
                killed = time.monotonic()
                marker.touch()
                result = str(await handle.result(timeout=60))
                survivor = next(p for p in workers if p is not victim)
                return result, time.monotonic() - killed, survivor.pid

        result, took, survivor = asyncio.run(client())
        assert result == f"released in {survivor}"
        print(f"a dead worker's run finished in another {took:.2f} s after the kill (ttl 1 s)")
        assert took < 30  # the target is lease_ttl + 2 s; measured, not asserted tightly
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.terminate()
            proc.communicate(timeout=30)


def test_work_notices_name_their_runs_within_a_notice_payload() -> None:
    # A notice's payload is at most 8,000 bytes: hand-overs of many runs with long ids
    # are told in several notices per target, each naming its runs; an older perdure's
    # notice (the target, a newline, one run id) still reads.
    from perdure.eventlog._postgres import _work_notices
    from perdure.runtime._runtime import _work_notice

    long = [(f"r{i:03d}-" + "é" * 190, 1, "flow") for i in range(300)]
    runs = [*long, ("short", 2, "other")]
    notices = _work_notices(runs)
    assert all(len(n.encode()) < 8000 for n in notices) and len(notices) > 2
    named: dict[str, list[str]] = {}
    for notice in notices:
        target, ids = _work_notice(notice)
        assert ids is not None
        named.setdefault(target, []).extend(ids)
    assert named == {"flow": [r for r, _, _ in long], "other": ["short"]}
    assert _work_notice("flow\nrun-1") == ("flow", None)
    assert _work_notice("[not json") == ("[not json", None)
