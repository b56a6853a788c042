"""The ports of the actors layer: what it needs from its host, and what its user-facing code
may see of a run's actor.

- `ActorHost`: what a run actor needs from the runtime that hosts it (so actors never
  import runtime).
- `RunView`: what scope code (`_scope.py`: the `call_task`, `interrupt`, `sleep`,
  `receive` behind the public API) reads from a run's actor and posts to it. The
  `RunActor` implements it; so does the replayer's stand-in, which answers from a
  folded state and never runs anything.
- `ActorCore`: a `RunView` that also records events and runs effects once they are
  durable: what `Execution` (the body and its task attempts) drives.

This module imports no other module of the actors layer that imports it back: the
actor, its execution and the scope code all depend on these protocols, never on
each other's classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from perdure.actors._clock import Clock
from perdure.actors._state import RunState
from perdure.actors._targets import TargetSpec
from perdure.eventlog import Event, EventLog

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer


class ActorHost(Protocol):
    @property
    def log(self) -> EventLog: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def attempt_linger(self) -> float:
        """Seconds an attempt-start event may wait to share a commit with the attempt's result."""
        ...

    @property
    def task_concurrency(self) -> int:
        """How many task attempts of one run may run at once."""
        ...

    def resolve_target(self, name: str) -> TargetSpec | None: ...

    def committed(self, actor: Any, events: list[Event]) -> None:
        """Called after each durable append: wake waiters, feed streams, tell the scheduler.

        `actor` is the `RunActor` whose batch landed (typed loosely so this port needs
        no import of the actor; a host may annotate it as `RunActor`).
        """
        ...

    def publish_custom(self, run_id: str, item: Any) -> None:
        """A workflow's `writer(item)`: forward to `stream(mode="custom")` listeners."""
        ...

    def body_config(self, run_id: str) -> dict[str, Any]:
        """The `config` a workflow body is given."""
        ...


class RunView(Protocol):
    """What scope code reads from a run's actor, and the one way it asks for something."""

    run_id: str
    state: RunState
    loop: asyncio.AbstractEventLoop
    thread_id: int
    incarnation: int
    alive: bool
    #: Every event with seq < durable_seq is committed (code may only see those outcomes).
    durable_seq: int
    #: Whether a sync body's `receive()` may wait in its thread for the message (False:
    #: the body stops there instead, as in the replayer's stand-in).
    waits_in_threads: bool

    @property
    def body_generation(self) -> int:
        """Which execution of the body is current (a body scope of another one is stale)."""
        ...

    def post(self, message: object) -> None:
        """Queue a message for the run (event-loop thread only)."""
        ...

    @property
    def inline_tasks(self) -> bool:
        """Whether sync code of the run may run a sync task it waits on in its own thread
        (`run_inline`): only where that attempt's start may linger (it is soft)."""
        ...

    def run_inline(self, call: Any) -> None:
        """In the calling code's thread: run the first attempt of the `ExecuteTask` `call`
        there and report it to the actor (which records it as usual)."""
        ...

    def step_waiter(self, position: str) -> asyncio.Future[None]:
        """A future done when the durable sleep at `position` has fired (loop thread only)."""
        ...

    def receive_waiter(self, position: str) -> asyncio.Future[Any]:
        """A future done with what the `receive()` at `position` takes (loop thread only)."""
        ...

    def park_receive(self, position: str) -> asyncio.Future[Any] | None:
        """A future the async body's own `areceive()` at `position` waits on, or None
        where the body must stop there instead (the replayer's stand-in)."""
        ...

    def interrupt_waiter(self, position: str, *, park: bool) -> asyncio.Future[Any] | None:
        """A future done with the answer to the `ainterrupt()` at `position` (failed with
        `InterruptTimeoutError` if it times out first), for a task the body started
        (`park` False) or the async body's own code (`park` True: the run may be evicted
        while it waits). None where the body must stop there instead (loop thread only)."""
        ...


class ActorCore(RunView, Protocol):
    """The actor as its `Execution` drives it: record events, defer effects to durability."""

    host: ActorHost
    run_span: Span | None

    def emit(self, cls: type[Event], *, soft: bool = False, **fields: Any) -> Event: ...

    def after_commit(self, effect: Callable[[], None]) -> None: ...

    def start_pending(self) -> bool:
        """Whether this invocation's `RunStarted` is soft and not durable yet."""
        ...

    def crash_failure(
        self, position: str, name: str, attempt: int, *, message: str | None = None
    ) -> None: ...

    def cancel_run(self, reason: str) -> None:
        """Record the run as cancelled (`reason`), stop its body and tasks, fail their waiters."""
        ...
