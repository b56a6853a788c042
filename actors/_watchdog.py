"""Hands over, a moment later, what sync code held back to save a thread crossing.

Sync workflow code (a `def` body or task in a pool thread) keeps two things to
itself for a few milliseconds, because most often it needs them back at once:

- a sync task call it has not waited on yet (`Scope.deferred`): waited on
  right away, it runs in the code's own thread (`Execution.run_inline`);
- the start of such an inline attempt: it goes to the actor with the
  attempt's outcome, in one message.

If the moment passes (the code went on with other work, or the task runs
long), this thread sends the held item the usual way, so a task called and
not waited on still starts while the code goes on, and a long attempt's
start still becomes durable (within about `attempt_linger` more). Whoever
takes an item first (`claim`, or this thread when it is due) owns it.

The thread ticks only while items were armed recently; otherwise it sleeps
until the next `arm`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

#: How often the thread looks for due items while any were armed lately (seconds).
TICK = 0.002
#: How long it keeps ticking after the last item went (seconds).
_IDLE = 0.2

_log = logging.getLogger("perdure")


class Watchdog:
    """Items armed with a delay and an action; the action runs once due, unless claimed."""

    def __init__(self) -> None:
        #: id(key) -> (due, action, key): the key stays referenced while it is armed.
        self._armed: dict[int, tuple[float, Callable[[], object], object]] = {}
        self._awake = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, key: object, delay: float, action: Callable[[], object]) -> None:
        """Run `action` in this thread `delay` seconds from now, unless `key` is claimed first."""
        self._armed[id(key)] = (time.monotonic() + delay, action, key)
        if not self._awake.is_set():
            self._wake()

    def claim(self, key: object) -> bool:
        """Take `key` back: True if it was armed and its action has not run (nor will)."""
        return self._armed.pop(id(key), None) is not None

    def _wake(self) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._main, name="perdure-watchdog", daemon=True
                    )
                    self._thread.start()
        self._awake.set()

    def _main(self) -> None:
        quiet_since: float | None = None
        while True:
            self._awake.wait()
            time.sleep(TICK)
            now = time.monotonic()
            if not self._armed:
                if quiet_since is None:
                    quiet_since = now
                elif now - quiet_since > _IDLE:
                    quiet_since = None
                    self._awake.clear()
                    if self._armed:  # armed meanwhile, and saw the flag still set
                        self._awake.set()
                continue
            quiet_since = None
            for ident, (due, action, _) in list(self._armed.items()):
                if due <= now and self._armed.pop(ident, None) is not None:
                    try:
                        action()
                    except Exception:  # e.g. a closed loop: nobody waits for it any more
                        _log.debug("perdure watchdog: a held item could not be sent", exc_info=True)

    def _forget_thread(self) -> None:
        """In a forked child: the thread did not come along; the next `arm` starts one."""
        self._thread = None
        self._awake = threading.Event()
        self._start = threading.Lock()


watchdog = Watchdog()
os.register_at_fork(after_in_child=watchdog._forget_thread)
