"""Security: a crafted log cannot run code when read or replayed; store files are owner-only.

The log is JSON in a checksummed envelope; decoding is JSON parsing plus
construction of perdure's own event classes, chosen by wire name from a fixed
table. These tests write hostile records (pickle-looking payloads,
``__reduce__``-style dicts, type tags naming Python paths, raw pickle bytes)
into a real store and read, resume and replay them. A canary module on
``sys.path`` writes a file if anything ever imports or calls it.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import os
import pickle  # only to build hostile bytes; never to read anything
import stat
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from perdure import LmdbEventLog, Replayer, Runtime, entrypoint, task
from perdure.errors import CorruptEventError, SchemaVersionError
from perdure.eventlog import (
    Interrupted,
    RunCompleted,
    RunStarted,
    TaskAttemptStarted,
    TaskCompleted,
    decode,
    encode,
)
from perdure.testing import MockClock

ROOT = Path(__file__).resolve().parents[2]
CANARY_MODULE = "perdure_canary_probe"
FIGURES = {"hostile_payloads": 0, "hostile_records": 0}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nsecurity: {FIGURES}")


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module whose import or call leaves a file behind; yields that file's path."""
    fired = tmp_path / "canary-fired"
    source = (
        "import pathlib\n"
        f"pathlib.Path({str(fired)!r}).write_text('imported')\n"
        "def boom(*args, **kwargs):\n"
        f"    pathlib.Path({str(fired)!r}).write_text('called')\n"
        "class Boom:\n"
        "    def __init__(self, *a, **k):\n"
        "        boom()\n"
        "    def __reduce__(self):\n"
        "        return (boom, ())\n"
    )
    (tmp_path / f"{CANARY_MODULE}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield fired
    assert not fired.exists(), f"the canary fired: {fired.read_text()}"
    assert CANARY_MODULE not in sys.modules


def _pickle_of_canary(tmp_path: Path) -> bytes:
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(CANARY_MODULE)
        data = pickle.dumps(module.Boom.__new__(module.Boom))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(CANARY_MODULE, None)
        (tmp_path / "canary-fired").unlink()  # importing it here, to build the bytes, fired it
    return data


def hostile_payloads(pickled: bytes) -> list[Any]:
    """JSON values shaped like the object encodings of pickle, jsonpickle, YAML, .NET, ..."""
    path = f"{CANARY_MODULE}.boom"
    return [
        {"__reduce__": [path, ["rm -rf /"]]},
        {"py/object": f"{CANARY_MODULE}.Boom"},
        {"py/reduce": [{"py/function": path}, {"py/tuple": []}]},
        {"!!python/object/apply:" + path: []},
        {"__class__": f"{CANARY_MODULE}.Boom", "__module__": CANARY_MODULE, "__dict__": {}},
        {"$type": f"{CANARY_MODULE}.Boom, Canary"},
        {"t": "run_started", "v": 1, "target": path},
        {"__perdure_target__": path, "spec": {"name": path}},
        pickled.decode("latin-1"),
        base64.b64encode(pickled).decode(),
        "cos\nsystem\n(S'echo pwned'\ntR.",
        [path, {"args": [path]}],
    ]


def _record(run_id: str, seq: int, body: dict[str, Any] | bytes) -> bytes:
    """A stored record as an attacker with write access would craft it (valid CRC included)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    crc = zlib.crc32(raw, zlib.crc32(struct.pack(">Q", seq), zlib.crc32(run_id.encode())))
    return struct.pack(">BI", 1, crc) + raw


def hostile_records(pickled: bytes) -> list[bytes]:
    """Records whose type tag or structure tries to make the decoder build something else."""
    path = f"{CANARY_MODULE}.Boom"
    base = {"ts": 0.0, "v": 1}
    return [
        _record("r", 0, {**base, "t": path}),
        _record("r", 0, {**base, "t": "RunStarted"}),  # the Python class name, not a wire name
        _record("r", 0, {**base, "t": "builtins.eval", "source": "__import__('os')"}),
        _record("r", 0, {**base, "t": {"py/type": path}}),
        _record("r", 0, {**base, "t": "run_completed", "v": path, "result": 1}),
        _record("r", 0, {**base, "t": "run_completed", "v": 99, "result": 1}),
        _record("r", 0, {**base, "t": "task_completed", "position": {"py/object": path}}),
        _record("r", 0, {"t": "run_cancelled", "v": 1, "ts": {"__reduce__": [path, []]}}),
        _record("r", 0, pickled),
        _record("r", 0, b"\x80\x04" + pickled),
        pickled,
        b"\x01" + pickled,
    ]


@entrypoint(name="sec_flow")
def sec_flow(value: Any) -> Any:
    echoed = sec_echo(value).result()
    return {"input": value, "echoed": echoed}


@task(name="sec_echo")
def sec_echo(value: Any) -> Any:
    return value


def test_decoding_hostile_records_yields_only_the_documented_errors(
    canary: Path, tmp_path: Path
) -> None:
    for record in hostile_records(_pickle_of_canary(tmp_path)):
        FIGURES["hostile_records"] += 1
        with pytest.raises((CorruptEventError, SchemaVersionError)) as caught:
            decode("r", 0, record)
        assert caught.value.run_id == "r" and caught.value.seq == 0


def test_hostile_payloads_stay_plain_data_through_encode_and_decode(
    canary: Path, tmp_path: Path
) -> None:
    for payload in hostile_payloads(_pickle_of_canary(tmp_path)):
        FIGURES["hostile_payloads"] += 1
        event = RunStarted(
            run_id="r",
            seq=0,
            ts=0.0,
            target="sec_flow",
            kind="workflow",
            input=payload,
            input_digest="x",
        )
        back = decode("r", 0, encode(event))
        assert back == event and type(back.input) is type(payload)


async def test_a_crafted_store_cannot_run_code_when_read_resumed_or_replayed(
    canary: Path, tmp_path: Path
) -> None:
    payloads = hostile_payloads(_pickle_of_canary(tmp_path))
    store = tmp_path / "store"
    log = LmdbEventLog(store)
    try:
        for i, payload in enumerate(payloads):
            run_id = f"crafted-{i}"
            events = [
                RunStarted(
                    run_id=run_id,
                    seq=0,
                    ts=0.0,
                    target="sec_flow",
                    kind="workflow",
                    input=payload,
                    input_digest="forged",
                ),
                TaskAttemptStarted(
                    run_id=run_id,
                    seq=1,
                    ts=0.0,
                    position="0",
                    name="sec_echo",
                    input_digest="forged",
                    attempt=0,
                    input=[[payload], {}],
                ),
                TaskCompleted(
                    run_id=run_id,
                    seq=2,
                    ts=0.0,
                    position="0",
                    name="sec_echo",
                    input_digest="forged",
                    result=payload,
                ),
                Interrupted(
                    run_id=run_id, seq=3, ts=0.0, position="1", interrupt_id="i", value=payload
                ),
                RunCompleted(run_id=run_id, seq=4, ts=0.0, result=payload, saved=payload),
            ]
            await log.append(run_id, 0, events[:3], status="running")  # left running: resumed
        done = RunStarted(
            run_id="done",
            seq=0,
            ts=0.0,
            target="sec_flow",
            kind="workflow",
            input=payloads[0],
            input_digest="forged",
        )
        await log.append(
            "done",
            0,
            [
                done,
                RunCompleted(run_id="done", seq=1, ts=0.0, result=payloads[0], saved=payloads[1]),
            ],
        )
    finally:
        await log.close()
    _plant_raw_records(store, hostile_records(_pickle_of_canary(tmp_path)))

    async with Runtime(path=store, clock=MockClock()) as rt:  # recovery resumes crafted runs
        for i in range(len(payloads)):
            outcome = await asyncio.wait_for(rt.wait(f"crafted-{i}"), 10)
            # The forged digest does not match the real input: a clear replay failure, or
            # (if the digest happened to match) plain data. Never anything executed.
            assert outcome.status in ("completed", "failed")
            if outcome.status == "failed":
                assert outcome.error_type == "NonDeterminismError"
        assert (await rt.wait("done")).result == payloads[0]
        for j in range(len(hostile_records(b""))):
            with pytest.raises((CorruptEventError, SchemaVersionError)):
                await rt.wait(f"raw-{j}")
        replayer = Replayer(workflows=[sec_flow])
        for info in await rt.list_runs():
            if info.run_id.startswith("crafted-"):
                result = await replayer.areplay(info.run_id, log=rt.log)
                assert result.run_id == info.run_id


def _plant_raw_records(store: Path, records: list[bytes]) -> None:
    """Put each hostile record as event 0 of its own run, with a matching runs-index entry."""
    env = lmdb.open(str(store), max_dbs=16)
    try:
        events = env.open_db(b"events", create=False)
        runs = env.open_db(b"runs", create=False)
        with env.begin(write=True) as txn:
            for j, record in enumerate(records):
                run = f"raw-{j}".encode()
                fixed = record
                if len(record) > 5 and record[0] == 1:  # re-sign for this run id
                    fixed = _record(run.decode(), 0, record[5:])
                txn.put(run + b"\0" + (0).to_bytes(8, "big"), fixed, db=events)
                info = {
                    "target": "sec_flow",
                    "kind": "workflow",
                    "status": "completed",
                    "created_at": 0.0,
                    "updated_at": 0.0,
                    "next_seq": 1,
                    "idempotency_key": None,
                }
                txn.put(run, json.dumps(info).encode(), db=runs)
    finally:
        env.close()


FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "marshal",
    "shelve",
    "jsonpickle",
    "yaml",
}


def test_product_code_has_no_deserialiser_that_can_run_code() -> None:
    """No pickle-like module is imported and eval/exec are never called in perdure's code."""
    found = []
    for folder in ("sdk", "runtime", "actors", "eventlog"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module.split(".")[0]]
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("eval", "exec")
                ):
                    names = [node.func.id]
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {n}"
                    for n in names
                    if n in FORBIDDEN_MODULES or n in ("eval", "exec")
                ]
    assert not found, found


@pytest.mark.parametrize("umask", [0o000, 0o022])
async def test_store_files_are_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        store = tmp_path / "nested" / "store"
        async with Runtime(path=store, clock=MockClock()) as rt:
            await rt.run(sec_flow, {"x": 1})
            await rt.log.copy(tmp_path / "backup")  # type: ignore[attr-defined]
    finally:
        os.umask(old)
    for directory in (store, tmp_path / "backup"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        files = list(directory.iterdir())
        assert any(f.name == "data.mdb" for f in files)
        for file in files:
            mode = stat.S_IMODE(file.stat().st_mode)
            assert mode & 0o077 == 0, f"{file} is {oct(mode)}"
