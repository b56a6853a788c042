"""Snapshots of the folded state (issue 17's resume target): faster, never different.

A snapshot is the state folded from a run's first events, kept beside the LMDB
log. Resuming from it must give exactly what folding the whole log gives, and
a snapshot that is missing, corrupt, stale (taken from another log) or written
by another fold must be ignored, with the same result. Replay strictness is
unchanged: a body that no longer fits the log fails as it did.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from perdure import Command, LmdbEventLog, Runtime, entrypoint, interrupt, task
from perdure.actors import _snapshot, fold
from perdure.actors._snapshot import decode_state, encode_state, load_state
from perdure.actors._state import apply
from perdure.errors import NonDeterminismError
from perdure.eventlog import from_dict
from perdure.eventlog._lmdb_snapshot import SNAPSHOT_DIR, snapshot_file
from perdure.runtime import Registry
from perdure.testing import MockClock
from tests.golden.test_golden import LOGS, load
from tests.support import cfg

STEPS = 12


def _golden_runs() -> list[tuple[str, list[Any]]]:
    runs: dict[str, list[Any]] = {}
    for path in LOGS:
        for record in load(path):
            event = from_dict(record)
            runs.setdefault(f"{path.stem}/{event.run_id}", []).append(event)
    return sorted(runs.items())


@pytest.mark.parametrize(
    ("name", "events"), _golden_runs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_snapshot_at_any_seq_plus_the_events_after_it_is_the_fold_of_all(
    name: str, events: list[Any]
) -> None:
    run_id = events[0].run_id
    whole = fold(run_id, events)
    for cut in range(1, len(events) + 1):
        state = fold(run_id, events[:cut])
        payload = encode_state(state)
        assert payload is not None, f"{name}: no snapshot at {cut}"
        restored = decode_state(run_id, payload)
        assert restored == state, f"{name}: snapshot at {cut} differs"
        for interrupt_id, asked in restored.interrupts.items():  # one object, as the fold has
            assert restored.steps[asked.position] is asked, interrupt_id
        for event in events[cut:]:
            apply(restored, event)
        assert restored == whole, f"{name}: snapshot at {cut} + the rest differs"


def test_a_snapshot_of_another_fold_or_run_or_garbage_decodes_to_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = _golden_runs()[0][1]
    run_id = events[0].run_id
    payload = encode_state(fold(run_id, events))
    assert payload is not None
    assert decode_state(run_id, payload) is not None
    assert decode_state("another-run", payload) is None
    assert decode_state(run_id, payload[: len(payload) // 2]) is None
    assert decode_state(run_id, b"[]") is None
    monkeypatch.setattr(_snapshot, "_TAG", ["a fold of another perdure"])
    assert decode_state(run_id, payload) is None


# -- on the LMDB store ------------------------------------------------------------------------

REG = Registry()
EXECUTED: list[int] = []


@task(name="snap_add")
async def add(i: int) -> int:
    EXECUTED.append(i)
    return i


@entrypoint(registry=REG, name="snap_flow")
async def flow(n: int) -> dict[str, Any]:
    total = 0
    for i in range(n):
        total += await add(i)
    answer = interrupt("go on?")
    return {"total": total, "answer": answer}


CHANGED = Registry()


@task(name="snap_add")
async def add_changed(i: int) -> int:
    return i


@entrypoint(registry=CHANGED, name="snap_flow")
async def flow_changed(n: int) -> dict[str, Any]:
    total = 0
    for i in range(n):
        total += await add_changed(i + (i == STEPS - 3))  # one input differs from the log
    return {"total": total, "answer": interrupt("go on?")}


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store holding a run of STEPS tasks waiting on an interrupt, with its snapshot."""
    monkeypatch.setattr(_snapshot, "SNAPSHOT_AFTER", 5)
    store = tmp_path / "recorded"

    async def record() -> None:
        async with Runtime(path=store, registry=REG, clock=MockClock()):
            paused = await flow.ainvoke(STEPS, cfg("t"))
            assert paused["__interrupt__"][0].value == "go on?"

    asyncio.run(record())
    assert os.path.exists(snapshot_file(str(store), "t"))
    return store


async def _resume(store: Path) -> tuple[Any, int]:
    """Resume the run in a new runtime; its result and the events its snapshot covered."""
    log = LmdbEventLog(store)
    try:
        _, covered = await load_state(log, "t")
        folded = fold("t", await log.read("t"))
        state, _ = await load_state(log, "t")
        assert state == folded
    finally:
        await log.close()
    EXECUTED.clear()
    async with Runtime(path=store, registry=REG, clock=MockClock()):
        result = await flow.ainvoke(Command(resume="yes"), cfg("t"))
    assert EXECUTED == []  # no task ran again
    return result, covered


EXPECTED = {"total": sum(range(STEPS)), "answer": "yes"}


def _damage(store: Path, how: Any) -> None:
    path = Path(snapshot_file(str(store), "t"))
    path.write_bytes(how(path.read_bytes()))


def _has_snapshot(store: Path) -> bool:
    return os.path.exists(snapshot_file(str(store), "t"))


def _copy(store: Path, name: str) -> Path:
    dest = store.parent / name
    shutil.copytree(store, dest)
    return dest


async def test_resume_from_a_snapshot(recorded: Path) -> None:
    result, covered = await _resume(_copy(recorded, "present"))
    assert result == EXPECTED
    assert covered == 2 * STEPS + 2  # started, STEPS x (attempt, result), interrupted


async def test_resume_without_the_snapshot(recorded: Path) -> None:
    store = _copy(recorded, "absent")
    shutil.rmtree(store / SNAPSHOT_DIR)
    assert await _resume(store) == (EXPECTED, 0)


async def test_a_corrupt_snapshot_is_ignored(recorded: Path) -> None:
    store = _copy(recorded, "corrupt")
    _damage(
        store,
        lambda data: (
            data[: len(data) // 2]
            + bytes([data[len(data) // 2] ^ 0x40])
            + data[len(data) // 2 + 1 :]
        ),
    )
    assert await _resume(store) == (EXPECTED, 0)


async def test_a_truncated_snapshot_is_ignored(recorded: Path) -> None:
    store = _copy(recorded, "truncated")
    _damage(store, lambda data: data[:-7])
    assert await _resume(store) == (EXPECTED, 0)


async def test_a_stale_snapshot_from_another_log_is_ignored(
    recorded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another store with a run of the same id and the same length, but other events
    # (other timestamps): its snapshot is sound, and does not belong to this log.
    other = tmp_path / "other"

    async def record_other() -> None:
        clock = MockClock()
        clock.advance(1000.0)
        async with Runtime(path=other, registry=REG, clock=clock):
            await flow.ainvoke(STEPS, cfg("t"))

    await record_other()
    store = _copy(recorded, "stale")
    shutil.copyfile(snapshot_file(str(other), "t"), snapshot_file(str(store), "t"))
    assert await _resume(store) == (EXPECTED, 0)


async def test_a_snapshot_of_another_fold_is_ignored(
    recorded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _copy(recorded, "refolded")
    monkeypatch.setattr(_snapshot, "_TAG", ["the fold of a later perdure"])
    assert await _resume(store) == (EXPECTED, 0)


async def test_a_snapshot_keeps_replay_strict(recorded: Path) -> None:
    store = _copy(recorded, "strict")
    async with Runtime(path=store, registry=CHANGED, clock=MockClock()):
        with pytest.raises(NonDeterminismError) as caught:
            await flow_changed.ainvoke(Command(resume="yes"), cfg("t"))
    assert caught.value.position == str(STEPS - 3)


async def test_a_short_run_gets_no_snapshot(tmp_path: Path) -> None:
    store = tmp_path / "short"
    async with Runtime(path=store, registry=REG, clock=MockClock()):
        await flow.ainvoke(3, cfg("t"))
    assert not _has_snapshot(store)
