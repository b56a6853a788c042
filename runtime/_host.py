"""What a runtime's actors call back (the actors' `ActorHost` port), and who waits on which run.

The `Runtime` keeps its public face (lifecycle, calls, reads); the callbacks its
actors make after each commit, and the callers waiting for those commits
(`Runtime.wait`, `Runtime.get_event`, subscriptions), live here.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from perdure.actors import Clock, RunActor, TargetSpec
from perdure.eventlog import (
    Event,
    EventLog,
    EventPublished,
    TimerCancelled,
    TimerFired,
    TimerSet,
)
from perdure.runtime._errors import RuntimeClosedError
from perdure.runtime._outcome import Outcome, live_outcome
from perdure.runtime._registry import Registry
from perdure.runtime._scheduler import Scheduler
from perdure.runtime._updates import Closed, Committed, Custom, Settled, Subscription

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


class RunHost:
    """The `ActorHost` a `Runtime` gives its supervisor, and the runs' waiters and subscribers.

    The runtime sets `log`, `scheduler` and `loop` when it opens (and clears the
    log when it closes it).
    """

    def __init__(
        self,
        *,
        registry: Registry,
        clock: Clock,
        tracer: Tracer,
        attempt_linger: float,
        task_concurrency: int,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self._tracer = tracer
        self._attempt_linger = attempt_linger
        self._task_concurrency = task_concurrency
        self.opened_log: EventLog | None = None
        self.scheduler: Scheduler | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: `Runtime.wait` callers, by run
        self.settle_waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        #: `get_event` callers waiting for a run's next `set_event`
        self.event_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.subscriptions: dict[str, list[Subscription]] = {}

    # -- ActorHost ---------------------------------------------------------------------------

    @property
    def log(self) -> EventLog:
        log = self.opened_log
        if log is None:
            raise RuntimeClosedError("the runtime is not open; use `async with Runtime(...)`")
        return log

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def tracer(self) -> Tracer:
        return self._tracer

    @property
    def attempt_linger(self) -> float:
        return self._attempt_linger

    @property
    def task_concurrency(self) -> int:
        return self._task_concurrency

    def resolve_target(self, name: str) -> TargetSpec | None:
        return self.registry.get(name)

    def body_config(self, run_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": run_id}}

    def committed(self, actor: RunActor, events: list[Event]) -> None:
        scheduler = self.scheduler
        if scheduler is not None:
            for event in events:
                kind = type(event)
                if kind is TimerSet:
                    scheduler.changed()
                elif kind is TimerFired or kind is TimerCancelled:
                    scheduler.settled(actor.run_id, event.timer_id)  # type: ignore[attr-defined]
                    scheduler.changed()
        run_id = actor.run_id
        if (
            self.event_waiters
            and run_id in self.event_waiters
            and any(type(event) is EventPublished for event in events)
        ):
            for waiter in self.event_waiters.pop(run_id):
                if not waiter.done():
                    waiter.set_result(None)
        subscriptions = self.subscriptions.get(run_id)
        if subscriptions and events:
            update = Committed(run_id=run_id, events=tuple(events))
            for sub in subscriptions:
                sub.add(update)
        waiters = self.settle_waiters.get(run_id)
        if waiters or subscriptions:
            outcome = live_outcome(actor, events)
            if outcome is not None:
                self.settled(run_id, outcome)

    def publish_custom(self, run_id: str, item: Any) -> None:
        subscriptions = self.subscriptions.get(run_id)
        if not subscriptions:
            return
        loop = self.loop
        if loop is None:
            return
        update = Custom(run_id=run_id, item=item)
        for sub in subscriptions:
            loop.call_soon_threadsafe(sub.add, update)

    # -- waiters and subscribers -------------------------------------------------------------

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(run_id, self._unsubscribe)
        self.subscriptions.setdefault(run_id, []).append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subscriptions = self.subscriptions.get(sub.run_id, [])
        if sub in subscriptions:
            subscriptions.remove(sub)
        if not subscriptions:
            self.subscriptions.pop(sub.run_id, None)

    def settled(self, run_id: str, outcome: Outcome) -> None:
        """The run settled: its subscribers and `wait` callers get `outcome`."""
        subscriptions = self.subscriptions.get(run_id)
        if subscriptions:
            update = Settled(run_id=run_id, outcome=outcome)
            for sub in subscriptions:
                sub.add(update)
        for fut in self.settle_waiters.pop(run_id, ()):
            if not fut.done():
                fut.set_result(outcome)

    def unavailable(self, run_id: str, error: BaseException) -> None:
        """Nobody can run or park this run now: its waiters and subscribers get `error`."""
        for fut in self.settle_waiters.pop(run_id, ()):
            if not fut.done():
                fut.set_exception(error)
        for sub in self.subscriptions.get(run_id, ()):
            sub.add(Closed(run_id=run_id, error=error))

    def close(self, error: RuntimeClosedError) -> None:
        """The runtime closes: every waiter and subscriber gets `error`."""
        for waiters in self.settle_waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(error)
        self.settle_waiters.clear()
        for run_id, subscriptions in self.subscriptions.items():
            for sub in subscriptions:
                sub.add(Closed(run_id=run_id, error=error))
