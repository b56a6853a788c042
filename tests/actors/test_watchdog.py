"""The watchdog that sends what sync code held back (`perdure.actors._watchdog`)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from perdure.actors._watchdog import Watchdog, watchdog


def test_an_armed_item_runs_once_due_unless_claimed_first() -> None:
    dog = Watchdog()
    fired = threading.Event()
    kept: list[str] = []
    key, other = object(), object()
    dog.arm(key, 0.0, fired.set)
    dog.arm(other, 3600.0, lambda: kept.append("ran"))
    assert fired.wait(10)
    assert not dog.claim(key)  # it ran: nobody else may take it
    assert dog.claim(other)  # not due: claimed, so it never runs
    assert not dog.claim(other)
    assert kept == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads (3.12+)
def test_the_shared_watchdog_runs_in_a_forked_child() -> None:
    """A child forked after the watchdog's thread started gets a thread of its own
    (else held calls would wait for a thread that did not come along)."""
    started = threading.Event()
    watchdog.arm(started, 0.0, started.set)
    assert started.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own item fires
        fired = threading.Event()
        watchdog.arm(fired, 0.0, fired.set)
        os._exit(0 if fired.wait(10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, sys.platform
