"""A long history is decoded with the cyclic GC paused, and the GC's state is restored after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perdure.eventlog import LmdbEventLog, RunStarted, TaskCompleted
from perdure.eventlog._codec import GC_PAUSE_FROM, gc_paused


@pytest.fixture(autouse=True)
def _gc_enabled_after() -> Iterator[None]:
    yield
    gc.enable()


def test_a_pause_disables_the_gc_and_enables_it_again() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_concurrent_pauses_enable_the_gc_when_the_last_one_ends() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread still decodes
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_an_application_that_disabled_the_gc_keeps_it_disabled() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


async def test_reading_a_long_history_leaves_the_gc_as_it_was(tmp_path: Path) -> None:
    log = LmdbEventLog(tmp_path / "s", durability="process")
    try:
        events: list[Any] = [
            RunStarted(
                run_id="r", seq=0, ts=1.0, target="t", kind="workflow", input=None, input_digest="d"
            )
        ]
        events += [
            TaskCompleted(
                run_id="r", seq=i, ts=1.0, position=str(i), name="t", input_digest="d", result=i
            )
            for i in range(1, GC_PAUSE_FROM + 2)
        ]
        await log.append("r", 0, events)
        assert gc.isenabled()
        read = await log.read("r")
        assert read == events
        assert gc.isenabled()
    finally:
        await log.close()
