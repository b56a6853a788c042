"""The scheduler: fires durable timers (retry backoff, durable sleep) from the log's timer index.

Timers live in the log, so one due in 8 s still fires after a restart. The
scheduler reads the earliest pending timers, waits on the `Clock` until the
next is due (or until an actor changes the timers), and delivers each due
timer to its run's actor, which records `TimerFired` itself.

On a store shared by processes (PostgreSQL: the log has ``claim_due_timers``) the
scheduler asks only for the due timers of runs this process may drive, and the
log leases those runs to it in the same statement (``FOR UPDATE SKIP LOCKED``):
each due timer fires in one process, cluster-wide. Timers of runs another live
process holds are that process's; those whose lease expires are claimed at the
next poll (every `poll` seconds at most) and fire here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

from perdure.actors import Clock, logger
from perdure.eventlog import EventLog, TimerEntry
from perdure.eventlog.tasks import cancel_and_wait

_BATCH = 1024


class Scheduler:
    """Delivers due timers to actors; `changed()` wakes it when timers are added or removed."""

    def __init__(
        self,
        log: EventLog,
        clock: Clock,
        deliver: Callable[[TimerEntry], None],
        accept: Callable[[str], bool] | None = None,
        *,
        scope: Callable[[], tuple[Sequence[str] | None, Sequence[str] | None]] | None = None,
        poll: float = 1.0,
    ) -> None:
        self._log = log
        self._clock = clock
        self._deliver = deliver
        #: Which runs' timers to deliver (None: all); a skipped one waits for `forget_run`.
        self._accept = accept
        #: On a shared store: (targets, runs) this process may drive (None: any).
        self._scope = scope
        self._poll = poll
        self._claim: Any = getattr(log, "claim_due_timers", None)
        self._wake = asyncio.Event()
        self._inflight: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="perdure-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def changed(self) -> None:
        self._wake.set()

    def settled(self, run_id: str, timer_id: str) -> None:
        """A timer was fired or cancelled by its actor; it may be delivered again if re-set."""
        self._inflight.discard((run_id, timer_id))

    def forget_run(self, run_id: str) -> None:
        """Deliver the run's due timers again: its actor restarted (a delivery may have been
        lost), or the runtime has just taken the run on."""
        self._inflight = {key for key in self._inflight if key[0] != run_id}
        self._wake.set()

    async def _loop(self) -> None:
        if self._claim is not None:
            await self._claim_loop()
            return
        while True:
            try:
                self._wake.clear()
                # Past the ones in flight (delivered, or skipped by a runtime that does not
                # recover), so that those can never make the loop spin.
                limit = _BATCH + len(self._inflight)
                due = await self._log.due_timers(self._clock.now(), limit=limit)
                for entry in due:
                    key = (entry.run_id, entry.timer_id)
                    if key not in self._inflight:
                        self._inflight.add(key)
                        if self._accept is None or self._accept(entry.run_id):
                            self.delivered += 1
                            self._deliver(entry)
                upcoming = await self._log.due_timers(math.inf, limit=len(self._inflight) + 1)
                nxt = next(
                    (e for e in upcoming if (e.run_id, e.timer_id) not in self._inflight), None
                )
                more = len(due) == limit
                await self._wait(None if nxt is None or more else nxt.due_at, more)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a storage hiccup must not kill timers for good
                logger.error("scheduler error; retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def _claim_loop(self) -> None:
        """The loop on a shared store: claim due timers, deliver them, sleep until the next
        timer is due or `poll` passes (a lease elsewhere may expire meanwhile)."""
        next_after = self._log.next_timer_after  # type: ignore[attr-defined]
        while True:
            try:
                self._wake.clear()
                limit = _BATCH + len(self._inflight)
                targets, runs = self._scope() if self._scope is not None else (None, None)
                now = self._clock.now()
                due: list[TimerEntry] = []
                if runs is None or runs:
                    due = await self._claim(now, limit, targets=targets, runs=runs)
                for entry in due:
                    key = (entry.run_id, entry.timer_id)
                    if key not in self._inflight:
                        self._inflight.add(key)
                        self.delivered += 1
                        self._deliver(entry)
                more = len(due) == limit
                upcoming = await next_after(now)
                deadline = now + self._poll
                if upcoming is not None and upcoming < deadline:
                    deadline = upcoming
                await self._wait(deadline, more)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a storage hiccup must not kill timers for good
                logger.error("scheduler error; retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)

    async def _wait(self, deadline: float | None, more: bool) -> None:
        if more:
            await asyncio.sleep(0)
            return
        waker = asyncio.ensure_future(self._wake.wait())
        tasks: set[asyncio.Future[Any]] = {waker}
        if deadline is not None:
            tasks.add(asyncio.ensure_future(self._clock.sleep_until(deadline)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
