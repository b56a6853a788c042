"""One way to name a store: a postgresql:// URL works wherever a folder does (Runtime, Client,
entrypoint(checkpointer=...), PERDURE_STORE, the CLI's --store)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perdure import Client, FunctionContext, Runtime, entrypoint, function, interrupt
from perdure.eventlog import LmdbEventLog, PostgresEventLog
from perdure.runtime import Registry, close_background_runtimes, open_store
from perdure.runtime._discovery import default_store_path
from tests.support.cli import cli

REG = Registry()


@function(registry=REG)
async def pg_double(ctx: FunctionContext, n: int) -> int:
    return 2 * n


@entrypoint(registry=REG)
def pg_review(topic: str) -> dict[str, Any]:
    answer = interrupt({"approve?": topic})
    return {"topic": topic, "answer": answer}


def test_open_store_picks_the_log_by_the_spec(tmp_path: Path) -> None:
    log = open_store("postgresql://u@localhost/db")
    assert isinstance(log, PostgresEventLog) and log.schema == "perdure"
    assert isinstance(open_store(tmp_path / "s"), LmdbEventLog)
    with pytest.raises(TypeError, match="folder path or a postgresql:// URL"):
        open_store(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="applies to LMDB stores"):
        open_store("postgresql://u@localhost/db", durability="process")


def test_perdure_store_is_the_default_and_perdure_path_its_alias(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERDURE_PATH", "/old/alias")
    assert default_store_path() == "/old/alias"
    monkeypatch.setenv("PERDURE_STORE", "postgresql://u@h/db")
    assert default_store_path() == "postgresql://u@h/db"
    assert Runtime().path == "postgresql://u@h/db"


async def test_a_runtime_named_by_url_runs_functions_and_workflows(pg_store: str) -> None:
    async with Runtime(pg_store, registry=REG) as rt:
        assert isinstance(rt.log, PostgresEventLog)
        assert await rt.run("pg_double", {"n": 21}, run_id="d1") == 42
        paused = await rt.run("pg_review", "doc", run_id="w1")
        assert "__interrupt__" in paused
        with pytest.raises(Exception, match="already open"):
            await Runtime(pg_store, registry=REG).open()
    async with Runtime(pg_store, registry=REG) as rt:  # a later process finds the runs
        await rt.resume("w1", "yes")
        assert (await rt.wait("w1")).unwrap() == {"topic": "doc", "answer": "yes"}
        assert (await rt.get_run("d1")).status == "completed"  # type: ignore[union-attr]


def test_client_and_checkpointer_take_a_url(pg_store: str) -> None:
    assert Client(store=pg_store).run(pg_double, {"n": 5}, run_id="c1") == 10
    with pytest.raises(TypeError, match="not both"):
        Client("x", store="y")

    @entrypoint(checkpointer=pg_store, registry=Registry(), name="pg_flow")
    def flow(x: int) -> int:
        return x + 1

    assert flow.checkpointer == pg_store
    assert flow.invoke(1, {"configurable": {"thread_id": "f1"}}) == 2
    close_background_runtimes()  # before the database goes


def test_the_cli_reads_a_postgres_store(pg_store: str) -> None:
    async def write() -> None:
        async with Runtime(pg_store, registry=REG) as rt:
            await rt.run("pg_double", {"n": 1}, run_id="cli-1")
            await rt.run("pg_review", "x", run_id="cli-2")

    asyncio.run(write())
    listed = cli("runs", "list", "--store", pg_store)
    assert listed.code == 0, listed.err
    assert [line.split()[0] for line in listed.out.splitlines()[1:3]] == ["cli-2", "cli-1"]
    shown = json.loads(cli("runs", "show", "cli-2", "--json", "--store", pg_store).out)
    assert shown["status"] == "waiting"
    assert cli("events", "cli-1", "--store", pg_store).code == 0
    stats = cli("stats", "--store", pg_store)
    assert stats.code == 0 and "postgresql://" in stats.out
    missing = cli("runs", "list", "--store", pg_store.rsplit("/", 1)[0] + "/nosuchdb")
    assert missing.code != 0 and "nosuchdb" in missing.err
    # A fresh process, the store named by PERDURE_STORE.
    env = {**os.environ, "PERDURE_STORE": pg_store}
    env.pop("PERDURE_PATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "perdure", "--json", "runs", "list"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {row["run_id"] for row in json.loads(done.stdout)} == {"cli-1", "cli-2"}


def test_the_cli_resumes_and_cancels_runs_in_a_postgres_store(pg_store: str) -> None:
    async def write() -> None:
        async with Runtime(pg_store, registry=REG) as rt:
            await rt.run("pg_review", "a", run_id="ask-1")
            await rt.run("pg_review", "b", run_id="ask-2")
            await rt.run("pg_review", "c", run_id="ask-3")

    asyncio.run(write())
    resumed = cli("resume", "ask-1", "--value", '"yes"', "--store", pg_store)
    assert resumed.code == 0 and "answer recorded" in resumed.out, resumed.err
    cancelled = cli("cancel", "ask-2", "--store", pg_store)
    assert cancelled.code == 0 and "cancelled (it was waiting)" in cancelled.out, cancelled.err

    async def hold_and_cancel() -> None:
        holder = PostgresEventLog(pg_store)  # another process driving ask-3
        await holder.claim_run("ask-3")
        try:
            refused = await asyncio.to_thread(cli, "cancel", "ask-3", "--store", pg_store)
        finally:
            await holder.close()
        assert refused.code == 1 and "driven by another process" in refused.err, refused

    asyncio.run(hold_and_cancel())
    nowhere = cli("cancel", "x", "--store", pg_store.rsplit("/", 1)[0] + "/nosuchdb")
    assert nowhere.code == 1 and "cannot open the store" in nowhere.err


async def test_reads_asked_at_once_survive_the_cancellation_of_one_reader(pg_store: str) -> None:
    # Reads of logs made at once go in one statement; the reader whose read sent it may be
    # cancelled (a `wait` given up) while it is in flight: the others still get their events.
    from perdure.testing.events import started

    log = PostgresEventLog(pg_store)
    try:
        for i in range(20):
            await log.append(f"batch-{i}", 0, [started(f"batch-{i}")])
        reads = [asyncio.ensure_future(log.read(f"batch-{i}")) for i in range(20)]
        await asyncio.sleep(0)  # every read queued, the statement on its way
        reads[0].cancel()
        answers = await asyncio.gather(*reads[1:])
        assert [[e.run_id for e in events] for events in answers] == [
            [f"batch-{i}"] for i in range(1, 20)
        ]
        assert [
            info.run_id
            for info in await asyncio.gather(*(log.get_run(f"batch-{i}") for i in range(3)))
        ] == ["batch-0", "batch-1", "batch-2"]
    finally:
        await log.close()
