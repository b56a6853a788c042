"""Bad input catalogue: every kind of bad input a user can give through the public API.

One table. Each row does one wrong thing against a real LMDB store that holds
finished, paused and keyed runs, and names the specific error type and a key
phrase of its message. After every row the store must be exactly as before
(every run's index entry and encoded events), except for the few rows whose
bad input is only discoverable while the run executes (a result that cannot
be stored): those record one failed run, and nothing else changes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import lmdb
import pytest

import perdure
from perdure import (
    BackoffPolicy,
    Client,
    ClientUsageError,
    Command,
    DuplicateNameError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvalidIdError,
    InvalidResumeError,
    LmdbEventLog,
    NotInWorkflowError,
    PolicyError,
    ReadOnlyStoreError,
    RetryPolicy,
    RunBusyError,
    RunExistsError,
    RunFailedError,
    RunNotFoundError,
    Runtime,
    RuntimeClosedError,
    SchemaVersionError,
    SerializationError,
    StoreLockedError,
    UnknownTargetError,
    entrypoint,
    function,
    interrupt,
    task,
)
from perdure.eventlog import RunStarted, StorageError, StorePathError, encode
from perdure.runtime import Registry
from tests.support import cfg

FIGURES = {"inputs_tried": 0}
#: What ``json.loads('"user-\\ud800"')`` gives: a str UTF-8 cannot encode.
SURROGATE = json.loads('"user-\\ud800"')


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nbad input catalogue: {FIGURES}")


@function(name="badin_add", retries=1)
def badin_add(a: int, b: int = 0) -> int:
    return a + b


@function(name="badin_other", retries=1)
def badin_other(a: int) -> int:
    return -a


@function(name="badin_returns_set", retries=1)
def badin_returns_set() -> Any:
    return {1, 2}


def _nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def _cycle() -> Any:
    value: dict[str, Any] = {"a": [1]}
    value["a"].append(value)
    return value


@function(name="badin_returns_deep", retries=1)
def badin_returns_deep(levels: int) -> Any:
    return _nested(levels)


@function(name="badin_returns_cycle", retries=1)
def badin_returns_cycle() -> Any:
    return _cycle()


@task(name="badin_step")
def badin_step(x: int) -> int:
    return x + 1


@entrypoint(name="badin_review")
def badin_review(doc: str) -> dict[str, Any]:
    draft = badin_step(len(doc)).result()
    return {"draft": draft, "verdict": interrupt({"approve": draft})}


@entrypoint(name="badin_pair")
def badin_pair(doc: str) -> list[Any]:
    futures = [badin_ask(doc + "-a"), badin_ask(doc + "-b")]
    return [f.result() for f in futures]


@task(name="badin_ask")
def badin_ask(what: str) -> Any:
    return interrupt(what)


@entrypoint(name="badin_echo")
def badin_echo(value: Any) -> Any:
    return value


@entrypoint(name="badin_bad_question")
def badin_bad_question(value: Any) -> Any:
    return interrupt(object())


@entrypoint(name="badin_bad_task_args")
def badin_bad_task_args(value: Any) -> Any:
    return badin_step(1, 2, 3).result()


@attrs.define
class World:
    """What a row may use: the open runtime and its store directory."""

    rt: Runtime
    store: Path
    tmp: Path
    #: id of the interrupt already answered in run "half-answered"
    answered: str = ""


@attrs.frozen
class Row:
    name: str
    error: type[BaseException]
    phrase: str
    act: Callable[[World], Any]
    #: The bad input only shows while the run executes: one failed run is recorded.
    records_failed_run: bool = False
    skip: str = ""


def _newer_schema_store(world: World) -> Path:
    path = world.tmp / "newer"
    path.mkdir(mode=0o700)
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    return path


async def _open_runtime_at(path: Path) -> None:
    async with Runtime(path=path):
        pass


def _second_writer(world: World) -> None:
    """Another process opens the store for writing while this runtime holds it."""
    code = (
        "import sys, perdure\n"
        "try:\n"
        "    perdure.LmdbEventLog(sys.argv[1])\n"
        "except perdure.StoreLockedError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(world.store)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"the second writer was not refused: {done.stdout}{done.stderr}")
    raise StoreLockedError(done.stdout.strip(), path=str(world.store))  # as the child saw it


def _closed_store(world: World, name: str) -> Path:
    path = world.tmp / name

    async def fill() -> None:
        log = LmdbEventLog(path)
        for n in range(60):
            await log.append(f"r{n}", 0, [_started(f"r{n}", "x" * 2000)])
        await log.close()

    asyncio.run(fill())  # in a thread of the row: no loop runs here
    return path


def _started(run_id: str, value: Any) -> RunStarted:
    return RunStarted(
        run_id=run_id,
        seq=0,
        ts=1.0,
        target="badin_echo",
        kind="workflow",
        input=value,
        input_digest="d",
        idempotency_key=None,
    )


async def _store_with_a_symlink(world: World) -> Path:
    path = await asyncio.to_thread(_closed_store, world, "linked")
    victim = world.tmp / "victim"
    victim.write_text("precious")
    (path / "journal.wal").unlink()
    (path / "journal.wal").symlink_to(victim)
    return path


async def _open_made(made: Awaitable[Path]) -> None:
    await _open_runtime_at(await made)


def _open_folder(world: World) -> Path:
    path = world.tmp / "open-folder"
    path.mkdir()
    path.chmod(0o777)
    return path


async def _truncated_store(world: World) -> Path:
    path = await asyncio.to_thread(_closed_store, world, "truncated")
    data = path / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    return path


def _foreign_function(registry: Registry) -> None:
    """A function from another module under a name already registered."""

    def mine(a: int) -> int:
        return a

    def theirs(a: int) -> int:
        return -a

    theirs.__module__ = "somewhere.else"
    function(name="badin_twin", registry=registry)(mine)
    function(name="badin_twin", registry=registry)(theirs)


async def _read_only_append(world: World) -> None:
    log = LmdbEventLog(world.store, read_only=True)
    try:
        event = RunStarted(
            run_id="ro",
            seq=0,
            ts=0.0,
            target="badin_add",
            kind="function",
            input={},
            input_digest="",
        )
        await log.append("ro", 0, [event])
    finally:
        await log.close()


async def _closed_runtime(world: World) -> None:
    rt = Runtime(path=world.tmp / "closed")
    await rt.run(badin_add, {"a": 1})


def _unwritable_dir(world: World) -> Path:
    path = world.tmp / "locked-dir"
    path.mkdir(mode=0o500)
    return path / "store"


ROWS: list[Row] = [
    # -- names and targets
    Row(
        "unknown name",
        UnknownTargetError,
        "no function or workflow named 'nope'",
        lambda w: w.rt.run("nope", {}),
    ),
    Row(
        "misspelt name",
        UnknownTargetError,
        "Did you mean 'badin_add'",
        lambda w: w.rt.run("badin_ad", {"a": 1}),
    ),
    Row("not a target", TypeError, "cannot run", lambda w: w.rt.run(print, {})),
    Row(
        "client unknown name",
        UnknownTargetError,
        "no function or workflow named",
        lambda w: Client().arun("nope_either", {}),
    ),
    Row(
        "duplicate name from another module",
        DuplicateNameError,
        "already registered",
        lambda w: _foreign_function(Registry()),
    ),
    # -- inputs that are not JSON
    Row(
        "object in input",
        SerializationError,
        "input['a'] is a object",
        lambda w: w.rt.run(badin_add, {"a": object()}),
    ),
    Row(
        "tuple in input",
        SerializationError,
        "use a list",
        lambda w: w.rt.run(badin_add, {"a": (1, 2)}),
    ),
    Row(
        "NaN in input",
        SerializationError,
        "JSON cannot represent",
        lambda w: w.rt.run(badin_add, {"a": float("nan")}),
    ),
    Row(
        "int beyond 64 bits",
        SerializationError,
        "64-bit",
        lambda w: w.rt.run(badin_add, {"a": 2**70}),
    ),
    Row(
        "non-string key",
        SerializationError,
        "keys must be strings",
        lambda w: w.rt.run(badin_add, {"a": {1: 2}}),
    ),
    Row(
        "bytes as workflow input",
        SerializationError,
        "not JSON-serialisable",
        lambda w: badin_echo.ainvoke(b"raw", cfg("t-bytes")),
    ),
    Row(
        "set as resume value",
        SerializationError,
        "not JSON-serialisable",
        lambda w: w.rt.resume("review-paused", {1, 2}),
    ),
    # Too deep for the JSON encoder (it stops at 255 levels), or deeper than Python's
    # recursion limit, or containing itself: refused up front with the path.
    Row(
        "input nested 300 levels",
        SerializationError,
        "nested more than 200 levels",
        lambda w: w.rt.run(badin_add, {"a": _nested(300)}),
    ),
    Row(
        "input nested 5000 levels",
        SerializationError,
        "nested more than 200 levels",
        lambda w: badin_echo.ainvoke(_nested(5000), cfg("t-deep")),
    ),
    Row(
        "input that contains itself",
        SerializationError,
        "input['a']['a'][1] is input['a'] itself",
        lambda w: w.rt.run(badin_add, {"a": _cycle()}),
    ),
    Row(
        "resume value nested 300 levels",
        SerializationError,
        "nested more than 200 levels",
        lambda w: w.rt.resume("review-paused", _nested(300)),
    ),
    # -- results and questions that are not JSON (found while running: one failed run)
    Row(
        "function returns a value nested 300 levels",
        RunFailedError,
        "nested more than 200 levels",
        lambda w: w.rt.run(badin_returns_deep, {"levels": 300}, run_id="bad-deep-300"),
        records_failed_run=True,
    ),
    Row(
        "function returns a value nested 3000 levels",
        RunFailedError,
        "nested more than 200 levels",
        lambda w: w.rt.run(badin_returns_deep, {"levels": 3000}, run_id="bad-deep-3000"),
        records_failed_run=True,
    ),
    Row(
        "function returns a value that contains itself",
        RunFailedError,
        "contains a cycle",
        lambda w: w.rt.run(badin_returns_cycle, {}, run_id="bad-cycle"),
        records_failed_run=True,
    ),
    Row(
        "function returns a set",
        RunFailedError,
        "cannot be stored",
        lambda w: w.rt.run(badin_returns_set, {}, run_id="bad-result"),
        records_failed_run=True,
    ),
    Row(
        "interrupt with an object",
        RunFailedError,
        "SerializationError",
        lambda w: badin_bad_question.ainvoke(1, cfg("bad-question")),
        records_failed_run=True,
    ),
    Row(
        "task called with wrong arguments",
        RunFailedError,
        "InvalidArgumentsError",
        lambda w: badin_bad_task_args.ainvoke(1, cfg("bad-task-args")),
        records_failed_run=True,
    ),
    # -- argument shapes
    Row(
        "function input not a dict",
        InvalidArgumentsError,
        "takes a dict of keyword arguments",
        lambda w: w.rt.run(badin_add, [1, 2]),
    ),
    Row(
        "missing argument",
        InvalidArgumentsError,
        "missing a required argument",
        lambda w: w.rt.run(badin_add, {"b": 1}),
    ),
    Row(
        "unexpected argument",
        InvalidArgumentsError,
        "unexpected keyword argument",
        lambda w: w.rt.run(badin_add, {"a": 1, "c": 2}),
    ),
    Row(
        "entrypoint with two inputs",
        InvalidArgumentsError,
        "exactly one positional input",
        lambda w: entrypoint(name="badin_two", registry=Registry())(lambda a, b: a),
    ),
    Row(
        "task outside a workflow",
        NotInWorkflowError,
        "can only be used while",
        lambda w: badin_step(1),
    ),
    Row(
        "interrupt outside a workflow",
        NotInWorkflowError,
        "can only be used while",
        lambda w: interrupt("hello?"),
    ),
    Row(
        "durable sleep of a string",
        TypeError,
        "needs a number of seconds",
        lambda w: perdure.sleep("soon"),
    ),  # type: ignore[arg-type]
    Row(
        "checkpointer not a log",
        TypeError,
        "checkpointer must be a store",
        lambda w: entrypoint(checkpointer=42),  # a folder or URL string is a store now
    ),  # type: ignore[arg-type]
    Row(
        "unknown stream mode",
        ValueError,
        "unknown stream_mode",
        lambda w: anext(badin_echo.astream(1, cfg("t-stream"), stream_mode="everything")),
    ),
    # -- policies
    Row(
        "zero attempts",
        PolicyError,
        "max_attempts must be an int >= 1",
        lambda w: RetryPolicy(max_attempts=0),
    ),
    Row(
        "retries=0", PolicyError, "retries=0", lambda w: function(retries=0)(badin_add.__wrapped__)
    ),
    Row(
        "retries as a string",
        PolicyError,
        "retries must be an int",
        lambda w: function(retries="3")(badin_add.__wrapped__),
    ),  # type: ignore[arg-type]
    Row(
        "negative interval",
        PolicyError,
        "initial_interval_ms must be a number >= 0",
        lambda w: RetryPolicy(initial_interval_ms=-1),
    ),
    Row(
        "max below initial",
        PolicyError,
        "is below initial_interval_ms",
        lambda w: RetryPolicy(initial_interval_ms=5000, max_interval_ms=10),
    ),
    Row(
        "jitter above 1",
        PolicyError,
        "jitter must be between 0 and 1",
        lambda w: RetryPolicy(jitter=2),
    ),
    Row(
        "non_retryable not exceptions",
        PolicyError,
        "must hold exception classes",
        lambda w: RetryPolicy(non_retryable=(42,)),
    ),  # type: ignore[arg-type]
    Row(
        "unknown backoff",
        PolicyError,
        "backoff must be one of",
        lambda w: function(backoff="sideways")(badin_add.__wrapped__),
    ),
    Row(
        "zero multiplier",
        PolicyError,
        "multiplier must be > 0",
        lambda w: BackoffPolicy(multiplier=0),
    ),
    Row(
        "negative timeout",
        PolicyError,
        "timeout must be a number of seconds > 0",
        lambda w: function(timeout=-1)(badin_add.__wrapped__),
    ),
    Row(
        "task timeout zero",
        PolicyError,
        "timeout must be a number of seconds > 0",
        lambda w: task(timeout=0)(badin_step.__wrapped__),
    ),
    # -- resume
    Row(
        "resume a finished function run",
        InvalidResumeError,
        "has no pending interrupt",
        lambda w: w.rt.resume("fn-done", "yes"),
    ),
    Row(
        "resume a finished workflow",
        InvalidResumeError,
        "has no pending interrupt",
        lambda w: badin_echo.ainvoke(Command(resume="late"), cfg("echo-done")),
    ),
    Row(
        "resume two pending with one value",
        InvalidResumeError,
        "2 pending interrupts",
        lambda w: w.rt.resume("pair-paused", "both?"),
    ),
    Row(
        "resume an answered interrupt id",
        InvalidResumeError,
        "already answered",
        lambda w: w.rt.resume("half-answered", {w.answered: "again"}),
    ),
    Row(
        "resume without a thread",
        ValueError,
        "ainvoke() needs a thread id",
        lambda w: badin_review.ainvoke(Command(resume="x")),
    ),
    Row(
        "Command to an unknown run",
        RunNotFoundError,
        "no run with id 'ghost'",
        lambda w: w.rt.send("ghost", Command(resume=1)),
    ),
    Row(
        "Command to an unknown thread",
        RunNotFoundError,
        "no run with id 'ghost-thread'",
        lambda w: badin_review.ainvoke(Command(resume=1), cfg("ghost-thread")),
    ),
    Row(
        "send a message that cannot be stored",
        SerializationError,
        "message['when'] is a set",
        lambda w: w.rt.send("review-paused", {"when": {1, 2}}),
    ),
    Row(
        "send a message on a topic that is not text",
        TypeError,
        "topic",
        lambda w: w.rt.send("review-paused", "hi", topic=7),  # type: ignore[arg-type]
    ),
    Row(
        "send a message to an unknown run",
        RunNotFoundError,
        "no run with id",
        lambda w: w.rt.send("ghost", "hi"),
    ),
    Row(
        "cancel an unknown run", RunNotFoundError, "no run with id", lambda w: w.rt.cancel("ghost")
    ),
    Row("wait on an unknown run", RunNotFoundError, "no run with id", lambda w: w.rt.wait("ghost")),
    Row(
        "status of an unknown run",
        RunNotFoundError,
        "no run with id",
        lambda w: w.rt.status("ghost"),
    ),
    Row(
        "continue an unknown run",
        RunNotFoundError,
        "no run with id",
        lambda w: w.rt.continue_run("ghost"),
    ),
    # -- ids and keys
    Row(
        "conflicting idempotency key",
        IdempotencyConflictError,
        "with a different input",
        lambda w: w.rt.run(badin_add, {"a": 100}, idempotency_key="key-1"),
    ),
    Row(
        "idempotency key of another function",
        IdempotencyConflictError,
        "of 'badin_add', not 'badin_other'",
        lambda w: w.rt.run(badin_other, {"a": 1}, idempotency_key="key-1"),
    ),
    Row(
        "thread id of another workflow",
        RunExistsError,
        "is already used by workflow 'badin_echo'",
        lambda w: w.rt.start(badin_review, "doc", run_id="echo-done"),
    ),
    Row(
        "empty idempotency key",
        ValueError,
        "idempotency_key must be a non-empty string",
        lambda w: w.rt.run(badin_add, {"a": 1}, idempotency_key=""),
    ),
    Row(
        "idempotency key not a string",
        ValueError,
        "idempotency_key must be",
        lambda w: w.rt.run(badin_add, {"a": 1}, idempotency_key=7),
    ),  # type: ignore[arg-type]
    Row(
        "empty run id",
        ValueError,
        "run_id must be a non-empty string",
        lambda w: w.rt.start(badin_add, {"a": 1}, run_id=""),
    ),
    Row(
        "run id with NUL",
        ValueError,
        "without NUL",
        lambda w: w.rt.start(badin_add, {"a": 1}, run_id="a\0b"),
    ),
    Row(
        "run id too long",
        ValueError,
        "at most",
        lambda w: w.rt.start(badin_add, {"a": 1}, run_id="r" * 500),
    ),
    Row(
        "run id not a string",
        ValueError,
        "run_id must be",
        lambda w: w.rt.start(badin_add, {"a": 1}, run_id=42),
    ),  # type: ignore[arg-type]
    Row(
        "run id already used",
        RunExistsError,
        "is already used",
        lambda w: w.rt.start(badin_add, {"a": 5}, run_id="fn-done"),
    ),
    Row(
        "new invocation on a paused thread",
        RunBusyError,
        "finish it first",
        lambda w: w.rt.start(badin_review, "again", run_id="review-paused"),
    ),
    Row(
        "empty thread id",
        ValueError,
        "thread_id must be a non-empty string",
        lambda w: badin_echo.ainvoke(1, cfg("")),
    ),
    Row(
        "thread id not a string",
        ValueError,
        "thread_id must be a non-empty string",
        lambda w: badin_echo.ainvoke(1, cfg(7)),
    ),
    Row(
        "thread id with NUL",
        ValueError,
        "without NUL",
        lambda w: badin_echo.ainvoke(1, cfg("t\0t")),
    ),
    # -- ids that UTF-8 cannot encode (a lone surrogate, as json.loads makes from "\ud800")
    Row(
        "run id with a lone surrogate",
        InvalidIdError,
        "run_id must be text that UTF-8 can encode",
        lambda w: w.rt.run(badin_add, {"a": 1}, run_id=SURROGATE),
    ),
    Row(
        "started run id with a lone surrogate",
        InvalidIdError,
        "lone surrogate '\\ud800' at position 5",
        lambda w: w.rt.start(badin_add, {"a": 1}, run_id=SURROGATE),
    ),
    Row(
        "idempotency key with a lone surrogate",
        InvalidIdError,
        "idempotency_key must be text that UTF-8 can encode",
        lambda w: w.rt.run(badin_add, {"a": 1}, idempotency_key=SURROGATE),
    ),
    Row(
        "thread id with a lone surrogate",
        InvalidIdError,
        "thread_id must be text that UTF-8 can encode",
        lambda w: badin_echo.ainvoke(1, cfg(SURROGATE)),
    ),
    Row(
        "client run id with a lone surrogate",
        InvalidIdError,
        "run_id must be text",
        lambda w: Client().arun("badin_add", {"a": 1}, run_id=SURROGATE),
    ),
    Row(
        "resume a run id with a lone surrogate",
        InvalidIdError,
        "run_id must be text",
        lambda w: w.rt.resume(SURROGATE, "yes"),
    ),
    Row(
        "status of a run id with a lone surrogate",
        InvalidIdError,
        "run_id must be text",
        lambda w: w.rt.status(SURROGATE),
    ),
    Row(
        "wait on a run id with a lone surrogate",
        InvalidIdError,
        "run_id must be text",
        lambda w: w.rt.wait(SURROGATE),
    ),
    Row(
        "target name with a lone surrogate",
        InvalidIdError,
        "target must be text",
        lambda w: w.rt.run(SURROGATE, {}),
    ),
    Row(
        "function name with a lone surrogate",
        InvalidIdError,
        "name must be text",
        lambda w: function(name=SURROGATE, registry=Registry())(badin_add.__wrapped__),
    ),
    Row(
        "task name with a lone surrogate",
        InvalidIdError,
        "name must be text",
        lambda w: task(name=SURROGATE)(badin_add.__wrapped__),
    ),
    Row(
        "cancel reason with a lone surrogate",
        SerializationError,
        "cannot record this reason",
        lambda w: w.rt.cancel("review-paused", "because " + SURROGATE),
    ),
    # -- stores
    Row(
        "second writer (another process)",
        StoreLockedError,
        "already open for writing by another process",
        _second_writer,
    ),
    Row(
        "second writer after perdure.lock was deleted",
        StoreLockedError,
        "already open for writing by another process",
        lambda w: (w.store / "perdure.lock").unlink() or _second_writer(w),
    ),
    Row(
        "store file symlinked elsewhere",
        StorePathError,
        "is a symbolic link",
        lambda w: _open_made(_store_with_a_symlink(w)),
    ),
    Row(
        "store folder writable by others",
        StorePathError,
        "writable by group or others",
        lambda w: _open_runtime_at(_open_folder(w)),
    ),
    Row(
        "truncated data file",
        StorageError,
        "is truncated",
        lambda w: _open_made(_truncated_store(w)),
    ),
    Row(
        "store path is a file",
        StorePathError,
        "is a file, not a directory",
        lambda w: _open_runtime_at(_a_file(w)),
    ),
    Row(
        "store path inside a file",
        StorePathError,
        "cannot create the store directory",
        lambda w: _open_runtime_at(_a_file(w) / "store"),
    ),
    Row(
        "store path not writable",
        StorePathError,
        "not writable",
        lambda w: _open_runtime_at(_unwritable_dir(w)),
        skip="root ignores directory permissions" if os.geteuid() == 0 else "",
    ),
    Row(
        "store in an unwritable location",
        StorePathError,
        "cannot create the store directory",
        lambda w: _open_runtime_at(Path("/proc/perdure-store")),
    ),
    Row(
        "store from a newer schema",
        SchemaVersionError,
        "newer than this perdure supports",
        lambda w: _open_runtime_at(_newer_schema_store(w)),
    ),
    Row(
        "read-only open of a missing store",
        StorePathError,
        "there is no store",
        lambda w: LmdbEventLog(w.tmp / "missing", read_only=True),
    ),
    Row("write to a read-only log", ReadOnlyStoreError, "read-only", _read_only_append),
    Row(
        "unknown durability",
        ValueError,
        "durability must be",
        lambda w: LmdbEventLog(w.tmp / "d", durability="sometimes"),
    ),  # type: ignore[arg-type]
    Row("runtime used before open", RuntimeClosedError, "not open", _closed_runtime),
    Row(
        "blocking client call inside a loop",
        ClientUsageError,
        "use `await client.arun",
        lambda w: Client().run("badin_add", {"a": 1}),
    ),
]


def _a_file(world: World) -> Path:
    path = world.tmp / "a-file"
    path.write_text("not a store")
    return path


async def _snapshot(rt: Runtime) -> dict[str, Any]:
    runs = await rt.list_runs()
    return {
        info.run_id: (info, [encode(e) for e in await rt.log.read(info.run_id)]) for info in runs
    }


async def _fill(rt: Runtime) -> str:
    """Finished, keyed and paused runs; returns the answered interrupt of "half-answered"."""
    await rt.run(badin_add, {"a": 1, "b": 2}, run_id="fn-done")
    await rt.run(badin_add, {"a": 1}, idempotency_key="key-1")
    await badin_echo.ainvoke({"x": 1}, cfg("echo-done"))
    await rt.start(badin_review, "draft", run_id="review-paused")
    assert (await rt.wait("review-paused")).status == "waiting"
    for run_id in ("pair-paused", "half-answered"):
        await rt.start(badin_pair, "doc", run_id=run_id)
        paused = await rt.wait(run_id)
        assert len(paused.interrupts) == 2
    answered = paused.interrupts[0].id
    await rt.resume("half-answered", {answered: "yes"})
    assert len((await rt.wait("half-answered")).interrupts) == 1
    return answered


async def _try(row: Row, world: World) -> None:
    result = row.act(world)
    if inspect.isawaitable(result):
        await asyncio.wait_for(result, 30)


async def test_every_bad_input_gets_its_specific_error_and_leaves_the_log_unchanged(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    problems: list[str] = []
    async with Runtime(path=store, idle_timeout=0.05) as rt:
        world = World(rt=rt, store=store, tmp=tmp_path, answered=await _fill(rt))
        for row in ROWS:
            if row.skip:
                continue
            before = await _snapshot(rt)
            FIGURES["inputs_tried"] += 1
            try:
                await _try(row, world)
            except row.error as exc:
                if row.phrase not in str(exc):
                    problems.append(f"{row.name}: message {str(exc)!r} lacks {row.phrase!r}")
            except BaseException as exc:  # report every row, not just the first
                problems.append(f"{row.name}: raised {type(exc).__name__}: {exc}")
            else:
                problems.append(f"{row.name}: no error (expected {row.error.__name__})")
            after = await _snapshot(rt)
            if row.records_failed_run:
                new = {k: v for k, v in after.items() if k not in before}
                if len(new) != 1 or next(iter(new.values()))[0].status != "failed":
                    problems.append(f"{row.name}: expected one new failed run, got {list(new)}")
                after = {k: v for k, v in after.items() if k in before}
            if after != before:
                changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
                problems.append(f"{row.name}: the log changed for {changed}")
    assert not problems, "\n".join(problems)
    assert FIGURES["inputs_tried"] >= 60


async def test_ids_with_control_characters_are_valid_and_kept_exactly(tmp_path: Path) -> None:
    """Control characters are not bad input in an id: stored exactly, escaped only on display."""
    ids = ["ctl-\x1b[2J\x1b[31m", "ctl-line\nbreak", "ctl-\u202eevil", "ctl-\x9b-c1", "ctl-\t"]
    async with Runtime(path=tmp_path / "store") as rt:
        for run_id in ids:
            assert await rt.run(badin_add, {"a": 1}, run_id=run_id, idempotency_key=run_id) == 1
            assert await badin_echo.ainvoke(run_id, cfg(run_id + "-thread")) == run_id
        listed = {info.run_id: info for info in await rt.list_runs()}
    for run_id in ids:
        assert listed[run_id].idempotency_key == run_id
        assert run_id + "-thread" in listed


#: "PDJ1" + 8 bytes whose CRC works out: placed on a journal page boundary, a store
#: before the journal salt took it for a frame and refused every later open.
CRAFTED = "PDJ1ZJPLsG3-"


async def _crafted_key_on_a_page_boundary(rt: Runtime, store: Path) -> None:
    """Events of run CRAFTED whose key (``id ‖ 0x00 ‖ seq``) starts a journal page: the first
    event of a two-event batch is sized so that the second one's key lands there."""
    started = RunStarted(
        run_id=CRAFTED, seq=0, ts=1.0, target="badin_echo", kind="workflow",
        input=None, input_digest="d", idempotency_key=None,
    )  # fmt: skip
    await rt.log.append(CRAFTED, 0, [started])
    seq, size = 1, 100
    for _ in range(4):
        batch = [
            perdure.eventlog.TaskCompleted(
                run_id=CRAFTED,
                seq=seq + i,
                ts=2.0,
                position=str(seq + i),
                name="s",
                input_digest="d",
                result="x" * size if i == 0 else None,
            )
            for i in range(2)
        ]
        await rt.log.append(CRAFTED, seq, batch)
        seq += 2
        journal = (store / "journal.wal").read_bytes()
        where = journal.rfind(CRAFTED.encode() + b"\0" + (seq - 1).to_bytes(8, "big"))
        if where % 4096 == 0:
            return
        size += 4096 - where % 4096
    raise AssertionError("the crafted key never reached a page boundary")


async def test_ids_and_values_that_look_like_journal_frames_never_brick_the_store(
    tmp_path: Path,
) -> None:
    """A crafted id whose event key starts a journal page, and thread ids and values full of
    frame-like headers: every later open of the store works and reads them all."""
    store = tmp_path / "store"
    value_of: dict[str, Any] = {}
    async with Runtime(path=store) as rt:
        await _crafted_key_on_a_page_boundary(rt, store)
        for pad in range(0, 4096, 97):
            thread = f"{CRAFTED}{pad}"
            value = ["x" * pad, CRAFTED * 3, "PDJ2" + "\u0000" * 28, "PDJH" * 8]
            assert await badin_echo.ainvoke(value, cfg(thread)) == value
            value_of[thread] = value
    for round_ in range(2):  # each open restarts the journal below the crafted page
        async with Runtime(path=store) as rt:
            for thread, value in value_of.items():
                assert (await rt.wait(thread)).result == value
            assert len(await rt.log.read(CRAFTED)) >= 3
            assert await badin_echo.ainvoke(1, cfg(f"after-{round_}")) == 1
